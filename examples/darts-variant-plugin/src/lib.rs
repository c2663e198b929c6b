//! # darts-variant-plugin
//!
//! A differentiable search strategy written outside the framework and loaded by `nas` at
//! run time: DARTS (Liu, Simonyan, Yang, ICLR 2019) with a tempered softmax over its
//! alphas, `w = softmax(alpha / tau)`, the temperature annealed linearly from `tau_start`
//! to `tau_end` over the epochs as GDAS anneals its Gumbel temperature (Dong & Yang, CVPR
//! 2019). A high temperature keeps the mixture soft early; a low one sharpens it towards
//! the architecture that will be derived. With `tau_start = tau_end = 1` it is plain DARTS.
//!
//! It shows that gradient-based strategies work across the plugin boundary: the trainer
//! returns `dL/dw` as flat `f32` buffers, and the plugin applies its own chain rule
//! (`dL/d alpha = p (g - p.g) / tau`) and its own optimizer. See `docs/plugins.md`.
//!
//! ```yaml
//! plugins: [../../target/release/libdarts_variant_plugin.so]   # relative to this file
//! strategy:
//!   name: tempered_darts
//!   params: {tau_start: 10, tau_end: 0.1}
//! ```
#![deny(missing_docs)]

pub mod params;
pub mod strategy;

pub use params::{ArchOptimizer, TemperedParams};
pub use strategy::{TemperedDarts, NAME};

nas_plugin_sdk::export_strategy!(
    TemperedDarts::factory,
    "tempered_darts",
    summary =
        "DARTS with softmax(alpha / tau), tau annealed linearly over the epochs (GDAS schedule)",
    defaults = TemperedParams::defaults_json(),
    params = TemperedParams::docs(),
);

#[cfg(test)]
mod tests;
