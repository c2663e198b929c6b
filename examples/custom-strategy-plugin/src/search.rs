//! Local search with random restarts over an estimator.
//!
//! Source: C. White, S. Nolen, Y. Savani, "Exploring the Loss Landscape in Neural
//! Architecture Search", UAI 2021 (arXiv:2005.02960, first titled "Local Search is State of
//! the Art for NAS Benchmarks"), Algorithm 1: start from a random architecture, evaluate
//! all its neighbours (architectures that differ in exactly one decision), move to the best
//! neighbour if it beats the current architecture, and at a local optimum restart from a
//! new random architecture. Here one `step` is one estimator query; neighbours are visited
//! in a random order; an architecture is never queried twice (a known score is reused).
use std::collections::BTreeMap;

use nas_core::{
    Architecture, EpochReport, FoundArchitecture, Metrics, MixingWeights, NasError, Needs, Result,
    SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec, StepReport,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::params::LocalSearchParams;

/// Random draws tried before concluding that every architecture was already queried.
const MAX_RANDOM_TRIES: usize = 1000;

/// Registered name.
pub const NAME: &str = "local_search";

/// An architecture (choice indices) with its fitness.
type Scored = (Vec<usize>, f64);

/// Everything that changes while searching; saved and restored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// The architecture whose neighbourhood is being scanned (`None`: pick a random one).
    current: Option<Scored>,
    /// Neighbours of `current` still to query, in visiting order (last first).
    queue: Vec<Vec<usize>>,
    /// Best neighbour of `current` seen so far.
    best_neighbour: Option<Scored>,
    /// Best architecture of the whole search, with the estimator's report figures.
    best: Option<(Vec<usize>, f64, Metrics)>,
    /// Every architecture queried, with its fitness.
    known: Vec<Scored>,
    /// Steps taken.
    steps: u64,
    /// Restarts from a random architecture after a local optimum.
    restarts: u64,
    /// Random generator position (`ChaCha8Rng::get_word_pos`, as text).
    rng_word_pos: String,
}

/// Local search with random restarts (see the module docs).
pub struct LocalSearch {
    params: LocalSearchParams,
    spec: Option<SpaceSpec>,
    seed: u64,
    rng: ChaCha8Rng,
    state: State,
    /// `state.known` as a map, rebuilt on load.
    index: BTreeMap<Vec<usize>, f64>,
}

impl LocalSearch {
    /// A new search with checked params.
    pub fn new(params: LocalSearchParams) -> Self {
        LocalSearch {
            params,
            spec: None,
            seed: 0,
            rng: ChaCha8Rng::seed_from_u64(0),
            state: State::default(),
            index: BTreeMap::new(),
        }
    }

    /// The plugin's factory: decodes the params block and makes a search.
    pub fn factory(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
        Ok(Box::new(LocalSearch::new(LocalSearchParams::from_json(
            params,
        )?)))
    }

    fn spec(&self) -> Result<&SpaceSpec> {
        self.spec
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("{NAME}: `init` was not called")))
    }

    fn random_arch(&mut self) -> Result<Vec<usize>> {
        let shape = self.spec()?.shape();
        Ok(shape
            .into_iter()
            .map(|n| self.rng.random_range(0..n))
            .collect())
    }

    /// Makes `center` current: queues its unknown neighbours in random order and counts
    /// the known ones at once.
    fn scan_around(&mut self, center: Scored) -> Result<()> {
        let shape = self.spec()?.shape();
        let mut unknown = Vec::new();
        let mut best: Option<Scored> = None;
        for (d, &n) in shape.iter().enumerate() {
            for o in 0..n {
                if o == center.0[d] {
                    continue;
                }
                let mut nb = center.0.clone();
                nb[d] = o;
                match self.index.get(&nb) {
                    Some(&f) => {
                        if best.as_ref().is_none_or(|b| f > b.1) {
                            best = Some((nb, f));
                        }
                    }
                    None => unknown.push(nb),
                }
            }
        }
        unknown.shuffle(&mut self.rng);
        self.state.queue = unknown;
        self.state.best_neighbour = best;
        self.state.current = Some(center);
        Ok(())
    }

    /// The next architecture to query, advancing through moves and restarts; `None` when
    /// every architecture seems to be known.
    fn next_candidate(&mut self) -> Result<Option<Vec<usize>>> {
        loop {
            let Some(current) = self.state.current.clone() else {
                for _ in 0..MAX_RANDOM_TRIES {
                    let a = self.random_arch()?;
                    if !self.index.contains_key(&a) {
                        return Ok(Some(a));
                    }
                }
                return Ok(None);
            };
            if let Some(next) = self.state.queue.pop() {
                return Ok(Some(next));
            }
            // Neighbourhood scanned: move uphill, or restart at a local optimum.
            match self.state.best_neighbour.take() {
                Some(b) if b.1 > current.1 => self.scan_around(b)?,
                _ => {
                    self.state.current = None;
                    self.state.restarts += 1;
                }
            }
        }
    }

    fn record(&mut self, arch: Vec<usize>, fitness: f64, report: Metrics) -> Result<()> {
        self.index.insert(arch.clone(), fitness);
        self.state.known.push((arch.clone(), fitness));
        if self.state.best.as_ref().is_none_or(|b| fitness > b.1) {
            self.state.best = Some((arch.clone(), fitness, report));
        }
        if self.state.current.is_none() {
            self.scan_around((arch, fitness))
        } else {
            if self
                .state
                .best_neighbour
                .as_ref()
                .is_none_or(|b| fitness > b.1)
            {
                self.state.best_neighbour = Some((arch, fitness));
            }
            Ok(())
        }
    }

    fn best_metrics(&self) -> Metrics {
        let mut m = Metrics::new();
        if let Some((_, f, _)) = &self.state.best {
            m.insert("best_fitness".into(), *f);
        }
        m.insert("queries".into(), self.state.known.len() as f64);
        m.insert("restarts".into(), self.state.restarts as f64);
        m
    }

    fn best_arch(&self) -> Result<Option<Architecture>> {
        let space = self.spec()?.space.clone();
        Ok(self
            .state
            .best
            .as_ref()
            .map(|(a, _, _)| Architecture::new(space, a.clone())))
    }
}

impl SearchStrategy for LocalSearch {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Estimator
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        if spec.decisions.is_empty() || spec.decisions.iter().any(|d| d.options.is_empty()) {
            return Err(NasError::Strategy(format!(
                "{NAME}: space `{}` needs at least one decision, each with an option",
                spec.space
            )));
        }
        self.spec = Some(spec.clone());
        self.seed = seed;
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.state = State::default();
        self.index.clear();
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let step = self.state.steps;
        if self.params.panic_at_step == Some(step) {
            panic!("{NAME}: panic_at_step reached at step {step}");
        }
        self.state.steps += 1;
        let space = self.spec()?.space.clone();
        let Some(arch) = self.next_candidate()? else {
            return Ok(StepReport {
                metrics: self.best_metrics(),
                finished: true,
            });
        };
        let estimator = env.estimator().ok_or_else(|| {
            NasError::Strategy(format!("{NAME} needs an estimator, and this run has none"))
        })?;
        let score = estimator.estimate(&Architecture::new(space, arch.clone()))?;
        if !score.fitness.is_finite() {
            return Err(NasError::NonFinite {
                quantity: "fitness".into(),
                epoch: env.epoch().0,
                step: step as usize,
            });
        }
        self.record(arch, score.fitness, score.report)?;
        let mut metrics = self.best_metrics();
        metrics.insert("fitness".into(), score.fitness);
        Ok(StepReport {
            metrics,
            finished: self.state.known.len() as u64 >= self.params.max_queries,
        })
    }

    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        Ok(EpochReport {
            metrics: self.best_metrics(),
            current: self.best_arch()?,
        })
    }

    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let mut out = SearchOutcome::default();
        if let (Some(arch), Some((_, fitness, report))) = (self.best_arch()?, &self.state.best) {
            let mut metrics = report.clone();
            metrics.insert("fitness".into(), *fitness);
            out.architectures.push(FoundArchitecture {
                label: "best".into(),
                arch,
                metrics,
            });
        }
        Ok(out)
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        None
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        let mut state = self.state.clone();
        state.rng_word_pos = self.rng.get_word_pos().to_string();
        serde_json::to_value(&state)
            .map_err(|e| NasError::Strategy(format!("{NAME}: cannot save state: {e}")))
    }

    fn load_state(&mut self, value: &serde_json::Value) -> Result<()> {
        let state: State = serde_json::from_value(value.clone())
            .map_err(|e| NasError::Strategy(format!("{NAME}: cannot load state: {e}")))?;
        let pos: u128 = state.rng_word_pos.parse().map_err(|e| {
            NasError::Strategy(format!(
                "{NAME}: bad random generator position in state: {e}"
            ))
        })?;
        self.rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.rng.set_word_pos(pos);
        self.index = state.known.iter().cloned().collect();
        self.state = state;
        Ok(())
    }
}
