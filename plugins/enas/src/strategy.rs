//! The `enas` strategy: alternating phases (Pham et al. 2018, section 2.2; melodyguan/enas
//! `main.py` `train()`): each search step trains the shared weights on one architecture
//! the controller samples ([`nas_core::DriveKind::Paths`]); at the end of each epoch the
//! controller takes `controller_steps` Adam steps, each averaging the REINFORCE gradients of
//! `aggregate` sampled architectures, each rewarded by its accuracy on the next shuffled
//! validation batch (the trainer's `arch_gradient` on a path: training-mode batch norm, no
//! recalibration, no gradient). After the last epoch `final_samples` architectures are
//! sampled and the best by reward is returned.
//!
//! REINFORCE as in `micro_controller.py` `build_trainer`: `R = acc + entropy_weight * H`,
//! the baseline moves first (`b -= (1 - decay) (b - R)`), then the loss is
//! `-(R - b) log p(arch)`; over macro layers the skip penalty is added,
//! `-(R - b) log p(arch) + skip_weight * KL` (`general_controller.py`).
//!
//! Deviations from the reference: the reference trains the controller on the validation
//! batches with TensorFlow's asynchronous-capable `SyncReplicasOptimizer`; here the
//! `aggregate` gradients are averaged synchronously (what it does with one replica). The
//! reference has no explicit "final sample" count (it prints 10 samples per epoch); 10 is
//! our default.
use nas_core::{
    Architecture, Drive, EpochReport, FoundArchitecture, GradOrder, Metrics, MixingWeights,
    NasError, Needs, Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec, StepReport,
};
use nas_strategy_discrete::common::RngState;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::controller::Controller;
use crate::params::{DefaultsFor, EnasParams};
use crate::plan::{Block, Plan};

/// Registered name.
pub const NAME: &str = "enas";

/// One scored architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The architecture.
    pub arch: Architecture,
    /// Its reward-batch validation accuracy in `[0, 1]`.
    pub accuracy: f64,
}

/// Everything that changes during a run (saved for resume).
#[derive(Clone, Serialize, Deserialize)]
struct Run {
    space: String,
    shape: Vec<usize>,
    seed: u64,
    controller: Vec<Vec<f64>>,
    adam: Adam,
    baseline: f64,
    /// Loss, accuracy and steps of the current epoch's weight training.
    sums: (f64, f64, usize),
    /// Macro spaces: the summed per-update mean skip penalty and skip count of the current
    /// epoch's controller phase.
    #[serde(default)]
    macro_sums: (f64, f64),
    controller_updates: u64,
    found: Option<Vec<Scored>>,
}

#[derive(Serialize, Deserialize)]
struct State {
    strategy: String,
    rng: RngState,
    run: Run,
}

/// The ENAS strategy.
pub struct Enas {
    p: EnasParams,
    /// The config's `strategy.params` as written (`null` when built from typed params):
    /// the keys it sets win over the space kind's defaults at `init`.
    user: Option<serde_json::Value>,
    ctl: Option<Controller>,
    rng: ChaCha8Rng,
    run: Option<Run>,
}

fn trainer_missing() -> NasError {
    NasError::Strategy("strategy `enas` trains a supernet; the run has no trainer".into())
}

/// The reward of `arch`: mean accuracy over `batches` fresh shuffled validation batches
/// (`arch_gradient` on a path: training-mode batch norm, no recalibration, no gradient).
pub fn reward(env: &mut dyn SearchEnv, arch: &Architecture, batches: usize) -> Result<f64> {
    let t = env.trainer().ok_or_else(trainer_missing)?;
    let mut acc = 0.0;
    for _ in 0..batches {
        acc += t
            .arch_gradient(&Drive::path(arch.clone()), GradOrder::First)?
            .accuracy;
    }
    Ok(acc / batches as f64)
}

impl Enas {
    /// A strategy with checked params.
    pub fn new(p: EnasParams) -> Result<Self> {
        p.check()?;
        Ok(Enas {
            p,
            user: None,
            ctl: None,
            rng: nas_core::component_rng(0, NAME),
            run: None,
        })
    }

    /// A strategy from a config's untyped `strategy.params`: checked now against the micro
    /// script's defaults, and re-read over the macro script's
    /// ([`EnasParams::macro_search`]) at `init` when the space turns out to be a macro
    /// space, so a config names only what it changes (the reference ships one script per
    /// space).
    pub fn from_config(params: &serde_json::Value) -> Result<Self> {
        let mut s = Enas::new(EnasParams::for_space(params, DefaultsFor::Micro)?)?;
        s.user = Some(params.clone());
        Ok(s)
    }

    /// The params in force (after `init`: those of the space's kind).
    pub fn params(&self) -> &EnasParams {
        &self.p
    }

    /// The controller (after `init`), for inspection and tests.
    pub fn controller(&self) -> Option<&Controller> {
        self.ctl.as_ref()
    }

    /// The moving-average baseline (after `init`).
    pub fn baseline(&self) -> Option<f64> {
        self.run.as_ref().map(|r| r.baseline)
    }

    fn parts(&mut self) -> Result<(&Controller, &mut Run, &mut ChaCha8Rng)> {
        match (&self.ctl, &mut self.run) {
            (Some(c), Some(r)) => Ok((c, r, &mut self.rng)),
            _ => Err(NasError::Strategy(
                "strategy `enas` used before `init`".into(),
            )),
        }
    }

    fn arch(&self, choices: Vec<usize>) -> Result<Architecture> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| NasError::Strategy("no run".into()))?;
        Ok(Architecture::new(run.space.clone(), choices))
    }

    /// One controller update; returns (mean reward, mean accuracy, mean entropy).
    fn controller_update(&mut self, env: &mut dyn SearchEnv) -> Result<(f64, f64, f64)> {
        let p = self.p.clone();
        let n = p.aggregate;
        let mut sum: Option<Vec<Vec<f64>>> = None;
        let (mut rs, mut accs, mut ents) = (0.0, 0.0, 0.0);
        let (mut kl, mut skips) = (0.0, 0.0);
        for _ in 0..n {
            let (ctl, _, rng) = self.parts()?;
            let rollout = ctl.sample(rng)?;
            let arch = self.arch(rollout.choices.clone())?;
            let acc = reward(env, &arch, p.reward_batches)?;
            let (ctl, run, _) = self.parts()?;
            let r = acc + p.entropy_weight * rollout.entropy;
            run.baseline -= (1.0 - p.baseline_decay) * (run.baseline - r);
            let adv = r - run.baseline;
            let g = ctl.grad_loss(&rollout, -adv / n as f64, p.skip_weight / n as f64)?;
            if ctl.plan().has_macro() {
                kl += rollout
                    .skip_penalty
                    .to_scalar::<f64>()
                    .map_err(|e| NasError::Strategy(format!("enas controller: {e}")))?;
                skips += rollout.skip_count as f64;
            }
            sum = Some(match sum {
                None => g,
                Some(mut s) => {
                    for (a, b) in s.iter_mut().zip(&g) {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    }
                    s
                }
            });
            rs += r;
            accs += acc;
            ents += rollout.entropy;
        }
        let (ctl, run, _) = self.parts()?;
        let mut w = ctl.values()?;
        run.adam
            .step(&mut w, &sum.unwrap_or_default(), p.lr, p.betas, p.eps);
        ctl.set_values(&w)?;
        run.controller = w;
        run.controller_updates += 1;
        let k = n as f64;
        if ctl.plan().has_macro() {
            run.macro_sums.0 += kl / k;
            run.macro_sums.1 += skips / k;
        }
        Ok((rs / k, accs / k, ents / k))
    }

    /// Samples `final_samples` architectures and keeps them sorted by reward.
    fn ensure_final(&mut self, env: &mut dyn SearchEnv) -> Result<()> {
        if self.run.as_ref().is_some_and(|r| r.found.is_some()) {
            return Ok(());
        }
        let mut scored: Vec<Scored> = Vec::new();
        for _ in 0..self.p.final_samples {
            let (ctl, _, rng) = self.parts()?;
            let choices = ctl.sample(rng)?.choices;
            let arch = self.arch(choices)?;
            let accuracy = reward(env, &arch, self.p.reward_batches)?;
            scored.push(Scored { arch, accuracy });
        }
        // Stable: among equal rewards the earlier sample stays first.
        scored.sort_by(|a, b| b.accuracy.total_cmp(&a.accuracy));
        self.parts()?.1.found = Some(scored);
        Ok(())
    }
}

impl SearchStrategy for Enas {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        nas_strategy_discrete::common::check_spec(NAME, spec)?;
        if let Some(user) = &self.user {
            let is_macro = Plan::new(spec)?
                .blocks
                .iter()
                .any(|b| matches!(b, Block::Macro { .. }));
            let which = if is_macro {
                DefaultsFor::Macro
            } else {
                DefaultsFor::Micro
            };
            self.p = EnasParams::for_space(user, which)?;
        }
        let mut init_rng = nas_core::component_rng(seed, "enas.controller_init");
        let ctl = Controller::new(spec, self.p.policy(), &mut init_rng)?;
        self.run = Some(Run {
            space: spec.space.clone(),
            shape: spec.shape(),
            seed,
            controller: ctl.values()?,
            adam: Adam::default(),
            baseline: 0.0,
            sums: (0.0, 0.0, 0),
            macro_sums: (0.0, 0.0),
            controller_updates: 0,
            found: None,
        });
        self.ctl = Some(ctl);
        self.rng = nas_core::component_rng(seed, NAME);
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (ctl, _, rng) = self.parts()?;
        let choices = ctl.sample(rng)?.choices;
        let arch = self.arch(choices)?;
        let st = env
            .trainer()
            .ok_or_else(trainer_missing)?
            .train_weights(&Drive::path(arch))?;
        let run = self.parts()?.1;
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
        Ok(StepReport {
            metrics: m,
            finished: false,
        })
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let (epoch, total) = env.epoch();
        let mut m = Metrics::new();
        {
            let run = self.parts()?.1;
            let (l, a, k) = std::mem::take(&mut run.sums);
            if k > 0 {
                m.insert("train_loss".into(), l / k as f64);
                m.insert("train_acc".into(), a / k as f64);
            }
        }
        let (mut r, mut a, mut e) = (0.0, 0.0, 0.0);
        let steps = self.p.controller_steps;
        for _ in 0..steps {
            let (ri, ai, ei) = self.controller_update(env)?;
            r += ri;
            a += ai;
            e += ei;
        }
        if steps > 0 {
            let k = steps as f64;
            m.insert("reward".into(), r / k);
            m.insert("valid_acc".into(), a / k);
            m.insert("entropy".into(), e / k);
            let run = self.parts()?.1;
            let (kl, skips) = std::mem::take(&mut run.macro_sums);
            if self.ctl.as_ref().is_some_and(|c| c.plan().has_macro()) {
                m.insert("skip_penalty".into(), kl / k);
                m.insert("skips".into(), skips / k);
            }
        }
        m.insert("baseline".into(), self.parts()?.1.baseline);
        if epoch + 1 >= total {
            self.ensure_final(env)?;
        }
        let current = match &self.run.as_ref().and_then(|r| r.found.clone()) {
            Some(f) => f.first().map(|s| {
                m.insert("final_reward_acc".into(), s.accuracy);
                s.arch.clone()
            }),
            None => None,
        };
        Ok(EpochReport {
            metrics: m,
            current,
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        self.ensure_final(env)?;
        let found = self.parts()?.1.found.clone().unwrap_or_default();
        Ok(SearchOutcome {
            architectures: found
                .iter()
                .take(self.p.keep)
                .enumerate()
                .map(|(i, s)| {
                    let mut metrics = Metrics::new();
                    metrics.insert("supernet_valid_acc".into(), s.accuracy);
                    metrics.insert("fitness".into(), 100.0 * s.accuracy);
                    FoundArchitecture {
                        label: if i == 0 {
                            "best".into()
                        } else {
                            format!("top{}", i + 1)
                        },
                        arch: s.arch.clone(),
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
            .ok_or_else(|| NasError::Strategy("strategy `enas` used before `init`".into()))?;
        serde_json::to_value(State {
            strategy: NAME.into(),
            rng: RngState::of(&self.rng),
            run: run.clone(),
        })
        .map_err(|e| NasError::Strategy(format!("cannot encode the state of `enas`: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone()).map_err(|e| {
            NasError::Strategy(format!("saved state of `enas` does not decode: {e}"))
        })?;
        if s.strategy != NAME {
            return Err(NasError::Strategy(format!(
                "saved state is for strategy `{}`, not `enas`",
                s.strategy
            )));
        }
        let (ctl, run, _) = self.parts()?;
        if run.shape != s.run.shape || run.space != s.run.space {
            return Err(NasError::Strategy(
                "saved state of `enas` is for another space".into(),
            ));
        }
        ctl.set_values(&s.run.controller)?;
        *run = s.run;
        self.rng = s.rng.restore()?;
        Ok(())
    }
}
