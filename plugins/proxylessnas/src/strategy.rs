//! The `proxylessnas` strategy: alphas, binary gates, the search loop.
use nas_core::math::softmax;
use nas_core::params::ensure;
use nas_core::{
    decode_params, Architecture, ComponentInfo, ComponentKind, Drive, EpochReport, GradOrder,
    Metrics, MixingWeights, NasError, Needs, ParamDoc, Result, SearchEnv, SearchOutcome,
    SearchStrategy, SpaceSpec, Split, StepReport,
};
use nas_optim::{build_optimizer, Optimizer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cost::CostTable;
use crate::estimator::{binary_connect_grad, rescale, sample_categorical, sample_two, Involved};
use crate::params::{cost_defaults, CostProbs, ProxylessParams};
use nas_core::cost_term::{Combined, CostForm, CostTerm};

/// Registered name.
pub const NAME: &str = "proxylessnas";
const C: &str = "strategy proxylessnas";

/// Option names that denote an operation whose output is zero (`zero` in the ProxylessNAS
/// space, `none` in the DARTS and NAS-Bench-201 cells). When one is the active path, the
/// decision gets no update (reference `set_arch_param_grad`: `if
/// self.active_op.is_zero_layer(): self.AP_path_alpha.grad = None`).
pub const ZERO_OPS: [&str; 2] = ["zero", "none"];

/// Registry information.
pub fn infos() -> Vec<ComponentInfo> {
    vec![ComponentInfo {
        kind: ComponentKind::Strategy,
        name: NAME.into(),
        summary: "ProxylessNAS (Cai et al. 2019): binary gates, two sampled paths per update, BinaryConnect gradient, latency loss".into(),
        defaults: serde_json::to_value(ProxylessParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("init_scale", "alphas start as init_scale * N(0,1) (reference: 1e-3)"),
            ParamDoc::new("arch_optimizer", "optimizer of the alphas (reference: Adam lr 1e-3, betas 0/0.999, eps 1e-8); optimizers.arch overrides it"),
            ParamDoc::new("warmup_epochs", "epochs of weight-only training before architecture updates (reference: 40)"),
            ParamDoc::new("arch_every", "an architecture update after every n weight steps (reference: 5)"),
            ParamDoc::new("arch_steps", "architecture updates each time (reference: 1)"),
            ParamDoc::new("cost", "the shared cost block (docs/gumbel.md), null = CE alone; ProxylessNAS defaults: {metric: latency, form: mul_log, a: 0.2, b: 0.3, weight: 0.1, fixed: true}"),
            ParamDoc::new("cost.form", "mul_log (reference mul#log: CE*a*(ln E/ln target)^b) | add (add#linear: CE + weight*(E/target - 1))"),
            ParamDoc::new("cost.metric", "latency (needs the space's latency table) | flops | params"),
            ParamDoc::new("cost.target", "the reference value in the metric's unit; null = expected value under uniform probabilities"),
            ParamDoc::new("cost.scale", "E and the target are multiplied by it before mul_log's logarithms (both must exceed 1)"),
            ParamDoc::new("cost_probs", "sampled (the two sampled options renormalised, reference) | full (softmax over all options, paper eq. 5)"),
            ParamDoc::new("eval_batches", "validation batches scoring the derived path at each epoch end (null = all)"),
        ],
        origin: "built-in".into(),
    }]
}

/// Builds a strategy by name (only `proxylessnas`).
pub fn build(name: &str, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    match name {
        NAME => Ok(Box::new(ProxylessNas::new(params)?)),
        other => Err(NasError::UnknownComponent {
            kind: "strategy".into(),
            name: other.into(),
            known: NAME.into(),
        }),
    }
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Sums {
    n: usize,
    train_loss: f64,
    train_acc: f64,
    arch_n: usize,
    arch_loss: f64,
    arch_ce: f64,
    arch_acc: f64,
    expected: f64,
}

#[derive(Serialize, Deserialize)]
struct RngState {
    seed: [u8; 32],
    stream: u64,
    word_pos: String,
}

#[derive(Serialize, Deserialize)]
struct State {
    alphas: Vec<Vec<f64>>,
    optimizer: serde_json::Value,
    rng: RngState,
    steps: u64,
    sums: Sums,
    last_valid_acc: Option<f64>,
}

/// What one architecture update reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchStep {
    /// The loss the alphas descend (cross-entropy with the cost term).
    pub loss: f64,
    /// The validation cross-entropy from the trainer.
    pub ce: f64,
    /// The validation accuracy of the batch.
    pub accuracy: f64,
    /// The expected cost the loss used (`None` without a cost term).
    pub expected: Option<f64>,
    /// The options each decision involved.
    pub involved: Vec<Involved>,
    /// `dLoss/dalpha` as applied.
    pub grad: Vec<Vec<f64>>,
}

/// ProxylessNAS with binary gates and the `two` path-level estimate.
pub struct ProxylessNas {
    p: ProxylessParams,
    /// The cost term with its target resolved (set by `init`).
    term: Option<CostTerm>,
    alphas: Vec<Vec<f64>>,
    zero_ops: Vec<Vec<bool>>,
    space: String,
    table: Option<CostTable>,
    reference: f64,
    opt: Box<dyn Optimizer>,
    rng: ChaCha8Rng,
    steps: u64,
    sums: Sums,
    last_valid_acc: Option<f64>,
}

fn no_trainer() -> NasError {
    NasError::Strategy("proxylessnas needs a supernet trainer".into())
}

impl ProxylessNas {
    /// A strategy from its params (checked here; the cost table is read at `init`).
    pub fn new(params: &serde_json::Value) -> Result<Self> {
        let p: ProxylessParams = decode_params(C, &with_cost_defaults(params))?;
        ensure(p.init_scale >= 0.0, C, "init_scale", "must be >= 0")?;
        ensure(p.arch_every >= 1, C, "arch_every", "must be at least 1")?;
        if let Some(c) = &p.cost {
            c.check(C)?;
        }
        let opt = build_optimizer(&p.arch_optimizer.name, &p.arch_optimizer.params)?;
        Ok(ProxylessNas {
            p,
            term: None,
            alphas: vec![],
            zero_ops: vec![],
            space: String::new(),
            table: None,
            reference: 1.0,
            opt,
            rng: ChaCha8Rng::seed_from_u64(0),
            steps: 0,
            sums: Sums::default(),
            last_valid_acc: None,
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

    /// The reference value of the cost term (after `init`).
    pub fn reference(&self) -> f64 {
        self.reference
    }

    /// `softmax(alpha)` per decision.
    pub fn probs(&self) -> MixingWeights {
        MixingWeights(
            self.alphas
                .iter()
                .map(|a| softmax(a).into_iter().map(|v| v as f32).collect())
                .collect(),
        )
    }

    /// One path drawn from `softmax(alpha)` per decision (the weight step; reference
    /// `binarize` with no mode).
    pub fn sample_path(&mut self) -> Architecture {
        let choices = self
            .alphas
            .iter()
            .map(|a| sample_categorical(&softmax(a), &mut self.rng))
            .collect();
        Architecture::new(self.space.clone(), choices)
    }

    /// The loss and its partial derivatives at cross-entropy `ce`, with the expected cost
    /// over the options `idx` and `dE/dalpha` (zeros without a cost term).
    pub fn loss_parts(
        &self,
        ce: f64,
        idx: &[Vec<usize>],
    ) -> Result<(Combined, Option<f64>, Vec<Vec<f64>>)> {
        match (&self.table, &self.term) {
            (Some(t), Some(term)) => {
                let (e, de) = t.expected(&self.alphas, idx);
                Ok((term.combine(ce, e)?, Some(e), de))
            }
            _ => Ok((
                Combined {
                    loss: ce,
                    d_ce: 1.0,
                    d_cost: 0.0,
                },
                None,
                self.alphas.iter().map(|a| vec![0.0; a.len()]).collect(),
            )),
        }
    }

    /// One architecture update (reference `gradient_step` in the `two` mode): two options
    /// per decision, binary gates on them, `dCE/dgates` from the trainer, the
    /// BinaryConnect estimate plus the exact cost gradient, an optimizer step, and the
    /// rescaling that keeps the unsampled options' probabilities.
    pub fn arch_step(&mut self, env: &mut dyn SearchEnv) -> Result<ArchStep> {
        let involved: Vec<Involved> = self
            .alphas
            .iter()
            .map(|a| sample_two(a, &mut self.rng))
            .collect();
        let gates = MixingWeights(
            self.alphas
                .iter()
                .zip(&involved)
                .map(|(a, inv)| {
                    let mut g = vec![0.0f32; a.len()];
                    g[inv.active] = 1.0;
                    g
                })
                .collect(),
        );
        let active: Vec<Vec<usize>> = involved.iter().map(Involved::sorted).collect();
        let t = env.trainer().ok_or_else(no_trainer)?;
        let ag = t.arch_gradient(&Drive::gated(gates, active), GradOrder::First)?;
        let dce = ag
            .grads
            .first()
            .ok_or_else(|| NasError::Strategy("the trainer returned no gate gradient".into()))?;
        let idx: Vec<Vec<usize>> = if self.p.cost_probs == CostProbs::Full {
            self.alphas.iter().map(|a| (0..a.len()).collect()).collect()
        } else {
            involved.iter().map(Involved::indices).collect()
        };
        let (parts, expected, de) = self.loss_parts(ag.loss, &idx)?;
        let mut grad = Vec::with_capacity(self.alphas.len());
        for (d, inv) in involved.iter().enumerate() {
            let a = &self.alphas[d];
            if self.zero_ops[d][inv.active] {
                grad.push(vec![0.0; a.len()]);
                continue;
            }
            let dg: Vec<f64> = dce.0[d].iter().map(|&v| parts.d_ce * v as f64).collect();
            let mut g = binary_connect_grad(a, &inv.indices(), &dg);
            for (gi, di) in g.iter_mut().zip(&de[d]) {
                *gi += parts.d_cost * di;
            }
            grad.push(g);
        }
        let old = self.alphas.clone();
        {
            let mut a: Vec<&mut [f64]> = self.alphas.iter_mut().map(|v| v.as_mut_slice()).collect();
            let gr: Vec<&[f64]> = grad.iter().map(|v| v.as_slice()).collect();
            let lr = self.opt.base_lr();
            self.opt.step(&mut a, &gr, lr)?;
        }
        for (d, inv) in involved.iter().enumerate() {
            if !self.zero_ops[d][inv.active] {
                rescale(&mut self.alphas[d], &old[d], &inv.indices());
            }
        }
        Ok(ArchStep {
            loss: parts.loss,
            ce: ag.loss,
            accuracy: ag.accuracy,
            expected,
            involved,
            grad,
        })
    }

    fn derive(&self, env: &dyn SearchEnv) -> Result<Architecture> {
        env.derive(&self.probs(), "default")
    }
}

impl SearchStrategy for ProxylessNas {
    fn name(&self) -> &str {
        NAME
    }

    fn needs(&self) -> Needs {
        Needs::Trainer
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        self.alphas = nas_core::rng::normal_logits(
            spec,
            self.p.init_scale,
            seed,
            "strategy.proxylessnas.alphas",
        );
        self.rng = nas_core::component_rng(seed, "strategy.proxylessnas.paths");
        self.space = spec.space.clone();
        self.zero_ops = spec
            .decisions
            .iter()
            .map(|d| {
                d.options
                    .iter()
                    .map(|o| ZERO_OPS.contains(&o.name.as_str()))
                    .collect()
            })
            .collect();
        let Some(user) = self.p.cost.clone() else {
            return Ok(());
        };
        let table = CostTable::from_term(&user, spec)?;
        let reference = user.target.unwrap_or_else(|| table.uniform_total());
        ensure(
            reference > 0.0,
            C,
            "cost.target",
            format!("the reference value is {reference}; it must be > 0"),
        )?;
        if user.form == CostForm::MulLog {
            let s = user.scale;
            let (lo, r) = (s * table.min_total(), s * reference);
            ensure(
                lo > 1.0 && r > 1.0,
                C,
                "cost.scale",
                format!(
                    "mul_log takes ln(E)/ln(target) and needs both above 1; with scale {s} the \
                     smallest expected {:?} is {lo:.4} and the target is {r:.4}: raise \
                     cost.scale (e.g. 1000 for microseconds)",
                    user.metric
                ),
            )?;
        }
        self.reference = reference;
        self.term = Some(CostTerm {
            target: Some(reference),
            ..user
        });
        self.table = Some(table);
        Ok(())
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let (epoch, _) = env.epoch();
        let mut m = Metrics::new();
        let path = self.sample_path();
        let st = env
            .trainer()
            .ok_or_else(no_trainer)?
            .train_weights(&Drive::path(path))?;
        m.insert("train_loss".into(), st.loss);
        m.insert("train_acc".into(), st.accuracy);
        m.insert("lr".into(), st.lr);
        m.insert("grad_norm".into(), st.grad_norm);
        self.sums.n += 1;
        self.sums.train_loss += st.loss;
        self.sums.train_acc += st.accuracy;
        self.steps += 1;
        if epoch >= self.p.warmup_epochs && self.steps.is_multiple_of(self.p.arch_every as u64) {
            for _ in 0..self.p.arch_steps {
                let a = self.arch_step(env)?;
                m.insert("arch_loss".into(), a.loss);
                m.insert("arch_ce".into(), a.ce);
                m.insert("arch_acc".into(), a.accuracy);
                self.sums.arch_n += 1;
                self.sums.arch_loss += a.loss;
                self.sums.arch_ce += a.ce;
                self.sums.arch_acc += a.accuracy;
                if let Some(e) = a.expected {
                    m.insert("expected_cost".into(), e);
                    self.sums.expected += e;
                }
            }
        }
        Ok(StepReport {
            metrics: m,
            finished: false,
        })
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let arch = self.derive(env)?;
        let mut m = Metrics::new();
        let s = std::mem::take(&mut self.sums);
        let n = s.n.max(1) as f64;
        m.insert("train_loss".into(), s.train_loss / n);
        m.insert("train_acc".into(), s.train_acc / n);
        if s.arch_n > 0 {
            let k = s.arch_n as f64;
            m.insert("arch_loss".into(), s.arch_loss / k);
            m.insert("arch_ce".into(), s.arch_ce / k);
            m.insert("arch_acc".into(), s.arch_acc / k);
            m.insert("arch_updates".into(), k);
            if self.table.is_some() {
                m.insert("expected_cost".into(), s.expected / k);
            }
        }
        if let Some(t) = &self.table {
            let all: Vec<Vec<usize>> = self.alphas.iter().map(|a| (0..a.len()).collect()).collect();
            m.insert(
                "expected_cost_full".into(),
                t.expected(&self.alphas, &all).0,
            );
        }
        let cost = env.cost(&arch)?;
        m.insert("derived_params".into(), cost.params);
        m.insert("derived_flops".into(), cost.flops);
        if let Some(l) = cost.latency_ms {
            m.insert("derived_latency_ms".into(), l);
        }
        let ev = env.trainer().ok_or_else(no_trainer)?.evaluate(
            &Drive::path(arch.clone()),
            Split::Valid,
            self.p.eval_batches,
        )?;
        m.insert("valid_loss".into(), ev.loss);
        m.insert("valid_acc".into(), ev.accuracy);
        self.last_valid_acc = Some(ev.accuracy);
        Ok(EpochReport {
            metrics: m,
            current: Some(arch),
        })
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let arch = self.derive(env)?;
        Ok(SearchOutcome::best(arch, self.last_valid_acc))
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        Some(self.probs())
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        serde_json::to_value(State {
            alphas: self.alphas.clone(),
            optimizer: self.opt.save_state(),
            rng: RngState {
                seed: self.rng.get_seed(),
                stream: self.rng.get_stream(),
                word_pos: self.rng.get_word_pos().to_string(),
            },
            steps: self.steps,
            sums: self.sums.clone(),
            last_valid_acc: self.last_valid_acc,
        })
        .map_err(|e| NasError::Other(format!("saving proxylessnas state: {e}")))
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: State = serde_json::from_value(state.clone())
            .map_err(|e| NasError::Strategy(format!("proxylessnas state does not decode: {e}")))?;
        let fits = s.alphas.len() == self.alphas.len()
            && s.alphas
                .iter()
                .zip(&self.alphas)
                .all(|(a, b)| a.len() == b.len());
        if !self.alphas.is_empty() && !fits {
            return Err(NasError::Strategy(
                "the saved alphas do not fit this space (a checkpoint of another config?)".into(),
            ));
        }
        let pos: u128 = s.rng.word_pos.parse().map_err(|e| {
            NasError::Strategy(format!("saved RNG word position `{}`: {e}", s.rng.word_pos))
        })?;
        let mut rng = ChaCha8Rng::from_seed(s.rng.seed);
        rng.set_stream(s.rng.stream);
        rng.set_word_pos(pos);
        self.rng = rng;
        self.alphas = s.alphas;
        self.opt.load_state(&s.optimizer)?;
        self.steps = s.steps;
        self.sums = s.sums;
        self.last_valid_acc = s.last_valid_acc;
        Ok(())
    }
}

/// `params` with a `cost` object merged over [`cost_defaults`] (a user's keys win).
fn with_cost_defaults(params: &serde_json::Value) -> serde_json::Value {
    let mut p = params.clone();
    if let Some(user) = p.get("cost").and_then(|c| c.as_object()).cloned() {
        let mut merged = cost_defaults();
        if let Some(m) = merged.as_object_mut() {
            m.extend(user);
        }
        p["cost"] = merged;
    }
    p
}
