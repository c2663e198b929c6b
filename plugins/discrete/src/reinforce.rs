//! REINFORCE over independent categorical distributions, one per decision.
//!
//! Source: Williams 1992; the NB201 benchmark's REINFORCE baseline (AutoDL-Projects
//! `exps/NAS-Bench-201-algos/reinforce.py` and `exps/NATS-algos/reinforce.py`): logits
//! initialised as `1e-3 * N(0, 1)`, one architecture sampled per step, reward = the
//! 12-epoch validation accuracy (in percent, unscaled), baseline = bias-corrected
//! exponential moving average with momentum 0.9 updated with the reward *before* the
//! advantage is taken, loss `-(reward - baseline) * log pi(arch)`, optimised with Adam.
//! Learning rate 0.001 as NB201's own script shows it in its usage line
//! (`exps/NAS-Bench-201-algos/reinforce.py`, the benchmark this crate reproduces); NATS-Bench's
//! documented runs use `--learning_rate 0.01` (set `lr: 0.01`) and NB201's grid
//! (`hps/GRID-RL.sh`) spans 0.01-0.5. The best architecture seen (by reward) is returned, as
//! in the reference.
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
use crate::policy::{grad_log_prob, softmax, AdamState, Baseline, PolicyOptimizer};

/// Registered name.
pub const NAME: &str = "reinforce";
const COMPONENT: &str = "strategy reinforce";

/// Parameters of REINFORCE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReinforceParams {
    /// Query budget: architectures sampled and scored.
    pub queries: u64,
    /// Learning rate of the logits (NB201's `reinforce.py` usage line: 0.001; NATS-Bench:
    /// 0.01).
    pub lr: f64,
    /// Momentum of the moving-average baseline (NB201: 0.9).
    pub ema_momentum: f64,
    /// Optimizer of the logits (NB201: Adam).
    pub optimizer: PolicyOptimizer,
    /// Adam's `(beta1, beta2)` (PyTorch defaults, as the reference uses).
    pub betas: [f64; 2],
    /// Adam's epsilon (PyTorch default).
    pub eps: f64,
    /// Standard deviation of the initial logits (NB201: 1e-3).
    pub init_std: f64,
}

impl Default for ReinforceParams {
    fn default() -> Self {
        ReinforceParams {
            queries: 100,
            lr: 0.001,
            ema_momentum: 0.9,
            optimizer: PolicyOptimizer::Adam,
            betas: [0.9, 0.999],
            eps: 1e-8,
            init_std: 1e-3,
        }
    }
}

impl ReinforceParams {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        ensure(self.queries >= 1, COMPONENT, "queries", "must be >= 1")?;
        ensure(
            self.lr.is_finite() && self.lr > 0.0,
            COMPONENT,
            "lr",
            format!("must be finite and > 0, got {}", self.lr),
        )?;
        ensure(
            (0.0..1.0).contains(&self.ema_momentum),
            COMPONENT,
            "ema_momentum",
            format!("must be in [0, 1), got {}", self.ema_momentum),
        )?;
        ensure(
            self.betas.iter().all(|b| (0.0..1.0).contains(b)),
            COMPONENT,
            "betas",
            format!("each must be in [0, 1), got {:?}", self.betas),
        )?;
        ensure(
            self.eps.is_finite() && self.eps > 0.0,
            COMPONENT,
            "eps",
            format!("must be finite and > 0, got {}", self.eps),
        )?;
        ensure(
            self.init_std.is_finite() && self.init_std >= 0.0,
            COMPONENT,
            "init_std",
            format!("must be finite and >= 0, got {}", self.init_std),
        )
    }

    fn same_except_budget(&self, other: &Self) -> bool {
        ReinforceParams {
            queries: other.queries,
            ..self.clone()
        } == *other
    }
}

/// Registry information.
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "REINFORCE over per-decision categorical logits with an EMA baseline \
                  (NB201's RL baseline)"
            .into(),
        defaults: serde_json::to_value(ReinforceParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("queries", "query budget (architectures sampled and scored)"),
            ParamDoc::new(
                "lr",
                "learning rate of the logits (NB201 reinforce.py: 0.001; NATS-Bench: 0.01; NB201 grid 0.01-0.5)",
            ),
            ParamDoc::new(
                "ema_momentum",
                "momentum of the bias-corrected moving-average baseline (NB201: 0.9)",
            ),
            ParamDoc::new("optimizer", "adam (NB201) | sgd"),
            ParamDoc::new("betas", "Adam betas (PyTorch default [0.9, 0.999])"),
            ParamDoc::new("eps", "Adam epsilon (PyTorch default 1e-8)"),
            ParamDoc::new(
                "init_std",
                "std of the initial logits, drawn N(0, init_std^2) (NB201: 1e-3)",
            ),
        ],
        origin: "built-in".into(),
    }
}

/// Policy state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Policy {
    logits: Vec<Vec<f64>>,
    baseline: Baseline,
    adam: AdamState,
}

struct Run {
    spec: SpaceSpec,
    rng: ChaCha8Rng,
    tracker: Tracker,
    policy: Policy,
}

/// REINFORCE. One step = one sampled architecture = one query, then one update.
pub struct Reinforce {
    params: ReinforceParams,
    run: Option<Run>,
}

#[derive(Serialize, Deserialize)]
struct State {
    common: CommonState,
    params: ReinforceParams,
    policy: Policy,
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An index drawn from the categorical distribution `probs`.
fn sample_categorical(probs: &[f64], rng: &mut impl Rng) -> usize {
    let u = rng.random::<f64>();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

impl Reinforce {
    /// A new REINFORCE (checks `params`).
    pub fn new(params: ReinforceParams) -> Result<Self> {
        params.check()?;
        Ok(Reinforce { params, run: None })
    }

    /// Current probabilities `[decision][option]` (`None` before `init`).
    pub fn probabilities(&self) -> Option<Vec<Vec<f64>>> {
        self.run
            .as_ref()
            .map(|r| r.policy.logits.iter().map(|l| softmax(l)).collect())
    }

    /// Queries and best so far (`None` before `init`).
    pub fn tracker(&self) -> Option<&Tracker> {
        self.run.as_ref().map(|r| &r.tracker)
    }
}

impl SearchStrategy for Reinforce {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Estimator
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        check_spec(NAME, spec)?;
        let mut rng = nas_core::component_rng(seed, NAME);
        let logits = spec
            .shape()
            .into_iter()
            .map(|n| {
                (0..n)
                    .map(|_| self.params.init_std * standard_normal(&mut rng))
                    .collect()
            })
            .collect();
        self.run = Some(Run {
            spec: spec.clone(),
            rng,
            tracker: Tracker::default(),
            policy: Policy {
                logits,
                baseline: Baseline::default(),
                adam: AdamState::default(),
            },
        });
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let p = &self.params;
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        check_env(NAME, &run.spec, env)?;
        if run.tracker.queries >= p.queries {
            return Ok(StepReport {
                metrics: run.tracker.metrics(),
                finished: true,
            });
        }
        let probs: Vec<Vec<f64>> = run.policy.logits.iter().map(|l| softmax(l)).collect();
        let actions: Vec<usize> = probs
            .iter()
            .map(|pr| sample_categorical(pr, &mut run.rng))
            .collect();
        let ev = run.tracker.evaluate(
            NAME,
            env,
            Architecture::new(run.spec.space.clone(), actions),
        )?;
        let reward = ev.fitness;
        let policy = &mut run.policy;
        policy.baseline.update(reward, p.ema_momentum);
        let advantage = reward - policy.baseline.value();
        // Descend the loss -(r - b) log pi: its gradient is -(r - b) d log pi / d logits.
        let grad: Vec<f64> = grad_log_prob(&policy.logits, &ev.arch.choices)
            .into_iter()
            .flatten()
            .map(|g| -advantage * g)
            .collect();
        let mut flat: Vec<f64> = policy.logits.iter().flatten().copied().collect();
        match p.optimizer {
            PolicyOptimizer::Adam => policy.adam.step(&mut flat, &grad, p.lr, p.betas, p.eps),
            PolicyOptimizer::Sgd => {
                for (x, g) in flat.iter_mut().zip(&grad) {
                    *x -= p.lr * g;
                }
            }
        }
        if flat.iter().any(|x| !x.is_finite()) {
            return Err(NasError::NonFinite {
                quantity: "REINFORCE logits".into(),
                epoch: env.epoch().0,
                step: run.tracker.queries as usize,
            });
        }
        let mut at = 0;
        for l in policy.logits.iter_mut() {
            let n = l.len();
            l.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        let entropy = probs
            .iter()
            .map(|pr| {
                -pr.iter()
                    .filter(|&&x| x > 0.0)
                    .map(|x| x * x.ln())
                    .sum::<f64>()
            })
            .sum::<f64>()
            / probs.len() as f64;
        let mut metrics = run.tracker.step_metrics(&ev);
        metrics.insert("baseline".into(), policy.baseline.value());
        metrics.insert("advantage".into(), advantage);
        metrics.insert("policy_entropy".into(), entropy);
        Ok(StepReport {
            metrics,
            finished: run.tracker.queries >= p.queries,
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
        self.probabilities().map(|p| {
            MixingWeights(
                p.into_iter()
                    .map(|d| d.into_iter().map(|x| x as f32).collect())
                    .collect(),
            )
        })
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
                policy: run.policy.clone(),
            },
        )
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let run = self.run.as_mut().ok_or_else(|| not_initialised(NAME))?;
        let s: State = decode_state(NAME, state)?;
        s.common.check(NAME, &run.spec)?;
        // Only the budget may differ (a resumed run may be given more queries).
        if !self.params.same_except_budget(&s.params) {
            return Err(NasError::Strategy(format!(
                "saved state of `reinforce` has params {:?}, this run {:?} (only `queries` may differ)",
                s.params, self.params
            )));
        }
        let shape: Vec<usize> = s.policy.logits.iter().map(Vec::len).collect();
        if shape != run.spec.shape() {
            return Err(NasError::Strategy(format!(
                "saved REINFORCE logits have shape {shape:?}, the space {:?}",
                run.spec.shape()
            )));
        }
        run.rng = s.common.rng.restore()?;
        run.tracker = s.common.tracker;
        run.policy = s.policy;
        Ok(())
    }
}
