//! The supernet-training strategies `spos` and `fairnas`, each followed by a search over
//! the trained supernet in the same run.
use nas_core::params::ensure;
use nas_core::{
    Architecture, ComponentInfo, ComponentKind, Drive, EpochReport, FoundArchitecture, Metrics,
    MixingWeights, NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy,
    SpaceSpec, StepReport,
};
use nas_strategy_discrete::common::RngState;
use nas_strategy_discrete::Evaluated;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::sampling::{binned_path, constrained_path, fair_paths};
use crate::{score_path, Constraint, SearchBlock};

/// Registered name of uniform single-path training.
pub const SPOS: &str = "spos";
/// Registered name of strictly fair training.
pub const FAIRNAS: &str = "fairnas";

fn default_search() -> Option<SearchBlock> {
    Some(SearchBlock::default())
}

/// Params of `spos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SposParams {
    /// Paths are drawn within this constraint (see `sampler`); none: every path.
    pub constraint: Constraint,
    /// Uniform draws per step before giving up on the constraint.
    pub max_tries: usize,
    /// How a constrained path is drawn: `binned` (the SPOS reference, `Supernet/train.py`
    /// `get_uniform_sample_cand`: a FLOPs bin of width `flops_bin` drawn uniformly over
    /// `[min_flops, max_flops]`, then uniform paths until one falls in it; used when both
    /// bounds are set) or `rejection` (uniform paths until one is within the constraint).
    pub sampler: String,
    /// Width of a FLOPs bin of the `binned` sampler (SPOS reference: 10M over 290M-360M).
    pub flops_bin: f64,
    /// Uniform paths scored on the validation split at the end of each epoch (after BN
    /// recalibration) for the epoch's `valid_acc`; 0: none.
    pub eval_paths: usize,
    /// Validation batches each of those paths is scored on.
    pub eval_batches: usize,
    /// The search run over the trained supernet after the last epoch (default: SPOS
    /// evolution with its paper settings); `null`: none (the best epoch-end path is
    /// returned).
    #[serde(default = "default_search")]
    pub search: Option<SearchBlock>,
    /// Architectures returned, best first.
    pub keep: usize,
}

impl Default for SposParams {
    fn default() -> Self {
        SposParams {
            constraint: Constraint::default(),
            max_tries: 1000,
            sampler: "binned".into(),
            flops_bin: 10e6,
            eval_paths: 1,
            eval_batches: 2,
            search: default_search(),
            keep: 5,
        }
    }
}

/// Params of `fairnas` (no constraint: rejecting paths would break strict fairness).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairnasParams {
    /// As in `spos`.
    pub eval_paths: usize,
    /// As in `spos`.
    pub eval_batches: usize,
    /// As in `spos`.
    #[serde(default = "default_search")]
    pub search: Option<SearchBlock>,
    /// As in `spos`.
    pub keep: usize,
}

impl Default for FairnasParams {
    fn default() -> Self {
        let s = SposParams::default();
        FairnasParams {
            eval_paths: s.eval_paths,
            eval_batches: s.eval_batches,
            search: s.search,
            keep: s.keep,
        }
    }
}

fn docs(fair: bool) -> Vec<ParamDoc> {
    let mut v = vec![];
    if !fair {
        v.push(ParamDoc::new(
            "constraint",
            "train only paths within min/max flops, params, max_latency_ms (rejection sampling)",
        ));
        v.push(ParamDoc::new(
            "max_tries",
            "uniform draws per step before giving up on the constraint",
        ));
        v.push(ParamDoc::new(
            "sampler",
            "binned (SPOS reference: a FLOPs bin uniformly, then rejection within it; needs min_flops and max_flops) | rejection",
        ));
        v.push(ParamDoc::new(
            "flops_bin",
            "FLOPs bin width of the binned sampler (SPOS: 10e6)",
        ));
    }
    v.extend([
        ParamDoc::new("eval_paths", "uniform paths scored on the validation split at each epoch end (valid_acc)"),
        ParamDoc::new("eval_batches", "validation batches per scored path"),
        ParamDoc::new("search", "{name: evolution|random|rea, params, eval_batches, constraint}: search over the trained supernet after the last epoch; null: none"),
        ParamDoc::new("keep", "architectures returned, best first"),
    ]);
    v
}

/// Registry information of both strategies.
pub fn infos() -> Vec<ComponentInfo> {
    vec![
        ComponentInfo {
            kind: ComponentKind::Strategy,
            name: SPOS.into(),
            summary: "SPOS (Guo et al. 2020): one uniform path per step, optional rejection outside a constraint, then a search over the supernet".into(),
            defaults: serde_json::to_value(SposParams::default()).unwrap_or_default(),
            params: docs(false),
            origin: "built-in".into(),
        },
        ComponentInfo {
            kind: ComponentKind::Strategy,
            name: FAIRNAS.into(),
            summary: "FairNAS strict fairness (Chu et al. 2021): per step m paths from per-decision permutations, gradients accumulated, one update; then a search".into(),
            defaults: serde_json::to_value(FairnasParams::default()).unwrap_or_default(),
            params: docs(true),
            origin: "built-in".into(),
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Mode {
    Uniform,
    Fair,
}

/// `spos` or `fairnas`: trains the supernet on sampled paths, then searches it.
pub struct SinglePath {
    name: &'static str,
    mode: Mode,
    constraint: Constraint,
    max_tries: usize,
    /// FLOPs bin width of the binned sampler; `None`: rejection only.
    flops_bin: Option<f64>,
    eval_paths: usize,
    eval_batches: usize,
    search: Option<SearchBlock>,
    keep: usize,
    run: Option<Run>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Run {
    spec: SpaceSpec,
    seed: u64,
    #[serde(skip, default = "placeholder")]
    rng: ChaCha8Rng,
    /// Loss, accuracy and steps of the current epoch.
    sums: (f64, f64, usize),
    /// Paths scored at epoch ends.
    scored: Vec<Evaluated>,
    /// The search result, best first, once it ran.
    found: Option<Vec<Evaluated>>,
}

fn placeholder() -> ChaCha8Rng {
    nas_core::component_rng(0, SPOS)
}

#[derive(Serialize, Deserialize)]
struct State {
    strategy: String,
    rng: RngState,
    run: Run,
}

impl SinglePath {
    /// `spos` with checked params.
    pub fn spos(p: SposParams) -> Result<Self> {
        let c = "strategy spos";
        p.constraint.check(c, "constraint")?;
        ensure(p.max_tries >= 1, c, "max_tries", "must be >= 1")?;
        let binned = match p.sampler.as_str() {
            "binned" => true,
            "rejection" => false,
            other => {
                return Err(NasError::InvalidParams {
                    component: c.into(),
                    path: "sampler".into(),
                    message: format!("`{other}` is not one of: binned, rejection"),
                })
            }
        };
        ensure(
            p.flops_bin.is_finite() && p.flops_bin > 0.0,
            c,
            "flops_bin",
            "must be a positive number",
        )?;
        let mut s = Self::common(
            SPOS,
            Mode::Uniform,
            p.constraint,
            p.max_tries,
            p.eval_paths,
            p.eval_batches,
            p.search,
            p.keep,
        )?;
        s.flops_bin = binned.then_some(p.flops_bin);
        Ok(s)
    }

    /// `fairnas` with checked params.
    pub fn fairnas(p: FairnasParams) -> Result<Self> {
        Self::common(
            FAIRNAS,
            Mode::Fair,
            Constraint::default(),
            1,
            p.eval_paths,
            p.eval_batches,
            p.search,
            p.keep,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn common(
        name: &'static str,
        mode: Mode,
        constraint: Constraint,
        max_tries: usize,
        eval_paths: usize,
        eval_batches: usize,
        search: Option<SearchBlock>,
        keep: usize,
    ) -> Result<Self> {
        let c = format!("strategy {name}");
        ensure(eval_batches >= 1, &c, "eval_batches", "must be >= 1")?;
        ensure(keep >= 1, &c, "keep", "must be >= 1")?;
        ensure(
            search.is_some() || eval_paths >= 1,
            &c,
            "search",
            "without a search, eval_paths must be >= 1 to have an architecture to return",
        )?;
        if let Some(s) = &search {
            s.build(&c)?;
        }
        Ok(SinglePath {
            name,
            mode,
            constraint,
            max_tries,
            flops_bin: None,
            eval_paths,
            eval_batches,
            search,
            keep,
            run: None,
        })
    }

    fn run_mut(&mut self) -> Result<&mut Run> {
        let n = self.name;
        self.run
            .as_mut()
            .ok_or_else(|| NasError::Strategy(format!("strategy `{n}` used before `init`")))
    }

    /// Runs the search once (or returns the epoch-end paths when there is none).
    fn ensure_searched(&mut self, env: &mut dyn SearchEnv) -> Result<()> {
        let name = self.name;
        let search = self.search.clone();
        let run = self.run_mut()?;
        if run.found.is_some() {
            return Ok(());
        }
        let found = match search {
            Some(block) => {
                let seed = nas_core::rng::component_seed(run.seed, "search");
                block.run(&format!("strategy {name}"), env, seed)?
            }
            None => {
                let mut v = run.scored.clone();
                v.sort_by(|a, b| b.fitness.total_cmp(&a.fitness));
                v
            }
        };
        if found.is_empty() {
            return Err(NasError::Strategy(format!(
                "strategy `{name}`: the search found no architecture within its constraint"
            )));
        }
        run.found = Some(found);
        Ok(())
    }

    /// The architectures a step trains (one uniform path, or the fair set).
    fn paths(&mut self, env: &dyn SearchEnv) -> Result<Vec<Architecture>> {
        let (mode, c, tries) = (self.mode, self.constraint.clone(), self.max_tries);
        let bin = self.flops_bin;
        let run = self.run_mut()?;
        Ok(match mode {
            Mode::Uniform => match bin {
                Some(w) => vec![binned_path(env, &c, w, tries, &mut run.rng)?],
                None => vec![constrained_path(env, &c, tries, &mut run.rng)?],
            },
            Mode::Fair => fair_paths(&run.spec, &mut run.rng),
        })
    }
}

impl SearchStrategy for SinglePath {
    fn name(&self) -> &str {
        self.name
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        nas_strategy_discrete::common::check_spec(self.name, spec)?;
        self.run = Some(Run {
            spec: spec.clone(),
            seed,
            rng: nas_core::component_rng(seed, self.name),
            sums: (0.0, 0.0, 0),
            scored: vec![],
            found: None,
        });
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let archs = self.paths(env)?;
        let n = archs.len();
        let name = self.name;
        let trainer = env.trainer().ok_or_else(|| {
            NasError::Strategy(format!(
                "strategy `{name}` trains a supernet; the run has no trainer"
            ))
        })?;
        let st = trainer.train_weights(&Drive::paths(archs))?;
        let run = self.run_mut()?;
        if st.loss.is_finite() {
            run.sums.0 += st.loss;
            run.sums.1 += st.accuracy;
            run.sums.2 += 1;
        }
        let mut m = Metrics::new();
        m.insert("train_loss".into(), st.loss);
        m.insert("train_acc".into(), st.accuracy);
        m.insert("lr".into(), st.lr);
        m.insert("grad_norm".into(), st.grad_norm);
        m.insert("paths".into(), n as f64);
        Ok(StepReport {
            metrics: m,
            finished: false,
        })
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let (epoch, total) = env.epoch();
        let mut m = Metrics::new();
        {
            let run = self.run_mut()?;
            let (l, a, k) = std::mem::take(&mut run.sums);
            if k > 0 {
                m.insert("train_loss".into(), l / k as f64);
                m.insert("train_acc".into(), a / k as f64);
            }
        }
        let mut accs = Vec::new();
        for _ in 0..self.eval_paths {
            let (c, tries, batches) = (self.constraint.clone(), self.max_tries, self.eval_batches);
            let a = {
                let run = self.run_mut()?;
                constrained_path(env, &c, tries, &mut run.rng)?
            };
            let cost = env.cost(&a)?;
            let trainer = env
                .trainer()
                .ok_or_else(|| NasError::Strategy("no trainer".into()))?;
            let s = score_path(trainer, &a, batches, &cost)?;
            accs.push(s.fitness / 100.0);
            self.run_mut()?.scored.push(Evaluated {
                arch: a,
                fitness: s.fitness,
                report: s.report,
            });
        }
        if !accs.is_empty() {
            m.insert(
                "valid_acc".into(),
                accs.iter().sum::<f64>() / accs.len() as f64,
            );
        }
        if epoch + 1 >= total {
            self.ensure_searched(env)?;
        }
        let run = self.run_mut()?;
        let current = match &run.found {
            Some(found) => {
                if let Some(b) = found.first() {
                    m.insert("search_best_fitness".into(), b.fitness);
                    m.insert("search_scored".into(), found.len() as f64);
                }
                found.first().map(|e| e.arch.clone())
            }
            None => run.scored.last().map(|e| e.arch.clone()),
        };
        Ok(EpochReport {
            metrics: m,
            current,
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        self.ensure_searched(env)?;
        let keep = self.keep;
        let run = self.run_mut()?;
        let found = run.found.clone().unwrap_or_default();
        Ok(SearchOutcome {
            architectures: found
                .iter()
                .take(keep)
                .enumerate()
                .map(|(i, e)| {
                    let mut metrics = e.report.clone();
                    metrics.insert("fitness".into(), e.fitness);
                    metrics.insert("supernet_valid_acc".into(), e.fitness / 100.0);
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
        let run = self.run.as_ref().ok_or_else(|| {
            NasError::Strategy(format!("strategy `{}` used before `init`", self.name))
        })?;
        serde_json::to_value(State {
            strategy: self.name.into(),
            rng: RngState::of(&run.rng),
            run: run.clone(),
        })
        .map_err(|e| NasError::Strategy(format!("cannot encode the state of `{}`: {e}", self.name)))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let name = self.name;
        let s: State = serde_json::from_value(state.clone()).map_err(|e| {
            NasError::Strategy(format!("saved state of `{name}` does not decode: {e}"))
        })?;
        if s.strategy != name {
            return Err(NasError::Strategy(format!(
                "saved state is for strategy `{}`, not `{name}`",
                s.strategy
            )));
        }
        let run = self.run_mut()?;
        if run.spec.shape() != s.run.spec.shape() || run.spec.space != s.run.spec.space {
            return Err(NasError::Strategy(format!(
                "saved state of `{name}` is for another space"
            )));
        }
        let mut r = s.run;
        r.rng = s.rng.restore()?;
        *run = r;
        Ok(())
    }
}
