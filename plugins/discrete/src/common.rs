//! What the three strategies share: the query bookkeeping (budget, best so far, metrics),
//! the environment checks and the resumable RNG state.
use std::collections::BTreeMap;

use nas_core::{
    Architecture, EpochReport, FoundArchitecture, Metrics, NasError, Result, SearchEnv,
    SearchOutcome, SpaceSpec,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One evaluated architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    /// The architecture.
    pub arch: Architecture,
    /// Its fitness (what the search maximises).
    pub fitness: f64,
    /// The estimator's report figures (test accuracy, parameters, ...).
    pub report: BTreeMap<String, f64>,
}

/// Queries made, simulated search time and the best architecture so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    /// Queries made by this strategy.
    pub queries: u64,
    /// Sum of the estimator's `cost_seconds` over those queries.
    pub seconds: f64,
    /// The best architecture by fitness (the first one reaching the maximum wins ties).
    pub best: Option<Evaluated>,
}

impl Tracker {
    /// Scores `arch` with the environment's estimator (one query) and records it.
    /// `name` is the strategy's name, for errors.
    pub fn evaluate(
        &mut self,
        name: &str,
        env: &mut dyn SearchEnv,
        arch: Architecture,
    ) -> Result<Evaluated> {
        let (epoch, _) = env.epoch();
        let est = env.estimator().ok_or_else(|| {
            NasError::Strategy(format!(
                "strategy `{name}` needs an estimator, but the run has none"
            ))
        })?;
        let score = est.estimate(&arch)?;
        if !score.fitness.is_finite() {
            return Err(NasError::NonFinite {
                quantity: format!("fitness of {:?}", arch.choices),
                epoch,
                step: self.queries as usize,
            });
        }
        self.queries += 1;
        self.seconds += score.cost_seconds;
        let ev = Evaluated {
            arch,
            fitness: score.fitness,
            report: score.report,
        };
        if self.best.as_ref().is_none_or(|b| ev.fitness > b.fitness) {
            self.best = Some(ev.clone());
        }
        Ok(ev)
    }

    /// Metrics of the search so far: `queries`, `search_seconds`, `best_fitness`, and every
    /// report figure of the best architecture so far under its own name (`test_acc`, ...).
    pub fn metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        if let Some(b) = &self.best {
            m.extend(b.report.iter().map(|(k, v)| (k.clone(), *v)));
            m.insert("best_fitness".into(), b.fitness);
        }
        m.insert("queries".into(), self.queries as f64);
        m.insert("search_seconds".into(), self.seconds);
        m
    }

    /// Metrics of a step that evaluated `last`: [`Tracker::metrics`] plus `fitness`, the
    /// fitness of the architecture evaluated in this step.
    pub fn step_metrics(&self, last: &Evaluated) -> Metrics {
        let mut m = self.metrics();
        m.insert("fitness".into(), last.fitness);
        m
    }

    /// The epoch report: the metrics so far and the best architecture.
    pub fn epoch_report(&self) -> EpochReport {
        EpochReport {
            metrics: self.metrics(),
            current: self.best.as_ref().map(|b| b.arch.clone()),
        }
    }

    /// The outcome: the best architecture with its fitness, report figures and the
    /// number of queries spent.
    pub fn outcome(&self, name: &str) -> Result<SearchOutcome> {
        let best = self.best.as_ref().ok_or_else(|| {
            NasError::Strategy(format!(
                "strategy `{name}` has evaluated no architecture yet"
            ))
        })?;
        let mut metrics = best.report.clone();
        metrics.insert("fitness".into(), best.fitness);
        metrics.insert("queries".into(), self.queries as f64);
        metrics.insert("search_seconds".into(), self.seconds);
        Ok(SearchOutcome {
            architectures: vec![FoundArchitecture {
                label: "best".into(),
                arch: best.arch.clone(),
                metrics,
            }],
        })
    }
}

/// Fails unless every decision of `spec` has at least one option.
pub fn check_spec(name: &str, spec: &SpaceSpec) -> Result<()> {
    if spec.decisions.is_empty() {
        return Err(NasError::Strategy(format!(
            "strategy `{name}`: space `{}` has no decisions",
            spec.space
        )));
    }
    if let Some(d) = spec.decisions.iter().find(|d| d.options.is_empty()) {
        return Err(NasError::Strategy(format!(
            "strategy `{name}`: decision `{}` of space `{}` has no options",
            d.key, spec.space
        )));
    }
    Ok(())
}

/// Fails unless the environment's space has the shape the strategy was set up for.
pub fn check_env(name: &str, spec: &SpaceSpec, env: &dyn SearchEnv) -> Result<()> {
    let got = env.spec();
    if got.space != spec.space || got.shape() != spec.shape() {
        return Err(NasError::Strategy(format!(
            "strategy `{name}` was set up for space `{}` {:?}, the environment has `{}` {:?}",
            spec.space,
            spec.shape(),
            got.space,
            got.shape()
        )));
    }
    Ok(())
}

/// The "called before init" error.
pub fn not_initialised(name: &str) -> NasError {
    NasError::Strategy(format!("strategy `{name}` used before `init`"))
}

/// The exact position of a ChaCha8 stream, as plain JSON-friendly data (the word position
/// is a `u128`, kept as a decimal string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte key.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// The word position, in decimal.
    pub word_pos: String,
}

impl RngState {
    /// The position of `rng`.
    pub fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// A generator at the saved position.
    pub fn restore(&self) -> Result<ChaCha8Rng> {
        let pos: u128 = self.word_pos.parse().map_err(|e| {
            NasError::Strategy(format!("saved RNG word position `{}`: {e}", self.word_pos))
        })?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// The part of every saved state that the three strategies share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommonState {
    /// Strategy name (checked on load).
    pub strategy: String,
    /// Space name (checked on load).
    pub space: String,
    /// Options per decision (checked on load).
    pub shape: Vec<usize>,
    /// The RNG position.
    pub rng: RngState,
    /// Queries and best so far.
    pub tracker: Tracker,
}

impl CommonState {
    /// Checks that this state belongs to strategy `name` on `spec`.
    pub fn check(&self, name: &str, spec: &SpaceSpec) -> Result<()> {
        if self.strategy != name {
            return Err(NasError::Strategy(format!(
                "saved state is for strategy `{}`, not `{name}`",
                self.strategy
            )));
        }
        if self.space != spec.space || self.shape != spec.shape() {
            return Err(NasError::Strategy(format!(
                "saved state of `{name}` is for space `{}` {:?}, this run has `{}` {:?}",
                self.space,
                self.shape,
                spec.space,
                spec.shape()
            )));
        }
        Ok(())
    }
}

/// Decodes a saved state, naming the strategy in errors; a state saved by another
/// strategy is refused first, by name.
pub fn decode_state<T: serde::de::DeserializeOwned>(
    name: &str,
    state: &serde_json::Value,
) -> Result<T> {
    let saved_for = state
        .get("common")
        .and_then(|c| c.get("strategy"))
        .and_then(|s| s.as_str());
    if let Some(other) = saved_for.filter(|&s| s != name) {
        return Err(NasError::Strategy(format!(
            "saved state is for strategy `{other}`, not `{name}`"
        )));
    }
    T::deserialize(state)
        .map_err(|e| NasError::Strategy(format!("saved state of `{name}` does not decode: {e}")))
}

/// Encodes a state.
pub fn encode_state<T: Serialize>(name: &str, state: &T) -> Result<serde_json::Value> {
    serde_json::to_value(state)
        .map_err(|e| NasError::Strategy(format!("cannot encode the state of `{name}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rng_state_resumes_the_stream_exactly() {
        let mut a = nas_core::component_rng(7, "rea");
        for _ in 0..13 {
            let _: u32 = a.random();
        }
        let saved = serde_json::to_string(&RngState::of(&a)).unwrap();
        let mut b = serde_json::from_str::<RngState>(&saved)
            .unwrap()
            .restore()
            .unwrap();
        let xa: Vec<u64> = (0..50).map(|_| a.random()).collect();
        let xb: Vec<u64> = (0..50).map(|_| b.random()).collect();
        assert_eq!(xa, xb);
    }
}
