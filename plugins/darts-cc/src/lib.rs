//! # nas-strategy-darts-cc
//!
//! DARTS-CC: differentiable architecture search with structure complexity control
//! (K. Yakovlev, O. Grebenkova, O. Bakhteev, V. Strijov, "Neural architecture search with
//! structure complexity control"; reference code in the DARTS-CC repository, built on
//! pt.darts). Instead of one logit vector per edge, a hypernetwork maps the complexity
//! parameter `lambda` to the architecture logits, so one search yields a family of
//! architectures, one per complexity budget:
//!
//! * [`LambdaRange`]: `lambda > 0` and its normalised form
//!   `t = (log10 lambda - L_min) / (L_max - L_min)` in `[0, 1]`; one `lambda` drawn
//!   log-uniformly per mini-batch.
//! * [`Hypernets`]: per intermediate node (normal and reduction cells alike), a
//!   [`PiecewiseLinear`] interpolation between `K = (L_max - L_min) + 1` learned anchor
//!   logit matrices over pivots (evenly spaced, optionally trained).
//! * [`relax`]: softmax with temperature, or Gumbel-softmax with one sample per example;
//!   the temperature decays linearly per epoch.
//! * [`penalty`]: `lambda * sum_{cells, edges, ops} softmax(alpha(t)) * params(op)`, added to
//!   the validation loss of the architecture step.
//! * [`DartsCc`]: the strategy (first or second order), and [`extract`]: the family of
//!   architectures at chosen `t`, and the DARTS-CC JSON export.
//!
//! Like every strategy, it sees the supernet only through plain data: the trainer returns
//! `dL/d mixing weights`, and the chain rule through the relaxation and the hypernetwork
//! (and the penalty) is applied here.
#![deny(missing_docs)]

pub mod extract;
pub mod hypernet;
pub mod lambda;
mod params;
pub mod penalty;
pub mod relax;
mod strategy;

pub use extract::{darts_cc_json, family, parse_darts_cc_json, FamilyMember};
pub use hypernet::{HyperGradient, Hypernets, PiecewiseLinear};
pub use lambda::LambdaRange;
pub use params::DartsCcParams;
pub use relax::Relaxed;
pub use strategy::{build, infos, ArchStepStats, DartsCc, SavedHypernet};

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
