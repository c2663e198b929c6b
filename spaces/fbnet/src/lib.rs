//! # nas-space-fbnet
//!
//! The FBNet search space (Wu, Dai, Zhang, Wang, Sun, Wu, Tian, Vajda, Jia, Keutzer,
//! "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
//! Search", CVPR 2019, Table 1 and Figure 3; block semantics of the reference builder,
//! maskrcnn-benchmark `fbnet_builder.py` `IRFBlock`, and the FBNet-A/B/C definitions of
//! facebookresearch/mobile-vision `fbnet_modeldef_cls.py`).
//!
//! A 3x3 stride-2 stem to 16 channels (BN, ReLU), 22 searchable layers (widths 16, 24,
//! 32, 64, 112, 184, 352 with 1, 4, 4, 4, 4, 4, 1 layers and first-layer strides 1, 2, 2,
//! 2, 1, 2, 1), a 1x1 convolution to 1984 channels (FBNet-A: 1504), global pooling and a
//! linear classifier with bias.
//!
//! **Candidates** (Table 2): `k3_e1`, `k3_e1_g2`, `k3_e3`, `k3_e6`, `k5_e1`, `k5_e1_g2`,
//! `k5_e3`, `k5_e6`, `skip`. A `kK_eE[_g2]` block: 1x1 (group) convolution to `E x` the
//! input channels + BN + ReLU, channel shuffle when grouped, depthwise KxK (the layer's
//! stride) + BN + ReLU, 1x1 (group) convolution to the output + BN, and an identity
//! shortcut when the shapes allow (stride 1, equal channels). The expansion convolution
//! is kept for `e1` as in the reference builder (pytorchcv's FBNet-C, converted from the
//! released weights, has the same 5,572,200 parameters). `skip` is the identity, or a
//! 1x1 convolution + BN + ReLU with the layer's stride where the shape changes.
//!
//! **Layouts.** `imagenet`: as above. `cifar` (default): stride 1 in the stem and in the
//! first layer of the 24-channel stage (8x downsampling).
#![deny(missing_docs)]

pub mod layout;

pub use layout::{
    from_params, new_space, space_info, FbnetLayout, FbnetParams, FbnetSpace, NAME, OPS,
};

/// Registers this crate's space into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), from_params)?;
    Ok(())
}
