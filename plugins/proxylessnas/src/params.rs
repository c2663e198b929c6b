//! Params of the `proxylessnas` strategy, with the reference code's defaults
//! (mit-han-lab/proxylessnas `search/imagenet_arch_search.py` and `search/nas_manager.py`).
use nas_core::cost_term::CostTerm;
use serde::{Deserialize, Serialize};

/// The optimizer of the architecture parameters (`optimizers.arch` in an experiment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchOptimizer {
    /// Optimizer name (`adam`, `sgd`, ...).
    pub name: String,
    /// Its params.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl Default for ArchOptimizer {
    /// Adam, lr 1e-3, betas (0, 0.999), eps 1e-8, no weight decay (reference
    /// `imagenet_arch_search.py`: `--arch_lr 1e-3 --arch_adam_beta1 0 --arch_adam_beta2
    /// 0.999 --arch_adam_eps 1e-8 --arch_weight_decay 0`). With `beta1 = 0` an option that
    /// was not sampled (zero gradient) does not move.
    fn default() -> Self {
        ArchOptimizer {
            name: "adam".into(),
            params: serde_json::json!({"lr": 1e-3, "betas": [0.0, 0.999], "eps": 1e-8, "weight_decay": 0.0}),
        }
    }
}

/// ProxylessNAS's defaults of the shared cost block (`nas_core::cost_term::CostTerm`), under
/// which a user's `strategy.params.cost` keys are merged: the latency (`metric: latency`) of
/// the whole network (`fixed: true`, reference `expected_latency`), `mul#log` (`form:
/// mul_log`) with `a = 0.2`, `b = 0.3`, and `add#linear`'s `weight = 0.1` (reference
/// `imagenet_arch_search.py`: `--grad_reg_loss_alpha 0.2 --grad_reg_loss_beta 0.3
/// --grad_reg_loss_lambda 0.1`). A missing `target` is the expected value under uniform
/// probabilities (the reference takes a table value, e.g. 80 ms for the Mobile setting).
pub fn cost_defaults() -> serde_json::Value {
    serde_json::json!({"metric": "latency", "form": "mul_log", "a": 0.2, "b": 0.3, "weight": 0.1, "fixed": true})
}

/// The probabilities of the expected cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostProbs {
    /// The two sampled options renormalised (the reference's `current_prob_over_ops` in the
    /// `two` mode).
    Sampled,
    /// `softmax(alpha)` over every option (the paper's eq. 5; an extension).
    Full,
}

/// `strategy.params` of `proxylessnas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxylessParams {
    /// Alphas start as `init_scale * N(0, 1)` (reference `init_arch_params('normal', 1e-3)`).
    pub init_scale: f64,
    /// The architecture optimizer (overridden by `optimizers.arch` of the experiment).
    pub arch_optimizer: ArchOptimizer,
    /// Epochs of weight-only training (one sampled path per step) before architecture
    /// updates start (reference `--warmup_epochs 40`, plus no update in the first epoch of
    /// the joint phase).
    pub warmup_epochs: usize,
    /// An architecture update after every `arch_every` weight steps (reference
    /// `--grad_update_arch_param_every 5`).
    pub arch_every: usize,
    /// Architecture updates each time (reference `--grad_update_steps 1`).
    pub arch_steps: usize,
    /// The hardware-aware loss (paper section 3.3): the shared cost block, merged over
    /// [`cost_defaults`]; `null` = the cross-entropy alone.
    pub cost: Option<CostTerm>,
    /// Probabilities of the expected cost: `sampled` (reference) or `full`.
    pub cost_probs: CostProbs,
    /// Validation batches used to score the derived path at each epoch end (`null` = all).
    pub eval_batches: Option<usize>,
}

impl Default for ProxylessParams {
    fn default() -> Self {
        ProxylessParams {
            init_scale: 1e-3,
            arch_optimizer: ArchOptimizer::default(),
            warmup_epochs: 0,
            arch_every: 5,
            arch_steps: 1,
            cost: None,
            cost_probs: CostProbs::Sampled,
            eval_batches: None,
        }
    }
}
