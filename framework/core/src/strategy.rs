//! The decision side: search strategies and the environment they run in.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Architecture, Cost, Estimator, MixingWeights, Result, SpaceSpec, SupernetTrainer};

/// Named scalar metrics (`train_loss`, `valid_acc`, ...).
pub type Metrics = BTreeMap<String, f64>;

/// What a strategy needs from its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Needs {
    /// A supernet trainer (DARTS, GDAS, SPOS, ENAS, ...).
    Trainer,
    /// Only an estimator (random search and evolution over a table or trained supernet).
    Estimator,
}

/// What one search step reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Metrics of the step (losses, accuracies, rewards).
    pub metrics: Metrics,
    /// True when the strategy's own budget (queries, samples) is spent: the runner stops.
    pub finished: bool,
}

/// What a strategy reports at the end of an epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Metrics of the epoch (means over its steps, validation figures).
    pub metrics: Metrics,
    /// The architecture the strategy would return now, if it has one.
    pub current: Option<Architecture>,
}

/// One architecture a search found, with its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundArchitecture {
    /// A label (`best`, `t=0.25`, ...).
    pub label: String,
    /// The architecture.
    pub arch: Architecture,
    /// Its figures (fitness, test accuracy, lambda, ...).
    pub metrics: Metrics,
}

/// The result of a search: one or more architectures (DARTS-CC returns a family).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The architectures, best or primary first.
    pub architectures: Vec<FoundArchitecture>,
}

impl SearchOutcome {
    /// One architecture labelled `best`, with the supernet's last validation accuracy as
    /// `supernet_valid_acc` when there is one: the outcome of the strategies that derive their
    /// answer from mixing weights (DARTS, GDAS / SNAS / FBNet, ProxylessNAS).
    pub fn best(arch: Architecture, supernet_valid_acc: Option<f64>) -> Self {
        let mut metrics = Metrics::new();
        if let Some(a) = supernet_valid_acc {
            metrics.insert("supernet_valid_acc".into(), a);
        }
        SearchOutcome {
            architectures: vec![FoundArchitecture {
                label: "best".into(),
                arch,
                metrics,
            }],
        }
    }
}

/// The environment a strategy runs in. The runner implements it over the trainer, the
/// estimator and the space; a plugin sees it through C callbacks.
pub trait SearchEnv {
    /// The space being searched.
    fn spec(&self) -> &SpaceSpec;
    /// The supernet trainer, when the run has one.
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer>;
    /// The estimator, when the run has one.
    fn estimator(&mut self) -> Option<&mut dyn Estimator>;
    /// Derives a discrete architecture from mixing weights by the space's own rules
    /// (`mode` selects among them; `"default"` is the space's standard rule, e.g. DARTS'
    /// top-2 non-none edges per node).
    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture>;
    /// Cost of a discrete architecture (parameters of the standalone network, FLOPs).
    fn cost(&self, arch: &Architecture) -> Result<Cost>;
    /// The space's own text notation of an architecture (genotype, arch string).
    fn describe(&self, arch: &Architecture) -> String;
    /// Current epoch (0-based) and total epochs.
    fn epoch(&self) -> (usize, usize);
}

/// A search strategy: owns all decision-side state and drives the trainer or estimator.
///
/// Required: every method. The runner calls, in order: [`SearchStrategy::init`] once,
/// then per epoch [`SearchStrategy::step`] repeatedly (the trainer's steps per epoch, or
/// until a step reports `finished`), then [`SearchStrategy::end_epoch`]; finally
/// [`SearchStrategy::outcome`]. [`SearchStrategy::save_state`] may be called between any
/// two calls and [`SearchStrategy::load_state`] right after `init`.
///
/// Invariant: a strategy touches the supernet only through [`SearchEnv`]; it applies its
/// own chain rule (softmax, Gumbel, hypernet) to the gradients the trainer returns.
pub trait SearchStrategy: Send {
    /// Registered name.
    fn name(&self) -> &str;
    /// What it needs from the environment.
    fn needs(&self) -> Needs;
    /// Sets up state for `spec` with the strategy's own seed.
    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()>;
    /// One search step (DARTS: an architecture step then a weight step).
    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport>;
    /// End of an epoch: derive, evaluate, report.
    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport>;
    /// The architectures found.
    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome>;
    /// Current mixing weights (probabilities), for the alpha history; `None` for discrete
    /// strategies.
    fn mixing_weights(&self) -> Option<MixingWeights>;
    /// All state needed to resume, as JSON.
    fn save_state(&self) -> Result<serde_json::Value>;
    /// Restores state saved by [`SearchStrategy::save_state`].
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()>;
}
