//! # nas-space-spos
//!
//! The search space of Single Path One-Shot NAS (Guo, Zhang, Mu, Heng, Liu, Wei, Sun,
//! "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020;
//! reference code megvii-model/SinglePathOneShot and ShuffleNet-Series/OneShot): a
//! ShuffleNetV2-like chain of 20 choice blocks in stages of 4, 4, 8 and 4, each block one
//! of `shufflenet_3x3`, `shufflenet_5x5`, `shufflenet_7x7` and `xception_3x3`
//! (the reference's `blocks_keys` order, so that choice indices match its architecture
//! tuples).
//!
//! **Layouts.** `imagenet` is the reference network: a 3x3 stride-2 stem to 16 channels,
//! stages of 64, 160, 320 and 640 channels whose first block has stride 2, a 1x1 conv to
//! 1024, global pooling and a bias-free linear classifier (no max-pool after the stem,
//! unlike ShuffleNetV2). `cifar` (the default) uses stride 1 in the stem and in the first
//! block of the first stage, so 32x32 inputs end at 4x4 instead of 1x1.
//!
//! **Blocks** (reference `blocks.py`). A block's input is split channel-wise (even
//! channels pass, odd channels enter the main branch) unless it is the first of its stage,
//! where a projection branch (depthwise kxk with the block's stride, BN, 1x1, BN, ReLU)
//! sees the whole input; the branches are concatenated. Main branch of `shufflenet_k`:
//! 1x1 to `mid` + BN + ReLU, depthwise kxk (stride) + BN, 1x1 to the remaining output
//! channels + BN + ReLU. `xception_3x3`: three (depthwise 3x3 + BN, 1x1 + BN + ReLU), the
//! first depthwise strided. `mid = floor(out / 2 * scale)` with the block's channel scale
//! (1.0 unless `mid_channel_scales` is given, as for the published block+channel model).
#![deny(missing_docs)]

pub mod layout;

pub use layout::{
    from_params, new_space, space_info, SposLayout, SposParams, SposSpace, NAME, OPS,
};

/// Registers this crate's space into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), from_params)?;
    Ok(())
}
