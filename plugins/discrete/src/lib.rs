//! # nas-strategy-discrete
//!
//! Search strategies that need only an [`nas_core::Estimator`] (`Needs::Estimator`):
//!
//! * [`random`]: uniform random search (the NB201 paper's RS);
//! * [`rea`]: regularized (aging) evolution (Real et al. 2019, NB201 settings);
//! * [`reinforce`]: REINFORCE over per-decision categorical logits (NB201's RL baseline).
//!
//! Budgets are counted in queries (`queries` param): one [`nas_core::SearchStrategy::step`]
//! scores one architecture, and the step that spends the budget reports `finished`.
//! Every step's metrics hold `queries`, `search_seconds` (sum of the estimator's
//! `cost_seconds`), `fitness` (this step's), `best_fitness` and the report figures of the
//! best architecture so far under their own names (`test_acc`, `params`, ...), for
//! best-so-far-versus-queries plots. States save and load completely (population, policy,
//! RNG position), so a resumed run continues exactly.
#![deny(missing_docs)]

pub mod common;
pub mod ops;
pub mod policy;
pub mod random;
pub mod rea;
pub mod reinforce;

use nas_core::{decode_params, ComponentInfo, NasError, Result, SearchStrategy};

pub use common::{Evaluated, Tracker};
pub use ops::{mutate, mutate_by_node, random_architecture};
pub use random::{RandomParams, RandomSearch};
pub use rea::{Member, Rea, ReaParams};
pub use reinforce::{Reinforce, ReinforceParams};

/// Registry information of every strategy of this crate.
pub fn infos() -> Vec<ComponentInfo> {
    vec![random::info(), rea::info(), reinforce::info()]
}

/// Builds strategy `name` from its untyped `params` block (`null` = all defaults).
/// Unknown names and bad params are errors naming the strategy and the key.
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    let component = format!("strategy {name}");
    Ok(match name {
        random::NAME => Box::new(RandomSearch::new(decode_params(&component, params)?)?),
        rea::NAME => Box::new(Rea::new(decode_params(&component, params)?)?),
        reinforce::NAME => Box::new(Reinforce::new(decode_params(&component, params)?)?),
        _ => {
            return Err(NasError::UnknownComponent {
                kind: "strategy".into(),
                name: name.into(),
                known: infos()
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    })
}

/// Registers this crate's strategies (see [`infos`]) into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_strategies(infos(), build)
}
