//! The DARTS-CC strategy: per search step, one `lambda` drawn log-uniformly, an
//! architecture step on a validation batch (the trainer's gradient with respect to the mixing
//! weights, through the relaxation and the hypernetwork, plus the complexity penalty), then a
//! weight step on a training batch at the same `lambda` (reference `train_step`).
use nas_core::params::ensure;
use nas_core::{
    decode_params, ComponentInfo, ComponentKind, EpochReport, FoundArchitecture, Metrics,
    MixingWeights, NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy,
    SpaceSpec, Split, StepReport,
};
use nas_optim::{build_optimizer, Optimizer};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::hypernet::{HyperGradient, Hypernets};
use crate::lambda::LambdaRange;
use crate::params::{DartsCcParams, Relaxation, ValidParams};
use crate::penalty::{expected_cost, option_costs};
use crate::relax::{self, gumbel_softmax, probs_to_weights, softmax_t, temperature, Relaxed};

const NAME: &str = "darts_cc";

/// Registry information.
pub fn infos() -> Vec<ComponentInfo> {
    let d = |n: &str, s: &str| ParamDoc::new(n, s);
    vec![ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "DARTS-CC (Yakovlev et al.): hypernetwork lambda -> alpha with a parameter penalty; one search, a family of architectures".into(),
        defaults: serde_json::to_value(DartsCcParams::default()).unwrap_or_default(),
        params: vec![
            d("log_lambda_min", "log10 of the smallest lambda (paper: -10 CIFAR-sized, -8 small supernets)"),
            d("log_lambda_max", "log10 of the largest lambda (paper: -6 CIFAR-sized, -4 small supernets)"),
            d("anchors", "anchor logit matrices per node; null = int(L_max - L_min) + 1 (reference)"),
            d("train_pivots", "train the interpolation pivots too (reference: yes; default no, see docs)"),
            d("init_bound", "anchors start U(-b, b); null = 1/sqrt(rows*ops) (reference kaiming_uniform)"),
            d("relaxation", "gumbel (one Gumbel-softmax sample per example; reference, default) | softmax (cheaper)"),
            d("tau0", "initial temperature (reference 1.0)"),
            d("tau_step", "temperature change per epoch (reference -0.016)"),
            d("tau_min", "temperature floor (ours)"),
            d("cost", "params (paper) | flops: the per-option cost in the penalty"),
            d("order", "second (DARTS unrolled gradient; reference, default) | first (cheaper)"),
            d("xi", "second-order virtual step; null = current weight lr"),
            d("arch_optimizer", "optimizer of the hypernetworks (reference Adam lr 1e-3, betas 0.5/0.999, wd 1e-3); optimizers.arch overrides it"),
            d("family_t", "t values of the reported family (also tracked per epoch)"),
            d("derive_mode", "derivation of the family: default/darts (top-2 edges, no none) | simple (argmax incl. none)"),
            d("eval_batches", "validation batches evaluated per t at each epoch end (null = all)"),
            d("warmup_epochs", "weight-only epochs before the architecture steps"),
        ],
        origin: "built-in".into(),
    }]
}

/// Builds a strategy by name (only `darts_cc`).
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    match name {
        NAME => Ok(Box::new(DartsCc::new(params)?)),
        other => Err(NasError::UnknownComponent {
            kind: "strategy".into(),
            name: other.into(),
            known: NAME.into(),
        }),
    }
}

/// The part of a saved state that defines `alpha(t)`: what `nas derive` reads from
/// `strategy_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedHypernet {
    /// `L_min`.
    pub log_lambda_min: f64,
    /// `L_max`.
    pub log_lambda_max: f64,
    /// The hypernetworks.
    pub hypernets: Hypernets,
}

impl SavedHypernet {
    /// Decodes the hypernetwork from a `darts_cc` state (other fields are ignored).
    pub fn from_state(state: &serde_json::Value) -> Result<Self> {
        let s: SavedHypernet = serde_json::from_value(state.clone()).map_err(|e| {
            NasError::Strategy(format!(
                "not a darts_cc strategy state (no hypernetwork): {e}"
            ))
        })?;
        s.range()?;
        s.hypernets.check()?;
        Ok(s)
    }

    /// The lambda range.
    pub fn range(&self) -> Result<LambdaRange> {
        LambdaRange::new(self.log_lambda_min, self.log_lambda_max)
    }

    /// `softmax(alpha(t))` per decision (no temperature, as the reference derives
    /// genotypes).
    pub fn weights(&self, t: f64) -> Result<MixingWeights> {
        Ok(probs_to_weights(
            &self
                .hypernets
                .logits(t)?
                .iter()
                .map(|l| nas_core::math::softmax(l))
                .collect::<Vec<_>>(),
        ))
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    log_lambda_min: f64,
    log_lambda_max: f64,
    hypernets: Hypernets,
    optimizer: serde_json::Value,
    rng: RngState,
    steps: u64,
    epoch_sums: Sums,
}

#[derive(Serialize, Deserialize)]
struct RngState {
    seed: [u8; 32],
    word_pos: String,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Sums {
    n: usize,
    arch_n: usize,
    train_loss: f64,
    train_acc: f64,
    arch_loss: f64,
    arch_acc: f64,
    penalty: f64,
}

/// What one architecture step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchStepStats {
    /// Validation cross-entropy (before the penalty).
    pub loss: f64,
    /// Validation accuracy of the batch.
    pub accuracy: f64,
    /// `lambda * expected cost`.
    pub penalty: f64,
    /// Expected cost at `t` (parameters, by default).
    pub expected_cost: f64,
}

/// DARTS-CC: hypernetworks, their optimizer, and the search loop.
pub struct DartsCc {
    v: ValidParams,
    hyper: Option<Hypernets>,
    costs: Vec<Vec<f64>>,
    opt: Box<dyn Optimizer>,
    rng: ChaCha8Rng,
    steps: u64,
    sums: Sums,
    last_valid: Vec<(f64, f64)>,
}

impl DartsCc {
    /// A DARTS-CC strategy from its params.
    pub fn new(params: &serde_json::Value) -> Result<Self> {
        let p: DartsCcParams = decode_params("strategy darts_cc", params)?;
        let v = p.check()?;
        let opt = build_optimizer(&v.p.arch_optimizer.name, &v.p.arch_optimizer.params)?;
        Ok(DartsCc {
            v,
            hyper: None,
            costs: vec![],
            opt,
            rng: nas_core::component_rng(0, "strategy.darts_cc.sample"),
            steps: 0,
            sums: Sums::default(),
            last_valid: vec![],
        })
    }

    /// The lambda range.
    pub fn range(&self) -> LambdaRange {
        self.v.range
    }

    /// The hypernetworks (after `init`).
    pub fn hypernets(&self) -> Result<&Hypernets> {
        self.hyper
            .as_ref()
            .ok_or_else(|| NasError::Strategy("darts_cc used before init".into()))
    }

    /// Replaces the hypernetworks (tests, warm starts); they must fit the space.
    pub fn set_hypernets(&mut self, h: Hypernets) -> Result<()> {
        h.check()?;
        if let Some(old) = &self.hyper {
            if old.shape != h.shape {
                return Err(NasError::Strategy(
                    "darts_cc: the hypernetworks do not fit this space".into(),
                ));
            }
        }
        self.hyper = Some(h);
        Ok(())
    }

    /// The per-option costs the penalty weighs (`[decision][option]`).
    pub fn costs(&self) -> &[Vec<f64>] {
        &self.costs
    }

    /// The temperature of `epoch`.
    pub fn temperature(&self, epoch: usize) -> f64 {
        temperature(self.v.p.tau0, self.v.p.tau_step, self.v.p.tau_min, epoch)
    }

    /// `softmax(alpha(t))` (no temperature): what derivation and the alpha history use.
    pub fn weights_at(&self, t: f64) -> Result<MixingWeights> {
        Ok(probs_to_weights(&self.probs_at(t)?))
    }

    fn probs_at(&self, t: f64) -> Result<Vec<Vec<f64>>> {
        Ok(self
            .hypernets()?
            .logits(t)?
            .iter()
            .map(|l| nas_core::math::softmax(l))
            .collect())
    }

    /// The relaxed weights at `t`: `softmax(alpha(t) / tau)`, or `n` Gumbel-softmax samples.
    pub fn relax(&mut self, t: f64, tau: f64, n: usize) -> Result<Relaxed> {
        let logits = self.hypernets()?.logits(t)?;
        Ok(match self.v.relaxation {
            Relaxation::Softmax => {
                Relaxed::Shared(logits.iter().map(|l| softmax_t(l, tau)).collect())
            }
            Relaxation::Gumbel => Relaxed::PerSample(
                (0..n)
                    .map(|_| {
                        logits
                            .iter()
                            .map(|l| gumbel_softmax(l, tau, &mut self.rng))
                            .collect()
                    })
                    .collect(),
            ),
        })
    }

    /// The gradient of `L(relaxed weights) + lambda * expected_cost(alpha(t))` with respect
    /// to every anchor and pivot, given the trainer's `dL/d weights` (one entry, or one per
    /// example). Returns it with the penalty and the expected cost.
    pub fn hyper_gradient(
        &self,
        t: f64,
        lambda: f64,
        tau: f64,
        relaxed: &Relaxed,
        grads: &[MixingWeights],
    ) -> Result<(HyperGradient, f64, f64)> {
        let h = self.hypernets()?;
        let logits = h.logits(t)?;
        let (cost, dcost) = expected_cost(&logits, &self.costs);
        let mut dlogits: Vec<Vec<f64>> = dcost
            .into_iter()
            .map(|r| r.into_iter().map(|v| lambda * v).collect())
            .collect();
        let samples: Vec<&Vec<Vec<f64>>> = match relaxed {
            Relaxed::Shared(w) => vec![w],
            Relaxed::PerSample(ws) => ws.iter().collect(),
        };
        if grads.len() > samples.len() {
            return Err(NasError::Strategy(format!(
                "darts_cc: {} gradients for {} weight sets",
                grads.len(),
                samples.len()
            )));
        }
        // A short last batch returns fewer gradients; unused samples contribute nothing.
        for (w, g) in samples.iter().zip(grads) {
            if g.0.len() != w.len() {
                return Err(NasError::Strategy(
                    "darts_cc: the trainer's gradient does not fit the space".into(),
                ));
            }
            for ((dl, w), g) in dlogits.iter_mut().zip(w.iter()).zip(&g.0) {
                let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                for (a, b) in dl.iter_mut().zip(relax::backward(w, &g, tau)) {
                    *a += b;
                }
            }
        }
        Ok((h.backward(t, &dlogits)?, lambda * cost, cost))
    }

    /// Applies a hypernetwork gradient with the architecture optimizer (pivots only when
    /// `train_pivots`).
    pub fn apply(&mut self, g: &HyperGradient) -> Result<()> {
        let train_pivots = self.v.p.train_pivots;
        let lr = self.opt.base_lr();
        let h = self
            .hyper
            .as_mut()
            .ok_or_else(|| NasError::Strategy("darts_cc used before init".into()))?;
        let mut params: Vec<&mut [f64]> = Vec::new();
        let mut grads: Vec<&[f64]> = Vec::new();
        let (anchors, pivots): (Vec<_>, Vec<_>) = h
            .nets
            .iter_mut()
            .map(|n| (&mut n.anchors, &mut n.pivots))
            .unzip();
        for (a, ga) in anchors.into_iter().zip(&g.anchors) {
            params.push(a.as_mut_slice());
            grads.push(ga);
        }
        if train_pivots {
            for (p, gp) in pivots.into_iter().zip(&g.pivots) {
                params.push(p.as_mut_slice());
                grads.push(gp);
            }
        }
        self.opt.step(&mut params, &grads, lr)?;
        if train_pivots {
            for n in &mut h.nets {
                n.project_pivots();
            }
        }
        Ok(())
    }

    /// One architecture step at `(t, lambda)` with temperature `tau`.
    pub fn arch_step(
        &mut self,
        env: &mut dyn SearchEnv,
        t: f64,
        lambda: f64,
        tau: f64,
    ) -> Result<ArchStepStats> {
        let n = trainer(env)?.batch_size();
        let relaxed = self.relax(t, tau, n)?;
        let ag = trainer(env)?.arch_gradient(&relaxed.drive(t), self.v.order)?;
        let (g, penalty, cost) = self.hyper_gradient(t, lambda, tau, &relaxed, &ag.grads)?;
        self.apply(&g)?;
        Ok(ArchStepStats {
            loss: ag.loss,
            accuracy: ag.accuracy,
            penalty,
            expected_cost: cost,
        })
    }

    fn family_label(t: f64) -> String {
        format!("t={t}")
    }
}

fn trainer(env: &mut dyn SearchEnv) -> Result<&mut dyn nas_core::SupernetTrainer> {
    env.trainer()
        .ok_or_else(|| NasError::Strategy("darts_cc needs a supernet trainer".into()))
}

impl SearchStrategy for DartsCc {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        let mut rng = nas_core::component_rng(seed, "strategy.darts_cc.init");
        self.hyper = Some(Hypernets::init(
            spec,
            self.v.anchors,
            self.v.p.init_bound,
            &mut rng,
        )?);
        self.costs = option_costs(spec, self.v.cost);
        self.rng = nas_core::component_rng(seed, "strategy.darts_cc.sample");
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (epoch, _) = env.epoch();
        let tau = self.temperature(epoch);
        // One lambda per mini-batch, shared by its architecture and weight steps.
        let (lambda, t) = self.v.range.sample(&mut self.rng);
        let mut metrics = Metrics::new();
        metrics.insert("lambda".into(), lambda);
        metrics.insert("t".into(), t);
        metrics.insert("tau".into(), tau);
        if epoch >= self.v.p.warmup_epochs {
            let s = self.arch_step(env, t, lambda, tau)?;
            metrics.insert("arch_loss".into(), s.loss);
            metrics.insert("arch_acc".into(), s.accuracy);
            metrics.insert("penalty".into(), s.penalty);
            metrics.insert("expected_cost".into(), s.expected_cost);
            self.sums.arch_n += 1;
            self.sums.arch_loss += s.loss;
            self.sums.arch_acc += s.accuracy;
            self.sums.penalty += s.penalty;
        }
        let n = trainer(env)?.batch_size();
        let drive = self.relax(t, tau, n)?.drive(t);
        let st = trainer(env)?.train_weights(&drive)?;
        metrics.insert("train_loss".into(), st.loss);
        metrics.insert("train_acc".into(), st.accuracy);
        metrics.insert("lr".into(), st.lr);
        metrics.insert("grad_norm".into(), st.grad_norm);
        self.sums.n += 1;
        self.sums.train_loss += st.loss;
        self.sums.train_acc += st.accuracy;
        self.steps += 1;
        Ok(StepReport {
            metrics,
            finished: false,
        })
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let (epoch, _) = env.epoch();
        let tau = self.temperature(epoch);
        let mut m = Metrics::new();
        let n = self.sums.n.max(1) as f64;
        m.insert("train_loss".into(), self.sums.train_loss / n);
        m.insert("train_acc".into(), self.sums.train_acc / n);
        if self.sums.arch_n > 0 {
            let a = self.sums.arch_n as f64;
            m.insert("arch_loss".into(), self.sums.arch_loss / a);
            m.insert("arch_acc".into(), self.sums.arch_acc / a);
            m.insert("penalty".into(), self.sums.penalty / a);
        }
        m.insert("tau".into(), tau);
        let family_t = self.v.p.family_t.clone();
        let mut current = None;
        self.last_valid.clear();
        for (i, &t) in family_t.iter().enumerate() {
            let arch = env.derive(&self.weights_at(t)?, &self.v.p.derive_mode)?;
            let cost = env.cost(&arch)?;
            m.insert(format!("params_t{t}"), cost.params);
            // The supernet under the deterministic relaxation softmax(alpha(t) / tau).
            let logits = self.hypernets()?.logits(t)?;
            let w: Vec<Vec<f64>> = logits.iter().map(|l| softmax_t(l, tau)).collect();
            let drive = Relaxed::Shared(w).drive(t);
            let ev = trainer(env)?.evaluate(&drive, Split::Valid, self.v.p.eval_batches)?;
            m.insert(format!("valid_acc_t{t}"), ev.accuracy);
            self.last_valid.push((t, ev.accuracy));
            if i == 0 {
                m.insert("valid_loss".into(), ev.loss);
                m.insert("valid_acc".into(), ev.accuracy);
                current = Some(arch);
            }
        }
        self.sums = Sums::default();
        Ok(EpochReport {
            metrics: m,
            current,
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let mut architectures = Vec::new();
        for &t in &self.v.p.family_t {
            let arch = env.derive(&self.weights_at(t)?, &self.v.p.derive_mode)?;
            let mut metrics = Metrics::new();
            metrics.insert("t".into(), t);
            metrics.insert("lambda".into(), self.v.range.lambda_of(t));
            if let Some((_, acc)) = self.last_valid.iter().find(|(u, _)| *u == t) {
                metrics.insert("supernet_valid_acc".into(), *acc);
            }
            architectures.push(FoundArchitecture {
                label: Self::family_label(t),
                arch,
                metrics,
            });
        }
        Ok(SearchOutcome { architectures })
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        self.weights_at(self.v.p.family_t[0]).ok()
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        let h = self.hypernets()?.clone();
        serde_json::to_value(State {
            log_lambda_min: self.v.range.log_min,
            log_lambda_max: self.v.range.log_max,
            hypernets: h,
            optimizer: self.opt.save_state(),
            rng: RngState {
                seed: self.rng.get_seed(),
                word_pos: self.rng.get_word_pos().to_string(),
            },
            steps: self.steps,
            epoch_sums: self.sums.clone(),
        })
        .map_err(|e| NasError::Other(format!("saving darts_cc state: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("darts_cc state does not decode: {e}")))?;
        ensure(
            s.log_lambda_min == self.v.range.log_min && s.log_lambda_max == self.v.range.log_max,
            "strategy darts_cc",
            "log_lambda_min",
            "the saved state has another lambda range",
        )?;
        self.set_hypernets(s.hypernets)?;
        self.opt.load_state(&s.optimizer)?;
        let pos: u128 = s.rng.word_pos.parse().map_err(|e| {
            NasError::Strategy(format!("saved RNG word position `{}`: {e}", s.rng.word_pos))
        })?;
        self.rng = <ChaCha8Rng as rand::SeedableRng>::from_seed(s.rng.seed);
        self.rng.set_word_pos(pos);
        self.steps = s.steps;
        self.sums = s.epoch_sums;
        Ok(())
    }
}
