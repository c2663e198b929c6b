//! The two layouts of every chain space.
use serde::{Deserialize, Serialize};

/// Which layout a space builds.
///
/// `imagenet` is the paper's network for 224x224 inputs (a stride-2 stem and the paper's
/// stage strides, 32x downsampling in total). `cifar` is the usual adaptation to 32x32
/// inputs: the stem and the first strided stage use stride 1 instead (8x downsampling, a
/// 4x4 map before the global pool), as in the CIFAR versions of MobileNetV2-style networks.
/// Each space documents its exact stride changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The paper's ImageNet layout.
    Imagenet,
    /// The 32x32 layout.
    #[default]
    Cifar,
}
