//! Regularized (aging) evolution, REA.
//!
//! Source: Real et al., "Regularized Evolution for Image Classifier Architecture Search",
//! AAAI 2019, Algorithm 1: fill a population of `P` random architectures; then repeatedly
//! draw `S` members (with replacement), mutate the fittest of them, add the child and
//! remove the *oldest* member. Settings from the NB201 benchmark's reference runs
//! (AutoDL-Projects `scripts-search/NAS-Bench-201-algos/R-EA.sh`: `--ea_population 10`,
//! sample size 3 in its documented invocation; the same `--ea_population 10
//! --ea_sample_size 3` in NATS-Bench's `exps/NATS-algos/regularized_ea.py`).
use std::collections::VecDeque;

use nas_core::params::ensure;
use nas_core::{
    Architecture, ComponentInfo, ComponentKind, EpochReport, MixingWeights, NasError, Needs,
    ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec, StepReport,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::common::{
    check_env, check_spec, decode_state, encode_state, not_initialised, CommonState, RngState,
    Tracker,
};
use crate::ops::{mutate, mutate_by_node, random_architecture};

/// Registered name.
pub const NAME: &str = "rea";
const COMPONENT: &str = "strategy rea";

/// Parameters of REA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaParams {
    /// Query budget: architectures scored, the initial population included.
    pub queries: u64,
    /// Population size `P` (NB201: 10).
    pub population: usize,
    /// Tournament size `S`, drawn with replacement (NB201: 3).
    pub sample_size: usize,
    /// How the parent is mutated: `node_edge` (NB201's `mutate_arch_func`: a node, then
    /// one of its edges, then another op; [`crate::mutate_by_node`]) or `uniform` (one of
    /// all decisions uniformly; [`crate::mutate`]).
    pub mutation: String,
}

impl Default for ReaParams {
    fn default() -> Self {
        ReaParams {
            queries: 100,
            population: 10,
            sample_size: 3,
            mutation: "node_edge".into(),
        }
    }
}

impl ReaParams {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        ensure(self.queries >= 1, COMPONENT, "queries", "must be >= 1")?;
        ensure(
            self.population >= 1,
            COMPONENT,
            "population",
            "must be >= 1",
        )?;
        ensure(
            self.sample_size >= 1,
            COMPONENT,
            "sample_size",
            "must be >= 1",
        )?;
        ensure(
            matches!(self.mutation.as_str(), "node_edge" | "uniform"),
            COMPONENT,
            "mutation",
            format!("`{}` is not one of: node_edge, uniform", self.mutation),
        )
    }
}

/// Registry information.
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "regularized (aging) evolution, Real et al. 2019; NB201 settings P=10, S=3".into(),
        defaults: serde_json::to_value(ReaParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("queries", "query budget, initial population included"),
            ParamDoc::new(
                "population",
                "population size P; the oldest member is removed (NB201's R-EA.sh: 10)",
            ),
            ParamDoc::new(
                "sample_size",
                "tournament size S, drawn with replacement (NB201's R-EA.sh: 3)",
            ),
            ParamDoc::new(
                "mutation",
                "node_edge (NB201's mutate_arch_func: a node, then one of its edges) | uniform (any decision)",
            ),
        ],
        origin: "built-in".into(),
    }
}

/// A member of the population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The architecture.
    pub arch: Architecture,
    /// Its fitness.
    pub fitness: f64,
    /// The query that created it (1-based): its age order.
    pub born: u64,
}

struct Run {
    spec: SpaceSpec,
    rng: ChaCha8Rng,
    tracker: Tracker,
    population: VecDeque<Member>,
}

/// Regularized evolution. One step = one query.
pub struct Rea {
    params: ReaParams,
    run: Option<Run>,
}

#[derive(Serialize, Deserialize)]
struct State {
    common: CommonState,
    params: ReaParams,
    population: VecDeque<Member>,
}

impl Rea {
    /// A new REA (checks `params`).
    pub fn new(params: ReaParams) -> Result<Self> {
        params.check()?;
        Ok(Rea { params, run: None })
    }

    /// The population, oldest first (empty before `init`).
    pub fn population(&self) -> Vec<Member> {
        self.run
            .as_ref()
            .map(|r| r.population.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Queries and best so far (`None` before `init`).
    pub fn tracker(&self) -> Option<&Tracker> {
        self.run.as_ref().map(|r| &r.tracker)
    }
}

/// The next architecture to score: random while the population fills, else the mutated
/// winner of a tournament of `sample_size` members drawn with replacement (the first of
/// equally fit members wins).
fn propose(run: &mut Run, params: &ReaParams) -> Architecture {
    if run.population.len() < params.population {
        return random_architecture(&run.spec, &mut run.rng);
    }
    let n = run.population.len();
    let mut parent = &run.population[run.rng.random_range(0..n)];
    for _ in 1..params.sample_size {
        let m = &run.population[run.rng.random_range(0..n)];
        if m.fitness > parent.fitness {
            parent = m;
        }
    }
    let parent = parent.arch.clone();
    // A space without any second option has one architecture: "mutation" returns it.
    let child = if params.mutation == "uniform" {
        mutate(&run.spec, &parent, &mut run.rng)
    } else {
        mutate_by_node(&run.spec, &parent, &mut run.rng)
    };
    child.unwrap_or(parent)
}

impl SearchStrategy for Rea {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Estimator
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        check_spec(NAME, spec)?;
        self.run = Some(Run {
            spec: spec.clone(),
            rng: nas_core::component_rng(seed, NAME),
            tracker: Tracker::default(),
            population: VecDeque::with_capacity(self.params.population + 1),
        });
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        check_env(NAME, &run.spec, env)?;
        if run.tracker.queries >= self.params.queries {
            return Ok(StepReport {
                metrics: run.tracker.metrics(),
                finished: true,
            });
        }
        let arch = propose(run, &self.params);
        let ev = run.tracker.evaluate(NAME, env, arch)?;
        run.population.push_back(Member {
            arch: ev.arch.clone(),
            fitness: ev.fitness,
            born: run.tracker.queries,
        });
        // Aging: the oldest member goes, whatever its fitness.
        while run.population.len() > self.params.population {
            run.population.pop_front();
        }
        let mut metrics = run.tracker.step_metrics(&ev);
        metrics.insert(
            "population_mean_fitness".into(),
            run.population.iter().map(|m| m.fitness).sum::<f64>() / run.population.len() as f64,
        );
        Ok(StepReport {
            metrics,
            finished: run.tracker.queries >= self.params.queries,
        })
    }

    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        Ok(run.tracker.epoch_report())
    }

    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        run.tracker.outcome(NAME)
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        None
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        let run = self.run.as_ref().ok_or_else(|| not_initialised(NAME))?;
        encode_state(
            NAME,
            &State {
                common: CommonState {
                    strategy: NAME.into(),
                    space: run.spec.space.clone(),
                    shape: run.spec.shape(),
                    rng: RngState::of(&run.rng),
                    tracker: run.tracker.clone(),
                },
                params: self.params.clone(),
                population: run.population.clone(),
            },
        )
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        let s: State = decode_state(NAME, state)?;
        s.common.check(NAME, &run.spec)?;
        // Only the budget may differ (a resumed run may be given more queries).
        if (s.params.population, s.params.sample_size)
            != (self.params.population, self.params.sample_size)
        {
            return Err(NasError::Strategy(format!(
                "saved state of `rea` has population {} / sample_size {}, this run {} / {}",
                s.params.population,
                s.params.sample_size,
                self.params.population,
                self.params.sample_size
            )));
        }
        for m in &s.population {
            run.spec.check(&m.arch)?;
        }
        run.rng = s.common.rng.restore()?;
        run.tracker = s.common.tracker;
        run.population = s.population;
        Ok(())
    }
}
