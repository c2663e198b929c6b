//! # nas-strategy-darts
//!
//! DARTS (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019):
//! one logit vector `alpha` per decision, softmax mixing, and per search step an
//! architecture step on a validation batch (first order, or second order with the unrolled
//! gradient the trainer computes) followed by a weight step on a training batch.
//!
//! The strategy owns the alphas and their optimizer; the trainer only ever sees
//! `softmax(alpha)` and returns `dL/d softmax(alpha)`. The chain rule through the softmax
//! is applied here ([`nas_core::math::softmax_backward`]).
#![deny(missing_docs)]

mod params;
mod strategy;

pub use params::{ArchOptimizer, DartsParams};
pub use strategy::{build, infos, Darts};

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
