//! # {{crate}}
//!
//! A search-strategy plugin for `nas`, written by `nas plugin new`. It starts as random
//! search over an estimator: uniform random architectures, the best by fitness kept (the
//! "RS" baseline of NAS-Bench-201, Dong & Yang, ICLR 2020). Make it your own in `step`.
//!
//! Build it with `cargo build --release`, then name the library in an experiment:
//!
//! ```yaml
//! plugins: [path/to/target/release/{{lib_file}}]
//! strategy:
//!   name: {{name}}
//!   params: {queries: 50}
//! ```
#![deny(missing_docs)]

use nas_core::params::ensure;
use nas_core::{
    decode_params, Architecture, EpochReport, FoundArchitecture, Metrics, MixingWeights,
    NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec,
    StepReport,
};
use serde::{Deserialize, Serialize};

/// The registered strategy name: what `strategy.name` says in an experiment.
pub const NAME: &str = "{{name}}";

/// Name used in parameter errors.
const COMPONENT: &str = "strategy {{name}}";

/// `strategy.params`. Unknown keys are errors; missing keys take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Estimator queries before the search reports that it has finished.
    pub queries: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { queries: 100 }
    }
}

impl Params {
    /// Documentation of each param, for `nas describe` and `nas plugin info`.
    pub fn docs() -> Vec<ParamDoc> {
        vec![ParamDoc::new(
            "queries",
            "estimator queries before the search stops",
        )]
    }
}

/// Everything that changes while searching: saved by `save_state`, restored by `load_state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// State of the random generator (splitmix64).
    rng: u64,
    /// Queries made.
    queries: u64,
    /// The best architecture so far (choices) and its fitness.
    best: Option<(Vec<usize>, f64)>,
}

/// The strategy.
pub struct Strategy {
    params: Params,
    spec: Option<SpaceSpec>,
    state: State,
}

impl Strategy {
    /// The plugin's factory: decodes and checks `params` (`null` means all defaults).
    pub fn factory(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
        let params: Params = decode_params(COMPONENT, params)?;
        ensure(params.queries >= 1, COMPONENT, "queries", "must be at least 1")?;
        Ok(Box::new(Strategy {
            params,
            spec: None,
            state: State::default(),
        }))
    }

    /// The next number of a splitmix64 generator (Steele, Lea and Flood, "Fast splittable
    /// pseudorandom number generators", OOPSLA 2014): tiny, seedable, and its whole state is
    /// one `u64` that `save_state` keeps.
    fn next_u64(&mut self) -> u64 {
        self.state.rng = self.state.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly random architecture of the space (up to a negligible modulo bias).
    fn random_architecture(&mut self) -> Result<Architecture> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("{NAME}: `init` was not called")))?;
        let (space, shape) = (spec.space.clone(), spec.shape());
        let choices = shape
            .into_iter()
            .map(|n| (self.next_u64() % n.max(1) as u64) as usize)
            .collect();
        Ok(Architecture::new(space, choices))
    }

    fn best(&self) -> Option<Architecture> {
        let spec = self.spec.as_ref()?;
        let (choices, _) = self.state.best.as_ref()?;
        Some(Architecture::new(spec.space.clone(), choices.clone()))
    }
}

impl SearchStrategy for Strategy {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Estimator
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        self.spec = Some(spec.clone());
        self.state = State {
            rng: seed,
            ..State::default()
        };
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let arch = self.random_architecture()?;
        let estimator = env
            .estimator()
            .ok_or_else(|| NasError::Strategy(format!("{NAME} needs an `estimator` block")))?;
        let score = estimator.estimate(&arch)?;
        self.state.queries += 1;
        if self.state.best.as_ref().is_none_or(|(_, f)| score.fitness > *f) {
            self.state.best = Some((arch.choices, score.fitness));
        }
        let mut metrics = Metrics::new();
        metrics.insert("fitness".into(), score.fitness);
        metrics.insert("queries".into(), self.state.queries as f64);
        Ok(StepReport {
            metrics,
            finished: self.state.queries >= self.params.queries,
        })
    }

    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let mut metrics = Metrics::new();
        metrics.insert("queries".into(), self.state.queries as f64);
        if let Some((_, f)) = &self.state.best {
            metrics.insert("best_fitness".into(), *f);
        }
        Ok(EpochReport {
            metrics,
            current: self.best(),
        })
    }

    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let mut architectures = Vec::new();
        if let (Some(arch), Some((_, fitness))) = (self.best(), &self.state.best) {
            let mut metrics = Metrics::new();
            metrics.insert("fitness".into(), *fitness);
            architectures.push(FoundArchitecture {
                label: "best".into(),
                arch,
                metrics,
            });
        }
        Ok(SearchOutcome { architectures })
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        None
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.state)
            .map_err(|e| NasError::Strategy(format!("{NAME}: saving state: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.state = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("{NAME}: state does not decode: {e}")))?;
        Ok(())
    }
}

// The one line that makes this crate a plugin: the exported entry point and its table.
nas_plugin_sdk::export_strategy!(
    Strategy::factory,
    "{{name}}",
    summary = "Random search over an estimator (a `nas plugin new` starting point)",
    defaults = serde_json::to_value(Params::default()).unwrap_or_default(),
    params = Params::docs(),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_are_refused_with_their_key() {
        let e = Strategy::factory(&serde_json::json!({"queries": 0})).err().unwrap();
        assert!(e.to_string().contains("queries"), "{e}");
        let e = Strategy::factory(&serde_json::json!({"querys": 3})).err().unwrap();
        assert!(e.to_string().contains("querys"), "{e}");
        assert!(Strategy::factory(&serde_json::Value::Null).is_ok());
    }

    #[test]
    fn splitmix64_matches_its_published_first_output() {
        // splitmix64 seeded with 0 starts 0xE220A8397B1DCDAF (reference implementation by
        // S. Vigna, prng.di.unimi.it/splitmix64.c).
        let mut s = Strategy {
            params: Params::default(),
            spec: None,
            state: State::default(),
        };
        assert_eq!(s.next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
