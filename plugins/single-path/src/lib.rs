//! # nas-strategy-single-path
//!
//! Single-path one-shot NAS as strategies over the plain-data interfaces of `nas-core`:
//!
//! * `spos` (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform
//!   Sampling", ECCV 2020): every step trains one path drawn uniformly (optionally only
//!   among paths within a FLOPs / parameter / latency range, by rejection).
//! * `fairnas` (Chu et al., "FairNAS", ICCV 2021): every step draws an independent random
//!   permutation of the options of every decision, builds the `m` paths they define,
//!   accumulates the gradients of all `m` on the same batch and makes one optimizer step,
//!   so every option is trained exactly once per step.
//! * After the last epoch both run a **search over the trained supernet** in the same
//!   run (their `search` block): `evolution` (the SPOS recipe, [`Evolution`]) or the
//!   `random` / `rea` strategies of `nas-strategy-discrete`, scoring each path with the
//!   supernet estimator ([`SupernetEstimator`], [`SearchOver`]): validation accuracy of the
//!   path after batch-norm recalibration. The outcome is the best architectures with their
//!   scores, retrainable with `nas train`.
//! * `evolution` is also a strategy of its own over any estimator (e.g. `nb201_table`).
#![deny(missing_docs)]

pub mod constraint;
pub mod estimator;
pub mod evolution;
pub mod sampling;
pub mod search;
pub mod train;
pub mod trained_supernet;

use nas_core::{decode_params, ComponentInfo, NasError, Result, SearchStrategy};

pub use constraint::Constraint;
pub use estimator::{score_path, SearchOver, SupernetEstimator, INFEASIBLE_FITNESS};
pub use evolution::{Evolution, EvolutionParams};
pub use sampling::{binned_path, constrained_path, fair_paths, uniform_path};
pub use search::SearchBlock;
pub use train::{FairnasParams, SinglePath, SposParams};

/// Registry information of every strategy of this crate.
pub fn infos() -> Vec<ComponentInfo> {
    let mut v = train::infos();
    v.push(evolution::info());
    v
}

/// Builds strategy `name` from its untyped `params` block.
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    let component = format!("strategy {name}");
    Ok(match name {
        train::SPOS => Box::new(SinglePath::spos(decode_params(&component, params)?)?),
        train::FAIRNAS => Box::new(SinglePath::fairnas(decode_params(&component, params)?)?),
        evolution::NAME => Box::new(Evolution::new(decode_params(&component, params)?)?),
        _ => {
            return Err(NasError::UnknownComponent {
                kind: "strategy".into(),
                name: name.into(),
                known: infos()
                    .iter()
                    .map(|i| i.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    })
}

/// Registers this crate's strategies (see [`infos`]) and the `supernet` estimator
/// ([`trained_supernet`]) into `c`.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)?;
    c.estimators.register(
        trained_supernet::info(),
        std::sync::Arc::new(|p, cx: &nas_registry::BuildContext<'_>| {
            trained_supernet::build(cx, p)
        }),
    )
}
