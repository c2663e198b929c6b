//! The hot tensor operations of the DARTS-family spaces (DESIGN.md section 7): depthwise and
//! dilated convolution, dense/pointwise convolution, max and average pooling, batch norm, ReLU,
//! global average pooling and the mixed-op weighted sum, as candle custom ops with a forward and
//! a backward pass.
//!
//! Every function takes and returns NCHW [`candle_core::Tensor`]s, works for `f32` and `f64` on
//! the CPU (and, with the `cuda` feature, on a CUDA device: see [`gpu`] and docs/gpu.md), makes its inputs contiguous as needed and is differentiable through candle's
//! autograd. Semantics follow PyTorch (`nn.Conv2d`, `nn.MaxPool2d`, `nn.AvgPool2d`,
//! `nn.BatchNorm2d`) as used by DARTS (Liu et al. 2019; quark0/darts `operations.py`).
//! [`mod@reference`] holds plain loop implementations that the tests check the fast kernels against.
#![deny(missing_docs)]

mod bn;
mod conv;
mod conv1x1;
mod cpu;
#[cfg(feature = "cuda")]
mod device;
mod direct_conv;
mod dwconv;
mod edge;
#[cfg(feature = "cuda")]
mod edge_device;
mod flat;
mod fresh;
mod frozen;
mod fused;
mod gemm;
mod geom;
pub mod gpu;
#[cfg(feature = "cuda")]
mod handoff;
mod host_fallback;
mod mixed;
mod pointwise;
mod pool;
pub mod profile;
mod reduce;
pub mod reference;
mod relu_conv_bn;
mod step;

pub use bn::BatchNorm2d;
pub use conv::{conv2d, grouped_conv2d};
#[doc(hidden)]
pub use cpu::force_portable_kernels;
pub use dwconv::{depthwise_conv2d, relu_depthwise_conv2d};
pub use edge::{fusable, mixed_edge, EdgeOption, UnitSpec};
pub use flat::{assign_f64, concat_f64};
pub use frozen::with_frozen_weights;
pub use fused::relu_dw_pw_bn;
pub use geom::out_size;
pub use mixed::weighted_sum;
pub use pointwise::{global_avg_pool, relu, with_relu_probe};
pub use pool::{avg_pool2d, max_pool2d};
pub use reduce::factorized_reduce_bn;
pub use relu_conv_bn::relu_conv1x1_bn;
pub use step::{optimizer_step, sum_squares, AdamRule, RmsPropRule, SgdRule, StepRule, TensorStep};
