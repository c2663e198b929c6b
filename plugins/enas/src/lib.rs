//! # nas-strategy-enas
//!
//! ENAS, "Efficient Neural Architecture Search via Parameter Sharing" (Pham, Guan, Zoph,
//! Le, Dean, ICML 2018; reference code melodyguan/enas): an LSTM controller samples
//! architectures decision by decision ([`controller`], in the order of [`plan`], with anchor
//! attention for cell inputs), the shared weights are trained on the sampled paths, and the
//! controller is trained by REINFORCE with an entropy bonus and a moving-average baseline on
//! the sampled child's accuracy on a fresh validation batch ([`strategy`]). Over the ENAS
//! macro space the controller samples an op and skip bits per layer (skip attention) and
//! adds the KL skip penalty to its loss.
//!
//! The controller is this crate's own state: its autograd runs on candle inside the crate
//! and nothing of it crosses to the trainer (DESIGN.md section 2); the trainer only sees
//! discrete paths and answers with losses and accuracies.
#![deny(missing_docs)]

pub mod adam;
pub mod controller;
pub mod params;
pub mod plan;
pub mod strategy;

use nas_core::{ComponentInfo, ComponentKind, NasError, Result, SearchStrategy};

pub use controller::{Controller, PolicyConfig, Rollout, ENAS_MICRO_OPS};
pub use params::{DefaultsFor, EnasParams};
pub use plan::{Block, MacroLayerPlan, Plan, ENAS_MACRO_OPS};
pub use strategy::{Enas, NAME};

/// Registry information of the strategy.
pub fn infos() -> Vec<ComponentInfo> {
    vec![ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "ENAS (Pham et al. 2018): LSTM controller with input attention, REINFORCE \
                  with entropy bonus and EMA baseline, alternating with weight training on \
                  sampled paths"
            .into(),
        defaults: serde_json::to_value(EnasParams::default()).unwrap_or_default(),
        params: params::docs(),
        origin: "built-in".into(),
    }]
}

/// Builds strategy `name` from its untyped `params` (`null` = defaults).
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    if name != NAME {
        return Err(NasError::UnknownComponent {
            kind: "strategy".into(),
            name: name.into(),
            known: NAME.into(),
        });
    }
    Ok(Box::new(Enas::from_config(params)?))
}

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
