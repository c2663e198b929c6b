//! The Gumbel-softmax strategy behind `gdas`, `snas` and `fbnet`.
use nas_core::math::softmax;
use nas_core::{
    ComponentInfo, ComponentKind, Drive, DriveKind, EpochReport, GradOrder, Metrics, MixingWeights,
    NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec, Split,
    StepReport, SupernetTrainer,
};
use nas_optim::{build_optimizer, Optimizer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::loss::arch_loss;
use crate::params::{decode, defaults, GumbelParams, Method, Samples, Sampling};
use crate::sample::{drive_weights, sample_all, Sample};
use crate::schedule::temperature;

/// Registry information of the three methods.
pub fn infos() -> Vec<ComponentInfo> {
    Method::all()
        .into_iter()
        .map(|m| {
            let summary = match m {
                Method::Gdas => "GDAS (Dong & Yang 2019): hard straight-through Gumbel samples, only the sampled op computed; tau 10 -> 0.1 linear",
                Method::Snas => "SNAS-style soft Gumbel-softmax relaxation (Xie et al. 2019); tau 5.0 x 0.956/epoch (FBNet's schedule)",
                Method::Fbnet => "FBNet (Wu et al. 2019): soft Gumbel samples, loss CE * 0.2 * log(LAT)^0.6, 10 warm-up epochs",
            };
            ComponentInfo {
                kind: ComponentKind::Strategy,
                name: m.name().into(),
                summary: summary.into(),
                defaults: serde_json::to_value(defaults(m)).unwrap_or_default(),
                params: param_docs(),
                origin: "built-in".into(),
            }
        })
        .collect()
}

fn param_docs() -> Vec<ParamDoc> {
    let d = ParamDoc::new;
    vec![
        d("sampling", "hard (straight-through one-hot, SelectedOnly: unsampled ops not computed; GDAS) | soft (SNAS, FBNet)"),
        d("samples", "batch (one sample per batch) | example (one per example; hard samples run each op on the examples that chose it)"),
        d("tau_schedule", "linear (GDAS: tau_max -> tau_min) | exponential (FBNet: tau_max * tau_decay^epoch)"),
        d("tau_max", "initial temperature (GDAS 10, FBNet 5.0)"),
        d("tau_min", "final temperature of the linear schedule (GDAS 0.1)"),
        d("tau_decay", "per-epoch factor of the exponential schedule (FBNet 0.956)"),
        d("init_scale", "logits start as init_scale * N(0,1) (reference: 1e-3)"),
        d("arch_optimizer", "optimizer of the logits (GDAS/SNAS: Adam 3e-4, betas 0.5/0.999, wd 1e-3; FBNet: Adam 0.01, wd 5e-4); optimizers.arch overrides it"),
        d("warmup_epochs", "epochs of weight-only training before arch steps (FBNet: 10)"),
        d("eval_batches", "validation batches evaluated at each epoch end (null = all)"),
        d("cost", "{metric: latency|flops|params, form: add|mul_log, weight, target, a, b} (FBNet: latency, mul_log, a 0.2, b 0.6); null = none"),
    ]
}

/// Builds a strategy by name (`gdas`, `snas`, `fbnet`).
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    match Method::from_name(name) {
        Some(m) => Ok(Box::new(Gumbel::new(m, params)?)),
        None => Err(NasError::UnknownComponent {
            kind: "strategy".into(),
            name: name.into(),
            known: "gdas, snas, fbnet".into(),
        }),
    }
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Sums {
    n: usize,
    arch_n: usize,
    train_loss: f64,
    train_acc: f64,
    arch_loss: f64,
    arch_ce: f64,
    arch_acc: f64,
    cost: f64,
}

#[derive(Serialize, Deserialize)]
struct State {
    alphas: Vec<Vec<f64>>,
    optimizer: serde_json::Value,
    rng_seed: [u8; 32],
    rng_word_pos: String,
    sums: Sums,
    last_valid_acc: Option<f64>,
}

/// A Gumbel-softmax strategy: logits, their optimizer, the noise stream, the schedule.
pub struct Gumbel {
    method: Method,
    p: GumbelParams,
    alphas: Vec<Vec<f64>>,
    costs: Option<Vec<Vec<f64>>>,
    opt: Box<dyn Optimizer>,
    rng: ChaCha8Rng,
    sums: Sums,
    last_valid_acc: Option<f64>,
}

fn trainer_of(env: &mut dyn SearchEnv, m: Method) -> Result<&mut dyn SupernetTrainer> {
    env.trainer()
        .ok_or_else(|| NasError::Strategy(format!("{} needs a supernet trainer", m.name())))
}

impl Gumbel {
    /// A strategy of `method` from its params.
    pub fn new(method: Method, params: &serde_json::Value) -> Result<Self> {
        let p = decode(method, params)?;
        let opt = build_optimizer(&p.arch_optimizer.name, &p.arch_optimizer.params)?;
        Ok(Gumbel {
            method,
            p,
            alphas: vec![],
            costs: None,
            opt,
            rng: nas_core::component_rng(0, "strategy.gumbel.sample"),
            sums: Sums::default(),
            last_valid_acc: None,
        })
    }

    /// The decoded params.
    pub fn params(&self) -> &GumbelParams {
        &self.p
    }

    /// The logits.
    pub fn alphas(&self) -> &[Vec<f64>] {
        &self.alphas
    }

    /// Replaces the logits (tests, warm starts).
    pub fn set_alphas(&mut self, a: Vec<Vec<f64>>) {
        self.alphas = a;
    }

    /// `softmax(alpha)` per decision.
    pub fn probabilities(&self) -> MixingWeights {
        MixingWeights(
            self.alphas
                .iter()
                .map(|a| softmax(a).into_iter().map(|v| v as f32).collect())
                .collect(),
        )
    }

    /// The temperature at `epoch` of `epochs`.
    pub fn tau(&self, epoch: usize, epochs: usize) -> f64 {
        let p = &self.p;
        temperature(
            p.tau_schedule,
            p.tau_max,
            p.tau_min,
            p.tau_decay,
            epoch,
            epochs,
        )
    }

    /// Draws the samples of one drive (one set, or one per example of a batch of `n`) and
    /// builds the drive: `SelectedOnly` (one per batch) or `SelectedPerSample` (one per
    /// example) one-hot for hard samples, `Mixed` or `MixedPerSample` for soft ones.
    pub fn sample_drive(&mut self, tau: f64, n: usize) -> (Drive, Vec<Vec<Sample>>) {
        let hard = self.p.sampling == Sampling::Hard;
        let count = match self.p.samples {
            Samples::Batch => 1,
            Samples::Example => n.max(1),
        };
        let samples: Vec<Vec<Sample>> = (0..count)
            .map(|_| sample_all(&self.alphas, tau, &mut self.rng))
            .collect();
        let kind = if count == 1 && self.p.samples == Samples::Batch {
            let weights = MixingWeights(drive_weights(&samples[0], hard));
            if hard {
                DriveKind::SelectedOnly { weights }
            } else {
                DriveKind::Mixed { weights }
            }
        } else {
            let weights = samples
                .iter()
                .map(|s| MixingWeights(drive_weights(s, hard)))
                .collect();
            if hard {
                DriveKind::SelectedPerSample { weights }
            } else {
                DriveKind::MixedPerSample { weights }
            }
        };
        (
            Drive {
                kind,
                condition: None,
            },
            samples,
        )
    }

    /// One architecture step on the next validation batch; returns (loss, CE, accuracy,
    /// expected cost).
    pub fn arch_step(&mut self, env: &mut dyn SearchEnv, tau: f64) -> Result<[f64; 4]> {
        let m = self.method;
        let n = trainer_of(env, m)?.batch_size();
        let (drive, samples) = self.sample_drive(tau, n);
        let ag = trainer_of(env, m)?.arch_gradient(&drive, GradOrder::First)?;
        let cost = match (&self.p.cost, &self.costs) {
            (Some(t), Some(c)) => Some((t, c.as_slice())),
            _ => None,
        };
        let l = arch_loss(&self.alphas, &samples, &ag.grads, ag.loss, tau, cost)?;
        let mut a: Vec<&mut [f64]> = self.alphas.iter_mut().map(|v| v.as_mut_slice()).collect();
        let gr: Vec<&[f64]> = l.grad.iter().map(|v| v.as_slice()).collect();
        let lr = self.opt.base_lr();
        self.opt.step(&mut a, &gr, lr)?;
        Ok([l.loss, l.ce, ag.accuracy, l.cost.unwrap_or(f64::NAN)])
    }

    /// The drive used to evaluate the supernet at an epoch's end: the argmax option of
    /// each decision only (`SelectedOnly`) for hard sampling, `Mixed(softmax(alpha))` for
    /// soft sampling.
    fn eval_drive(&self) -> Drive {
        let w = self.probabilities();
        if self.p.sampling == Sampling::Hard {
            let one_hot =
                w.0.iter()
                    .map(|v| {
                        let k = (0..v.len()).fold(0, |b, k| if v[k] > v[b] { k } else { b });
                        (0..v.len())
                            .map(|j| if j == k { 1.0 } else { 0.0 })
                            .collect()
                    })
                    .collect();
            Drive {
                kind: DriveKind::SelectedOnly {
                    weights: MixingWeights(one_hot),
                },
                condition: None,
            }
        } else {
            Drive::mixed(w)
        }
    }
}

impl SearchStrategy for Gumbel {
    fn name(&self) -> &str {
        self.method.name()
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        self.alphas =
            nas_core::rng::normal_logits(spec, self.p.init_scale, seed, "strategy.gumbel.alphas");
        self.rng = nas_core::component_rng(seed, "strategy.gumbel.sample");
        self.costs = match &self.p.cost {
            Some(t) => Some(t.option_costs(spec)?),
            None => None,
        };
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (epoch, epochs) = env.epoch();
        let tau = self.tau(epoch, epochs);
        let m = self.method;
        let n = trainer_of(env, m)?.batch_size();
        // Weights first, then the architecture, on separate splits (GDAS reference
        // `search_func`: `base_inputs` then `arch_inputs`; FBNet: w on 80 %, theta on 20 %).
        let (drive, _) = self.sample_drive(tau, n);
        let st = trainer_of(env, m)?.train_weights(&drive)?;
        let mut metrics = Metrics::new();
        metrics.insert("train_loss".into(), st.loss);
        metrics.insert("train_acc".into(), st.accuracy);
        metrics.insert("lr".into(), st.lr);
        metrics.insert("tau".into(), tau);
        self.sums.n += 1;
        self.sums.train_loss += st.loss;
        self.sums.train_acc += st.accuracy;
        if epoch >= self.p.warmup_epochs {
            let [loss, ce, acc, cost] = self.arch_step(env, tau)?;
            metrics.insert("arch_loss".into(), loss);
            metrics.insert("arch_ce".into(), ce);
            metrics.insert("arch_acc".into(), acc);
            self.sums.arch_n += 1;
            self.sums.arch_loss += loss;
            self.sums.arch_ce += ce;
            self.sums.arch_acc += acc;
            if cost.is_finite() {
                metrics.insert("expected_cost".into(), cost);
                self.sums.cost += cost;
            }
        }
        Ok(StepReport {
            metrics,
            finished: false,
        })
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let arch = env.derive(&self.probabilities(), "default")?;
        let (epoch, epochs) = env.epoch();
        let mut m = Metrics::new();
        let s = std::mem::take(&mut self.sums);
        let n = s.n.max(1) as f64;
        m.insert("train_loss".into(), s.train_loss / n);
        m.insert("train_acc".into(), s.train_acc / n);
        m.insert("tau".into(), self.tau(epoch, epochs));
        if s.arch_n > 0 {
            let a = s.arch_n as f64;
            m.insert("arch_loss".into(), s.arch_loss / a);
            m.insert("arch_ce".into(), s.arch_ce / a);
            m.insert("arch_acc".into(), s.arch_acc / a);
            if self.p.cost.is_some() {
                m.insert("expected_cost".into(), s.cost / a);
            }
        }
        let drive = self.eval_drive();
        let eval_batches = self.p.eval_batches;
        let ev = trainer_of(env, self.method)?.evaluate(&drive, Split::Valid, eval_batches)?;
        m.insert("valid_loss".into(), ev.loss);
        m.insert("valid_acc".into(), ev.accuracy);
        self.last_valid_acc = Some(ev.accuracy);
        Ok(EpochReport {
            metrics: m,
            current: Some(arch),
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let arch = env.derive(&self.probabilities(), "default")?;
        let cost = env.cost(&arch).ok();
        let mut outcome = SearchOutcome::best(arch, self.last_valid_acc);
        if let Some(c) = cost {
            let metrics = &mut outcome.architectures[0].metrics;
            metrics.insert("params".into(), c.params);
            metrics.insert("flops".into(), c.flops);
            if let Some(l) = c.latency_ms {
                metrics.insert("latency_ms".into(), l);
            }
        }
        Ok(outcome)
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        Some(self.probabilities())
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(State {
            alphas: self.alphas.clone(),
            optimizer: self.opt.save_state(),
            rng_seed: self.rng.get_seed(),
            rng_word_pos: self.rng.get_word_pos().to_string(),
            sums: self.sums.clone(),
            last_valid_acc: self.last_valid_acc,
        })
        .map_err(|e| NasError::Other(format!("saving {} state: {e}", self.method.name())))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let name = self.method.name();
        let s: State = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("{name} state does not decode: {e}")))?;
        let shape = |a: &[Vec<f64>]| a.iter().map(Vec::len).collect::<Vec<_>>();
        if !self.alphas.is_empty() && shape(&s.alphas) != shape(&self.alphas) {
            return Err(NasError::Strategy(format!(
                "the saved {name} logits do not fit this space (a checkpoint of another config?)"
            )));
        }
        let pos: u128 = s.rng_word_pos.parse().map_err(|e| {
            NasError::Strategy(format!("saved RNG word position `{}`: {e}", s.rng_word_pos))
        })?;
        self.alphas = s.alphas;
        self.opt.load_state(&s.optimizer)?;
        self.rng = ChaCha8Rng::from_seed(s.rng_seed);
        self.rng.set_word_pos(pos);
        self.sums = s.sums;
        self.last_valid_acc = s.last_valid_acc;
        Ok(())
    }
}
