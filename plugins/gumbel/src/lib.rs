//! # nas-strategy-gumbel
//!
//! Gumbel-softmax differentiable architecture search: one logit vector `alpha` per
//! decision, a Gumbel-softmax sample per step, the chain rule in plain Rust.
//!
//! * `gdas`: GDAS (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU
//!   Hours", CVPR 2019; reference code D-X-Y/AutoDL-Projects, `GDAS.py` and
//!   `search_cells.py`). Hard straight-through samples: the trainer is driven with
//!   `DriveKind::SelectedOnly` and a one-hot weight of exactly 1.0, so only the sampled
//!   option of each decision is computed; the gradient of that weight flows into the soft
//!   sample. Temperature linear from 10 to 0.1.
//! * `snas`: soft Gumbel-softmax samples (Xie et al., "SNAS: Stochastic Neural
//!   Architecture Search", ICLR 2019; the same relaxation as FBNet), `Mixed` per batch or
//!   `MixedPerSample` per example, temperature `5.0 * 0.956^epoch` (FBNet's schedule).
//! * `fbnet`: FBNet (Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via
//!   Differentiable Neural Architecture Search", CVPR 2019): soft samples and the loss
//!   `CE * 0.2 * ln(LAT)^0.6` with `LAT` the expected latency under `softmax(alpha)`.
//!
//! Deviations from the reference code (all three):
//! * Options the hard sample did not select get a zero gradient. GDAS's reference adds the
//!   unselected `hardwts[k]` (value 0) to the edge output, which gives those weights the
//!   gradient `sum(dL/d output)`; the straight-through estimator of the paper (eq. 5-6)
//!   has no such term, and computing it would need the trainer to report it.
//! * Weights and architecture alternate per batch (weights first, then the logits, as
//!   GDAS's reference does). FBNet alternates per epoch; SNAS updates both on the same
//!   training batch with one loss.
//! * `LAT` of FBNet is the expectation under `softmax(alpha)`, not under the sampled mask
//!   `m` of the paper's eq. 6 (both have the same expectation; the exact gradient of the
//!   former needs no extra feedback from the trainer). The fixed stem/head cost is left
//!   out of `LAT`, as the paper's sum over searched layers does.
//! * SNAS's own temperature (initial 1.0, annealed) and its resource constraint (a
//!   REINFORCE-style cost gradient) are not reproduced: `snas` uses FBNet's temperature
//!   schedule and the shared, exact cost term (`strategy.params.cost`).
#![deny(missing_docs)]

pub mod loss;
pub mod params;
pub mod sample;
pub mod schedule;
mod strategy;

pub use params::{GumbelParams, Method, Samples, Sampling};
pub use strategy::{build, infos, Gumbel};

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
