//! # nas-strategy-proxylessnas
//!
//! ProxylessNAS (Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture Search on Target
//! Task and Hardware", ICLR 2019; reference code mit-han-lab/proxylessnas, `search/`).
//!
//! One logit vector `alpha` per decision, `p = softmax(alpha)`, and binary gates:
//! * **weight step**: one path drawn from `p` per decision; only that path runs
//!   (`Drive::path`), as the reference's `reset_binary_gates` + `unused_modules_off` with no
//!   binary mode;
//! * **architecture step** (the reference's `grad_binary_mode = two`): per decision two
//!   options drawn from `p` without replacement, the active one of the two from
//!   `q = softmax(alpha)` over the pair, gates `g_active = 1`, `g_other = 0`; the trainer
//!   computes exactly those two options ([`nas_core::DriveKind::Gated`]) and returns the
//!   validation cross-entropy and `dCE/dg`; here the path-level (BinaryConnect) estimate of
//!   eq. 4 over the pair, `dL/dalpha_i = sum_j dL/dg_j q_j (delta_ij - q_i)`, plus the exact
//!   gradient of the cost term, one optimizer step, then the pair's logits are shifted so
//!   that the unsampled options keep their probabilities (`rescale_updated_arch_param`);
//! * **cost term** (section 3.3): `mul#log` `alpha * CE * (log E / log REF)^beta` or
//!   `add#linear` `CE + lambda * (E - REF) / REF`, `E` the expected latency (or FLOPs,
//!   params) from the space's per-option cost tables;
//! * **derivation**: the space's default rule on `softmax(alpha)` (argmax per decision for
//!   the single-path spaces).
//!
//! ## Deviations from the reference code
//! * The architecture optimizer and the weight optimizer share the run's data loop: an
//!   architecture update follows every `arch_every` weight steps of an epoch counted over the
//!   whole run, and there is no separate warm-up learning-rate schedule (the reference warms
//!   up 40 epochs with its own cosine schedule from 0.05 and skips updates in the first joint
//!   epoch); `warmup_epochs` (default 0) counts weight-only epochs within the run's budget.
//! * A zero-gradient option still counts as a step for Adam's second moment (the reference
//!   sets the gradient of a decision whose active path is a zero op to `None`, skipping it).
//!   With the reference's `beta1 = 0` the logits do not move either way.
//! * The cost block is the one every differentiable strategy shares (`cost: {metric, form,
//!   weight, target, a, b, scale, fixed}`, `nas_core::cost_term`), with ProxylessNAS's
//!   defaults (`params::cost_defaults`): `form: mul_log` is the reference's `mul#log`,
//!   `form: add` its `add#linear`.
//! * `REF` (`cost.target`) defaults to the expected value under uniform probabilities (the
//!   reference takes a table value per width, e.g. 80 ms on the Mobile setting); `cost.scale`
//!   lets the `mul#log` logarithms work with sub-millisecond latencies of small networks.
//! * The expected cost includes the option costs as the table lists them, zero ops
//!   included (the reference skips zero layers, whose latency it counts as 0).
//! * `cost_probs: full` (an extension) uses `softmax(alpha)` over every option for `E`.
//! * Only the `two` binary mode; the reference's default `full_v2` (every option's gate
//!   gradient from one extra forward per option) and the REINFORCE variant are not built.
#![deny(missing_docs)]

pub mod cost;
pub mod estimator;
mod params;
mod strategy;

pub use params::{cost_defaults, ArchOptimizer, CostProbs, ProxylessParams};
pub use strategy::{build, infos, ArchStep, ProxylessNas, NAME, ZERO_OPS};

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
