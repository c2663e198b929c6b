//! The DARTS strategy.
use nas_core::math::{softmax, softmax_backward};
use nas_core::params::ensure;
use nas_core::{
    decode_params, ComponentInfo, ComponentKind, Drive, EpochReport, GradOrder, Metrics,
    MixingWeights, NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome, SearchStrategy,
    SpaceSpec, Split, StepReport,
};
use nas_optim::{build_optimizer, Optimizer};
use serde::{Deserialize, Serialize};

use crate::params::DartsParams;

/// Registry information.
pub fn infos() -> Vec<ComponentInfo> {
    vec![ComponentInfo {
        kind: ComponentKind::Strategy,
        name: "darts".into(),
        summary: "DARTS (Liu et al. 2019): softmax-relaxed alphas, first or second order".into(),
        defaults: serde_json::to_value(DartsParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("order", "first | second (unrolled, finite-difference Hessian; eq. 7-8 of the paper)"),
            ParamDoc::new("xi", "virtual step of the second order; null = current weight lr (reference code)"),
            ParamDoc::new("init_scale", "alphas start as init_scale * N(0,1) (reference: 1e-3)"),
            ParamDoc::new("arch_optimizer", "optimizer of the alphas (reference: Adam lr 3e-4, betas 0.5/0.999, wd 1e-3); optimizers.arch overrides it"),
            ParamDoc::new("eval_batches", "validation batches evaluated at each epoch end (null = all)"),
            ParamDoc::new("warmup_epochs", "epochs of weight-only training before arch steps (0 in DARTS)"),
            ParamDoc::new("cost", "{metric: latency|flops|params, form: add|mul_log, weight, target, a, b}: expected-cost term on softmax(alpha); null = none (the paper)"),
        ],
        origin: "built-in".into(),
    }]
}

/// Builds a strategy by name (only `darts`).
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    match name {
        "darts" => Ok(Box::new(Darts::new(params)?)),
        other => Err(NasError::UnknownComponent {
            kind: "strategy".into(),
            name: other.into(),
            known: "darts".into(),
        }),
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    alphas: Vec<Vec<f64>>,
    optimizer: serde_json::Value,
    steps: u64,
    epoch_sums: Sums,
    /// The last epoch's validation accuracy (reported by `outcome`); absent in states
    /// written before it was saved.
    #[serde(default)]
    last_valid_acc: Option<f64>,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Sums {
    n: usize,
    train_loss: f64,
    train_acc: f64,
    arch_loss: f64,
    arch_acc: f64,
}

/// DARTS: alphas, their optimizer, and the search loop.
pub struct Darts {
    p: DartsParams,
    order: GradOrder,
    alphas: Vec<Vec<f64>>,
    opt: Box<dyn Optimizer>,
    steps: u64,
    sums: Sums,
    last_valid_acc: Option<f64>,
    /// Per-option costs of the cost term (set by `init`).
    costs: Option<Vec<Vec<f64>>>,
}

impl Darts {
    /// A DARTS strategy from its params.
    pub fn new(params: &serde_json::Value) -> Result<Self> {
        let p: DartsParams = decode_params("strategy darts", params)?;
        let c = "strategy darts";
        let order = p.order.grad_order(p.xi);
        ensure(p.init_scale >= 0.0, c, "init_scale", "must be >= 0")?;
        if let Some(xi) = p.xi {
            ensure(xi >= 0.0, c, "xi", "must be >= 0")?;
        }
        if let Some(t) = &p.cost {
            t.check(c)?;
        }
        let opt = build_optimizer(&p.arch_optimizer.name, &p.arch_optimizer.params)?;
        Ok(Darts {
            p,
            order,
            alphas: vec![],
            opt,
            steps: 0,
            sums: Sums::default(),
            last_valid_acc: None,
            costs: None,
        })
    }

    /// The current alphas (logits).
    pub fn alphas(&self) -> &[Vec<f64>] {
        &self.alphas
    }

    /// Replaces the alphas (tests, warm starts).
    pub fn set_alphas(&mut self, a: Vec<Vec<f64>>) {
        self.alphas = a;
    }

    /// `softmax(alpha)` per decision.
    pub fn weights(&self) -> MixingWeights {
        MixingWeights(
            self.alphas
                .iter()
                .map(|a| softmax(a).into_iter().map(|v| v as f32).collect())
                .collect(),
        )
    }

    /// `dL/d alpha` from `dL/d weights` (the softmax chain rule per decision).
    pub fn alpha_gradient(&self, dweights: &MixingWeights) -> Vec<Vec<f64>> {
        self.alphas
            .iter()
            .zip(&dweights.0)
            .map(|(a, g)| {
                let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                softmax_backward(&softmax(a), &g)
            })
            .collect()
    }

    /// One architecture step: gradient from the trainer, chain rule, optimizer step.
    /// Returns the validation loss and accuracy of the batch.
    pub fn arch_step(&mut self, env: &mut dyn SearchEnv) -> Result<(f64, f64)> {
        let drive = Drive::mixed(self.weights());
        let trainer = env
            .trainer()
            .ok_or_else(|| NasError::Strategy("darts needs a supernet trainer".into()))?;
        let ag = trainer.arch_gradient(&drive, self.order)?;
        let (g, loss) = match (&self.p.cost, &self.costs) {
            (Some(term), Some(costs)) => self.cost_gradient(term, costs, ag.loss, &ag.grads[0])?,
            _ => (self.alpha_gradient(&ag.grads[0]), ag.loss),
        };
        let mut a: Vec<&mut [f64]> = self.alphas.iter_mut().map(|v| v.as_mut_slice()).collect();
        let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
        let lr = self.opt.base_lr();
        self.opt.step(&mut a, &gr, lr)?;
        Ok((loss, ag.accuracy))
    }

    /// `dL/dalpha` and `L` of the loss with the cost term: `L = combine(CE, C(p))`,
    /// `dL/dp = dL/dCE * dCE/dp + dL/dC * c`, then the softmax chain rule.
    pub fn cost_gradient(
        &self,
        term: &nas_core::cost_term::CostTerm,
        costs: &[Vec<f64>],
        ce: f64,
        dce: &MixingWeights,
    ) -> Result<(Vec<Vec<f64>>, f64)> {
        let p: Vec<Vec<f64>> = self.alphas.iter().map(|a| softmax(a)).collect();
        let comb = term.combine(ce, nas_core::cost_term::expected_cost(&p, costs))?;
        let g = p
            .iter()
            .zip(&dce.0)
            .zip(costs)
            .map(|((p, g), c)| {
                let dp: Vec<f64> = g
                    .iter()
                    .zip(c)
                    .map(|(&g, c)| comb.d_ce * g as f64 + comb.d_cost * c)
                    .collect();
                softmax_backward(p, &dp)
            })
            .collect();
        Ok((g, comb.loss))
    }
}

fn count_op(spec: &SpaceSpec, arch: &nas_core::Architecture, group: &str, op: &str) -> usize {
    spec.decisions
        .iter()
        .zip(&arch.choices)
        .filter(|(d, &c)| d.group == group && d.options[c].name == op)
        .count()
}

impl SearchStrategy for Darts {
    fn name(&self) -> &str {
        "darts"
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        self.alphas =
            nas_core::rng::normal_logits(spec, self.p.init_scale, seed, "strategy.darts.alphas");
        self.costs = match &self.p.cost {
            Some(t) => Some(t.option_costs(spec)?),
            None => None,
        };
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (epoch, _) = env.epoch();
        let mut metrics = Metrics::new();
        if epoch >= self.p.warmup_epochs {
            let (l, a) = self.arch_step(env)?;
            metrics.insert("arch_loss".into(), l);
            metrics.insert("arch_acc".into(), a);
            self.sums.arch_loss += l;
            self.sums.arch_acc += a;
        }
        let drive = Drive::mixed(self.weights());
        let trainer = env
            .trainer()
            .ok_or_else(|| NasError::Strategy("darts needs a supernet trainer".into()))?;
        let st = trainer.train_weights(&drive)?;
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
        let spec = env.spec().clone();
        let mut m = Metrics::new();
        let n = self.sums.n.max(1) as f64;
        m.insert("train_loss".into(), self.sums.train_loss / n);
        m.insert("train_acc".into(), self.sums.train_acc / n);
        if self.sums.arch_loss != 0.0 {
            m.insert("arch_loss".into(), self.sums.arch_loss / n);
            m.insert("arch_acc".into(), self.sums.arch_acc / n);
        }
        let trainer = env
            .trainer()
            .ok_or_else(|| NasError::Strategy("darts needs a supernet trainer".into()))?;
        let ev = trainer.evaluate(&Drive::mixed(w), Split::Valid, self.p.eval_batches)?;
        m.insert("valid_loss".into(), ev.loss);
        m.insert("valid_acc".into(), ev.accuracy);
        self.last_valid_acc = Some(ev.accuracy);
        m.insert(
            "skip_connects_normal".into(),
            count_op(&spec, &arch, "normal", "skip_connect") as f64,
        );
        m.insert(
            "skip_connects_reduce".into(),
            count_op(&spec, &arch, "reduce", "skip_connect") as f64,
        );
        self.sums = Sums::default();
        Ok(EpochReport {
            metrics: m,
            current: Some(arch),
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let arch = env.derive(&self.weights(), "default")?;
        Ok(SearchOutcome::best(arch, self.last_valid_acc))
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        Some(self.weights())
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(State {
            alphas: self.alphas.clone(),
            optimizer: self.opt.save_state(),
            steps: self.steps,
            epoch_sums: self.sums.clone(),
            last_valid_acc: self.last_valid_acc,
        })
        .map_err(|e| NasError::Other(format!("saving darts state: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("darts state does not decode: {e}")))?;
        if !self.alphas.is_empty()
            && (s.alphas.len() != self.alphas.len()
                || s.alphas
                    .iter()
                    .zip(&self.alphas)
                    .any(|(a, b)| a.len() != b.len()))
        {
            return Err(NasError::Strategy(
                "the saved alphas do not fit this space (a checkpoint of another config?)".into(),
            ));
        }
        self.alphas = s.alphas;
        self.opt.load_state(&s.optimizer)?;
        self.steps = s.steps;
        self.sums = s.epoch_sums;
        self.last_valid_acc = s.last_valid_acc;
        Ok(())
    }
}
