//! The evolutionary search of SPOS (Guo et al. 2020, section 3.4 and Algorithm 1;
//! reference `src/Search/search.py` of megvii-model/SinglePathOneShot).
//!
//! A population of `population` (50) legal architectures is drawn uniformly, where legal
//! means not evaluated before and within the constraint (reference: FLOPs <= 330M).
//! Every generation (`generations`, 20) scores its members, merges them into the running
//! top-`top_k` (10; the reference's `keep_top_k`, accumulated over all generations), and
//! builds the next population from `mutations` (25) children — a parent drawn uniformly
//! from the top-k, each decision redrawn uniformly with probability `mutation_prob` (0.1)
//! — and `crossovers` (25) children — two parents from the top-k, each decision taken from
//! either with probability 1/2 — each kind tried at most `10 x` its count (reference
//! `max_iters`), then topped up with uniform legal architectures. Unlike the reference, the
//! population bred after the last generation is not scored (it could never enter the
//! result). One step scores one architecture; the step that completes the last generation
//! reports `finished`. The outcome is the top-k, best first.
use std::collections::{HashSet, VecDeque};

use nas_core::params::ensure;
use nas_core::{
    Architecture, ComponentInfo, ComponentKind, EpochReport, FoundArchitecture, MixingWeights,
    NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec,
    StepReport,
};
use nas_strategy_discrete::common::{check_env, check_spec, RngState};
use nas_strategy_discrete::{random_architecture, Evaluated, Tracker};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Constraint;

/// Registered name.
pub const NAME: &str = "evolution";
const COMPONENT: &str = "strategy evolution";

/// Parameters of the SPOS evolutionary search (defaults: the reference `search.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvolutionParams {
    /// Population size (50).
    pub population: usize,
    /// Parents kept (`select_num`, 10).
    pub top_k: usize,
    /// Per-decision mutation probability (`m_prob`, 0.1).
    pub mutation_prob: f64,
    /// Mutated children per generation (25).
    pub mutations: usize,
    /// Crossover children per generation (25).
    pub crossovers: usize,
    /// Generations (`max_epochs`, 20).
    pub generations: usize,
    /// Constraint on the architectures (reference: `max_flops: 330e6`); none by default.
    pub constraint: Constraint,
    /// Uniform draws allowed per missing member when filling a population under a
    /// constraint before giving up.
    pub max_draws: usize,
}

impl Default for EvolutionParams {
    fn default() -> Self {
        EvolutionParams {
            population: 50,
            top_k: 10,
            mutation_prob: 0.1,
            mutations: 25,
            crossovers: 25,
            generations: 20,
            constraint: Constraint::default(),
            max_draws: 1000,
        }
    }
}

impl EvolutionParams {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        ensure(
            self.population >= 1,
            COMPONENT,
            "population",
            "must be >= 1",
        )?;
        ensure(self.top_k >= 1, COMPONENT, "top_k", "must be >= 1")?;
        ensure(
            self.generations >= 1,
            COMPONENT,
            "generations",
            "must be >= 1",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.mutation_prob),
            COMPONENT,
            "mutation_prob",
            "must be in [0, 1]",
        )?;
        ensure(
            self.mutations + self.crossovers <= self.population,
            COMPONENT,
            "mutations",
            "mutations + crossovers must not exceed the population",
        )?;
        ensure(self.max_draws >= 1, COMPONENT, "max_draws", "must be >= 1")?;
        self.constraint.check(COMPONENT, "constraint")
    }
}

/// Registry information.
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "SPOS evolutionary search (Guo et al. 2020): population 50, top-10, 25 mutations + 25 crossovers, 20 generations, constraint".into(),
        defaults: serde_json::to_value(EvolutionParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("population", "population size (SPOS search.py: 50)"),
            ParamDoc::new("top_k", "parents kept over all generations (select_num: 10)"),
            ParamDoc::new("mutation_prob", "per-decision mutation probability (m_prob: 0.1)"),
            ParamDoc::new("mutations", "mutated children per generation (25)"),
            ParamDoc::new("crossovers", "crossover children per generation (25)"),
            ParamDoc::new("generations", "generations (max_epochs: 20)"),
            ParamDoc::new("constraint", "min_flops/max_flops/min_params/max_params/max_latency_ms (SPOS: max_flops 330e6)"),
            ParamDoc::new("max_draws", "uniform draws per missing member before giving up under a constraint"),
        ],
        origin: "built-in".into(),
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct Run {
    spec: SpaceSpec,
    #[serde(skip, default = "placeholder_rng")]
    rng: ChaCha8Rng,
    tracker: Tracker,
    /// Every architecture proposed so far (the reference's `vis_dict`).
    #[serde(skip)]
    seen: HashSet<Vec<usize>>,
    seen_list: Vec<Vec<usize>>,
    /// Still to be scored in this generation.
    pending: VecDeque<Architecture>,
    /// Scored in this generation.
    scored: Vec<Evaluated>,
    /// The running top-k, best first.
    top: Vec<Evaluated>,
    generation: usize,
    finished: bool,
}

fn placeholder_rng() -> ChaCha8Rng {
    nas_core::component_rng(0, NAME)
}

/// The SPOS evolutionary search over an estimator.
pub struct Evolution {
    params: EvolutionParams,
    run: Option<Run>,
}

impl Evolution {
    /// A new search (checks `params`).
    pub fn new(params: EvolutionParams) -> Result<Self> {
        params.check()?;
        Ok(Evolution { params, run: None })
    }

    /// The running top-k, best first (empty before `init`).
    pub fn top(&self) -> Vec<Evaluated> {
        self.run.as_ref().map(|r| r.top.clone()).unwrap_or_default()
    }

    /// The current generation (0-based).
    pub fn generation(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.generation)
    }
}

impl Run {
    /// Proposes `a` if it is legal: new, and within the constraint.
    fn offer(&mut self, a: Architecture, env: &dyn SearchEnv, c: &Constraint) -> Result<bool> {
        if self.seen.contains(&a.choices) {
            return Ok(false);
        }
        if !c.is_empty() && !c.admits(&env.cost(&a)?)? {
            return Ok(false);
        }
        self.seen.insert(a.choices.clone());
        self.seen_list.push(a.choices.clone());
        self.pending.push_back(a);
        Ok(true)
    }

    fn parent(&mut self) -> Architecture {
        let i = self.rng.random_range(0..self.top.len());
        self.top[i].arch.clone()
    }

    fn fill_random(&mut self, env: &dyn SearchEnv, p: &EvolutionParams) -> Result<()> {
        let mut draws = 0usize;
        let limit = p.max_draws.saturating_mul(p.population);
        while self.pending.len() < p.population {
            if draws >= limit {
                return Err(NasError::Strategy(format!(
                    "evolution: only {} new architectures within the constraint after {draws} uniform draws",
                    self.pending.len()
                )));
            }
            draws += 1;
            let a = random_architecture(&self.spec, &mut self.rng);
            self.offer(a, env, &p.constraint)?;
        }
        Ok(())
    }

    /// The next population: mutations, crossovers, then uniform legal architectures.
    fn breed(&mut self, env: &dyn SearchEnv, p: &EvolutionParams) -> Result<()> {
        let (mut made, mut tries) = (0, 0);
        while made < p.mutations && tries < 10 * p.mutations && !self.top.is_empty() {
            tries += 1;
            let mut a = self.parent();
            for (d, c) in a.choices.iter_mut().enumerate() {
                if self.rng.random::<f64>() < p.mutation_prob {
                    *c = self
                        .rng
                        .random_range(0..self.spec.decisions[d].options.len());
                }
            }
            made += usize::from(self.offer(a, env, &p.constraint)?);
        }
        let (mut made, mut tries) = (0, 0);
        while made < p.crossovers && tries < 10 * p.crossovers && !self.top.is_empty() {
            tries += 1;
            let a = self.parent();
            let b = self.parent();
            let choices = a
                .choices
                .iter()
                .zip(&b.choices)
                .map(|(&x, &y)| if self.rng.random::<bool>() { x } else { y })
                .collect();
            let child = Architecture::new(self.spec.space.clone(), choices);
            made += usize::from(self.offer(child, env, &p.constraint)?);
        }
        self.fill_random(env, p)
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    strategy: String,
    params: EvolutionParams,
    rng: RngState,
    run: Run,
}

impl SearchStrategy for Evolution {
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
            seen: HashSet::new(),
            seen_list: vec![],
            pending: VecDeque::new(),
            scored: vec![],
            top: vec![],
            generation: 0,
            finished: false,
        });
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let p = &self.params;
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{NAME}` used before `init`")))?;
        check_env(NAME, &run.spec, env)?;
        if run.finished {
            return Ok(StepReport {
                metrics: run.tracker.metrics(),
                finished: true,
            });
        }
        if run.pending.is_empty() && run.scored.is_empty() && run.generation == 0 {
            run.fill_random(env, p)?;
        }
        let a = run
            .pending
            .pop_front()
            .ok_or_else(|| NasError::Strategy("evolution: empty population".into()))?;
        let ev = run.tracker.evaluate(NAME, env, a)?;
        let mut metrics = run.tracker.step_metrics(&ev);
        run.scored.push(ev);
        if run.pending.is_empty() {
            // Generation complete: merge into the running top-k (stable: earlier wins ties).
            let mut all = std::mem::take(&mut run.top);
            all.append(&mut run.scored);
            all.sort_by(|a, b| b.fitness.total_cmp(&a.fitness));
            all.truncate(p.top_k);
            run.top = all;
            metrics.insert("generation".into(), run.generation as f64);
            metrics.insert(
                "top_k_mean_fitness".into(),
                run.top.iter().map(|e| e.fitness).sum::<f64>() / run.top.len().max(1) as f64,
            );
            tracing::info!(
                generation = run.generation,
                best = run.top.first().map_or(f64::NAN, |e| e.fitness),
                "evolution: generation done"
            );
            run.generation += 1;
            if run.generation >= p.generations {
                run.finished = true;
            } else {
                run.breed(env, p)?;
            }
        }
        Ok(StepReport {
            metrics,
            finished: run.finished,
        })
    }

    fn end_epoch(&mut self, _env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{NAME}` used before `init`")))?;
        let mut r = run.tracker.epoch_report();
        r.current = run.top.first().map(|e| e.arch.clone()).or(r.current);
        Ok(r)
    }

    fn outcome(&mut self, _env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{NAME}` used before `init`")))?;
        let top = if run.top.is_empty() {
            run.tracker.best.iter().cloned().collect()
        } else {
            run.top.clone()
        };
        if top.is_empty() {
            return Err(NasError::Strategy(
                "evolution has scored no architecture".into(),
            ));
        }
        Ok(SearchOutcome {
            architectures: top
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut metrics = e.report.clone();
                    metrics.insert("fitness".into(), e.fitness);
                    metrics.insert("queries".into(), run.tracker.queries as f64);
                    FoundArchitecture {
                        label: if i == 0 {
                            "best".into()
                        } else {
                            format!("top{}", i + 1)
                        },
                        arch: e.arch.clone(),
                        metrics,
                    }
                })
                .collect(),
        })
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        None
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{NAME}` used before `init`")))?;
        serde_json::to_value(State {
            strategy: NAME.into(),
            params: self.params.clone(),
            rng: RngState::of(&run.rng),
            run: run.clone(),
        })
        .map_err(|e| NasError::Strategy(format!("cannot encode the state of `{NAME}`: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone()).map_err(|e| {
            NasError::Strategy(format!("saved state of `{NAME}` does not decode: {e}"))
        })?;
        if s.strategy != NAME {
            return Err(NasError::Strategy(format!(
                "saved state is for strategy `{}`, not `{NAME}`",
                s.strategy
            )));
        }
        let cur = self
            .run
            .as_ref()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{NAME}` used before `init`")))?;
        if cur.spec.shape() != s.run.spec.shape() || cur.spec.space != s.run.spec.space {
            return Err(NasError::Strategy(format!(
                "saved state of `{NAME}` is for another space"
            )));
        }
        let mut run = s.run;
        run.rng = s.rng.restore()?;
        run.seen = run.seen_list.iter().cloned().collect();
        self.run = Some(run);
        Ok(())
    }
}
