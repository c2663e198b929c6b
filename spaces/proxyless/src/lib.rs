//! # nas-space-proxyless
//!
//! The ProxylessNAS search space (Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture
//! Search on Target Task and Hardware", ICLR 2019; reference code mit-han-lab/proxylessnas,
//! `MBInvertedConvLayer`, `MobileInvertedResidualBlock`, `ProxylessNASNets`).
//!
//! A 3x3 stride-2 stem (BN, ReLU6), a fixed MBConv1 3x3 block, then choice blocks in
//! stages, a 1x1 "feature mix" convolution, global pooling and a linear classifier (with
//! bias). Every choice block is an inverted residual MBConv with kernel 3, 5 or 7 and
//! expansion 3 or 6 (`k3_e3`, `k3_e6`, `k5_e3`, `k5_e6`, `k7_e3`, `k7_e6`, the reference's
//! `3x3_MBConv3 ... 7x7_MBConv6` order): 1x1 expansion + BN + ReLU6, depthwise kxk (the
//! block's stride) + BN + ReLU6, 1x1 projection + BN. A block that is not the first of its
//! stage keeps its shape and has an identity shortcut; those blocks also offer `zero`
//! (the block is skipped, only the shortcut remains), which makes the depth searchable.
//!
//! **Widths.** The defaults are those of the released ProxylessNAS-GPU model (stem 40,
//! MBConv1 24, stages 32, 56, 112, 128, 256, 432 of depths 4, 4, 4, 4, 4, 1 and strides
//! 2, 2, 2, 1, 2, 1, feature mix 1728); every width and depth is a param, so tests use tiny
//! ones and the Mobile setting (32, 16, 24/40/80/96/192/320, 1280) is a config change.
//!
//! **Layouts.** `imagenet`: as above (32x downsampling). `cifar` (default): stride 1 in the
//! stem and in the first block of the first stage (8x downsampling; 32x32 ends at 4x4).
#![deny(missing_docs)]

pub mod layout;

pub use layout::{
    from_params, new_space, space_info, ProxylessLayout, ProxylessParams, ProxylessSpace, NAME, OPS,
};

/// Registers this crate's space into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), from_params)?;
    Ok(())
}
