//! # nas-space-chain
//!
//! What the single-path spaces (SPOS, ProxylessNAS, FBNet) share: each of them is a *chain*
//! of choice layers between a fixed stem and a fixed tail, one decision per layer, every
//! option of a layer mapping the same input shape to the same output shape.
//!
//! * [`layers`]: convolution + batch norm + activation ([`ConvBn`]), the linear classifier,
//!   ReLU6, channel shuffle and the ShuffleNetV2 channel split, all built from `nas-ops`.
//! * [`ChainLayout`] / [`ChainSpace`]: a space written as plain data (stem, layers with
//!   the plan of each option, tail) and turned into decisions, costs, a supernet and
//!   standalone networks.
//! * [`ChainNet`]: the weight-sharing supernet (every option of every layer, driven by a
//!   path or by mixing weights) and, with one option per layer, the standalone network.
//! * [`Seq`] / [`Residual`]: blocks written once as steps, from which both the layers and
//!   their cost are derived.
//! * [`Shape`] and [`CostSum`]: parameters and multiply-accumulates computed from shapes.
//! * [`notation`]: architectures written as op names, and the JSON forms.
//! * [`latency`]: a latency lookup table measured by timing each candidate block on the
//!   current device, saved to a JSON file and reused.
//! * [`Variant`]: the paper's ImageNet layout or the CIFAR layout (fewer early strides).
#![deny(missing_docs)]

pub mod cost;
pub mod latency;
pub mod layers;
pub mod net;
pub mod notation;
pub mod plan;
pub mod seq;
pub mod shape;
pub mod space;
pub mod variant;

pub use cost::CostSum;
pub use latency::LatencyTable;
pub use layers::{Act, ConvBn, Linear};
pub use net::{Candidate, ChainNet, ChainParts, Identity};
pub use plan::{ChainLayout, LayerPlan, OptionPlan};
pub use seq::{Residual, Seq, Step, DEPTHWISE};
pub use shape::Shape;
pub use space::ChainSpace;
pub use variant::Variant;
