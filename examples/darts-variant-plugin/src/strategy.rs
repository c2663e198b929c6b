//! The tempered DARTS strategy: DARTS' search loop with mixing weights
//! `softmax(alpha / tau)` and a temperature `tau` annealed over the epochs.
use nas_core::math::{softmax, softmax_backward};
use nas_core::{
    Drive, EpochReport, FoundArchitecture, GradOrder, Metrics, MixingWeights, NasError, Needs,
    Result, SearchEnv, SearchOutcome, SearchStrategy, SpaceSpec, Split, StepReport,
};
use nas_optim::{build_optimizer, Optimizer};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::params::TemperedParams;

/// Registered name.
pub const NAME: &str = "tempered_darts";

/// Sums over an epoch's steps, for the epoch means.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Sums {
    n: usize,
    train_loss: f64,
    train_acc: f64,
    arch_loss: f64,
    arch_acc: f64,
}

/// Everything needed to resume.
#[derive(Serialize, Deserialize)]
struct State {
    alphas: Vec<Vec<f64>>,
    tau: f64,
    optimizer: serde_json::Value,
    steps: u64,
    sums: Sums,
}

/// DARTS with a temperature: the alphas, their optimizer and the search loop.
pub struct TemperedDarts {
    p: TemperedParams,
    order: GradOrder,
    alphas: Vec<Vec<f64>>,
    /// The temperature in use (that of the current epoch).
    tau: f64,
    opt: Box<dyn Optimizer>,
    steps: u64,
    sums: Sums,
    last_valid_acc: Option<f64>,
}

fn no_trainer() -> NasError {
    NasError::Strategy(format!("{NAME} needs a supernet trainer"))
}

impl TemperedDarts {
    /// A strategy from checked params.
    pub fn new(p: TemperedParams) -> Result<Self> {
        let opt = build_optimizer(&p.arch_optimizer.name, &p.arch_optimizer.params)?;
        Ok(TemperedDarts {
            order: p.order()?,
            tau: p.tau_start,
            alphas: vec![],
            opt,
            steps: 0,
            sums: Sums::default(),
            last_valid_acc: None,
            p,
        })
    }

    /// The plugin's factory: decodes the params block and makes a strategy.
    pub fn factory(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
        Ok(Box::new(TemperedDarts::new(TemperedParams::from_json(
            params,
        )?)?))
    }

    /// The alphas (logits).
    pub fn alphas(&self) -> &[Vec<f64>] {
        &self.alphas
    }

    /// Replaces the alphas (tests, warm starts).
    pub fn set_alphas(&mut self, alphas: Vec<Vec<f64>>) {
        self.alphas = alphas;
    }

    /// The temperature in use.
    pub fn tau(&self) -> f64 {
        self.tau
    }

    /// Sets the temperature (tests; the search sets it from the epoch).
    pub fn set_tau(&mut self, tau: f64) {
        self.tau = tau;
    }

    /// `softmax(alpha / tau)` of one decision, in f64.
    fn probs(&self, a: &[f64]) -> Vec<f64> {
        let scaled: Vec<f64> = a.iter().map(|v| v / self.tau).collect();
        softmax(&scaled)
    }

    /// The mixing weights `softmax(alpha / tau)` per decision.
    pub fn weights(&self) -> MixingWeights {
        MixingWeights(
            self.alphas
                .iter()
                .map(|a| self.probs(a).into_iter().map(|v| v as f32).collect())
                .collect(),
        )
    }

    /// `dL/d alpha` from `dL/d weights`: with `p = softmax(alpha / tau)`,
    /// `dL/d alpha_k = p_k (g_k - sum_j p_j g_j) / tau`.
    pub fn alpha_gradient(&self, dweights: &MixingWeights) -> Vec<Vec<f64>> {
        self.alphas
            .iter()
            .zip(&dweights.0)
            .map(|(a, g)| {
                let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                softmax_backward(&self.probs(a), &g)
                    .into_iter()
                    .map(|d| d / self.tau)
                    .collect()
            })
            .collect()
    }

    /// One architecture step: gradient from the trainer, chain rule, optimizer step.
    /// Returns the validation loss and accuracy of the batch and the L2 norm of
    /// `dL/d alpha`.
    pub fn arch_step(&mut self, env: &mut dyn SearchEnv) -> Result<(f64, f64, f64)> {
        let drive = Drive::mixed(self.weights());
        let ag = env
            .trainer()
            .ok_or_else(no_trainer)?
            .arch_gradient(&drive, self.order)?;
        let dweights = ag.grads.first().ok_or_else(|| {
            NasError::Strategy(format!("{NAME}: the trainer returned no gradient"))
        })?;
        let g = self.alpha_gradient(dweights);
        let norm = g.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let mut a: Vec<&mut [f64]> = self.alphas.iter_mut().map(|v| v.as_mut_slice()).collect();
        let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
        let lr = self.opt.base_lr();
        self.opt.step(&mut a, &gr, lr)?;
        Ok((ag.loss, ag.accuracy, norm))
    }
}

impl SearchStrategy for TemperedDarts {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        // The same stream and draws as the built-in `darts`, so that with tau = 1 the two
        // searches are the same search (a test checks it number for number).
        let mut rng = nas_core::component_rng(seed, "strategy.darts.alphas");
        self.alphas = spec
            .shape()
            .into_iter()
            .map(|n| {
                (0..n)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        self.p.init_scale * z
                    })
                    .collect()
            })
            .collect();
        self.tau = self.p.tau_start;
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (epoch, total) = env.epoch();
        self.tau = self.p.tau(epoch, total);
        let mut metrics = Metrics::new();
        let (l, a, norm) = self.arch_step(env)?;
        metrics.insert("arch_loss".into(), l);
        metrics.insert("arch_acc".into(), a);
        metrics.insert("arch_grad_norm".into(), norm);
        metrics.insert("tau".into(), self.tau);
        self.sums.arch_loss += l;
        self.sums.arch_acc += a;
        let st = env
            .trainer()
            .ok_or_else(no_trainer)?
            .train_weights(&Drive::mixed(self.weights()))?;
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
        let w = self.weights();
        let arch = env.derive(&w, "default")?;
        let mut m = Metrics::new();
        let n = self.sums.n.max(1) as f64;
        m.insert("train_loss".into(), self.sums.train_loss / n);
        m.insert("train_acc".into(), self.sums.train_acc / n);
        m.insert("arch_loss".into(), self.sums.arch_loss / n);
        m.insert("arch_acc".into(), self.sums.arch_acc / n);
        m.insert("tau".into(), self.tau);
        let ev = env.trainer().ok_or_else(no_trainer)?.evaluate(
            &Drive::mixed(w),
            Split::Valid,
            self.p.eval_batches,
        )?;
        m.insert("valid_loss".into(), ev.loss);
        m.insert("valid_acc".into(), ev.accuracy);
        self.last_valid_acc = Some(ev.accuracy);
        self.sums = Sums::default();
        Ok(EpochReport {
            metrics: m,
            current: Some(arch),
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let arch = env.derive(&self.weights(), "default")?;
        let mut metrics = Metrics::new();
        if let Some(a) = self.last_valid_acc {
            metrics.insert("supernet_valid_acc".into(), a);
        }
        metrics.insert("tau".into(), self.tau);
        Ok(SearchOutcome {
            architectures: vec![FoundArchitecture {
                label: "best".into(),
                arch,
                metrics,
            }],
        })
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        Some(self.weights())
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(State {
            alphas: self.alphas.clone(),
            tau: self.tau,
            optimizer: self.opt.save_state(),
            steps: self.steps,
            sums: self.sums.clone(),
        })
        .map_err(|e| NasError::Strategy(format!("{NAME}: saving state: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("{NAME}: state does not decode: {e}")))?;
        if !self.alphas.is_empty()
            && (s.alphas.len() != self.alphas.len()
                || s.alphas
                    .iter()
                    .zip(&self.alphas)
                    .any(|(a, b)| a.len() != b.len()))
        {
            return Err(NasError::Strategy(format!(
                "{NAME}: the saved alphas do not fit this space"
            )));
        }
        self.opt.load_state(&s.optimizer)?;
        self.alphas = s.alphas;
        self.tau = s.tau;
        self.steps = s.steps;
        self.sums = s.sums;
        Ok(())
    }
}
