//! The search stage of a single-path run: after the supernet is trained, a strategy that
//! needs only an estimator (`evolution` of this crate, or `random` / `rea` of
//! `nas-strategy-discrete`) runs over the supernet estimator ([`crate::SearchOver`]).
use nas_core::{NasError, Result, SearchEnv, SearchStrategy};
use nas_strategy_discrete::Evaluated;
use serde::{Deserialize, Serialize};

use crate::{Constraint, SearchOver};

/// The `search` block of `spos` / `fairnas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchBlock {
    /// `evolution` (SPOS), `random` or `rea`.
    pub name: String,
    /// The strategy's params (`evolution`: population, top_k, ...; `random` / `rea`:
    /// queries, ...).
    pub params: serde_json::Value,
    /// Validation batches each path is scored on (after BN recalibration on the trainer's
    /// `recalibrate_batches` training batches).
    pub eval_batches: usize,
    /// Constraint of the search: architectures outside it are never scored on the
    /// supernet (given to `evolution` as its own constraint unless it has one).
    pub constraint: Constraint,
}

impl Default for SearchBlock {
    fn default() -> Self {
        SearchBlock {
            name: crate::evolution::NAME.into(),
            params: serde_json::Value::Null,
            eval_batches: 10,
            constraint: Constraint::default(),
        }
    }
}

/// Names a search block may use.
pub const SEARCHES: [&str; 3] = ["evolution", "random", "rea"];

impl SearchBlock {
    /// Checks the block and builds its strategy.
    pub fn build(&self, component: &str) -> Result<Box<dyn SearchStrategy>> {
        let at = |path: &str, m: String| NasError::InvalidParams {
            component: component.into(),
            path: format!("search.{path}"),
            message: m,
        };
        if self.eval_batches == 0 {
            return Err(at("eval_batches", "must be >= 1".into()));
        }
        self.constraint.check(component, "search.constraint")?;
        let relocate = |e: NasError| match e {
            NasError::InvalidParams { path, message, .. } => at(&format!("params.{path}"), message),
            other => other,
        };
        match self.name.as_str() {
            "evolution" => {
                let mut p: crate::EvolutionParams =
                    nas_core::decode_params("strategy evolution", &self.params)
                        .map_err(relocate)?;
                if p.constraint.is_empty() {
                    p.constraint = self.constraint.clone();
                }
                Ok(Box::new(crate::Evolution::new(p).map_err(relocate)?))
            }
            "random" | "rea" => {
                nas_strategy_discrete::build(&self.name, &self.params).map_err(relocate)
            }
            other => Err(at(
                "name",
                format!("unknown search `{other}`; known: {}", SEARCHES.join(", ")),
            )),
        }
    }

    /// Runs the search over the supernet of `env` (which must have a trainer) with the
    /// strategy's own `seed`; returns every feasible architecture scored, best first.
    pub fn run(
        &self,
        component: &str,
        env: &mut dyn SearchEnv,
        seed: u64,
    ) -> Result<Vec<Evaluated>> {
        let mut strategy = self.build(component)?;
        let spec = env.spec().clone();
        strategy.init(&spec, seed)?;
        let mut over = SearchOver::new(env, self.eval_batches, self.constraint.clone());
        // Every strategy here finishes by its own budget; this only guards a runaway loop.
        let mut steps = 0u64;
        loop {
            let r = strategy.step(&mut over)?;
            steps += 1;
            if r.finished {
                break;
            }
            if steps > 10_000_000 {
                return Err(NasError::Strategy(format!(
                    "search `{}` did not finish in {steps} steps",
                    self.name
                )));
            }
        }
        tracing::info!(
            search = %self.name,
            evaluated = over.evaluated(),
            "search over the supernet done"
        );
        Ok(over.ranked())
    }
}
