//! Params of the `proxylessnas` strategy, with the reference code's defaults
//! (mit-han-lab/proxylessnas `search/imagenet_arch_search.py` and `search/nas_manager.py`).
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

/// `strategy.params.cost`: the hardware-aware loss (paper section 3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostParams {
    /// `none`, `mul#log` (`alpha * CE * (log E / log REF)^beta`) or `add#linear`
    /// (`CE + lambda * (E - REF) / REF`); reference `add_regularization_loss`.
    pub loss: String,
    /// The cost figure: `latency` (the space's latency table), `flops` or `params`
    /// (reference `--target_hardware`: `mobile` | `flops`).
    pub metric: String,
    /// The reference value `REF`, in the metric's unit (ms, MACs, parameters); `null` = the
    /// expected value under uniform probabilities (the reference code takes a fixed table
    /// value, e.g. 80 ms for the Mobile setting).
    pub ref_value: Option<f64>,
    /// `mul#log` weight (reference `--grad_reg_loss_alpha 0.2`).
    pub alpha: f64,
    /// `mul#log` exponent (reference `--grad_reg_loss_beta 0.3`).
    pub beta: f64,
    /// `add#linear` weight (reference `--grad_reg_loss_lambda 0.1`).
    pub lambda: f64,
    /// Factor applied to `E` and `REF` before `mul#log` takes their logarithms (e.g. 1000 to
    /// use microseconds): the loss needs both above 1 (the reference's 80 ms is).
    pub scale: f64,
    /// Probabilities of the expected value: `sampled` (the two sampled options
    /// renormalised, the reference's `current_prob_over_ops` in the `two` mode) or `full`
    /// (`softmax(alpha)` over every option, the paper's eq. 5).
    pub probs: String,
}

impl Default for CostParams {
    fn default() -> Self {
        CostParams {
            loss: "none".into(),
            metric: "latency".into(),
            ref_value: None,
            alpha: 0.2,
            beta: 0.3,
            lambda: 0.1,
            scale: 1.0,
            probs: "sampled".into(),
        }
    }
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
    /// The hardware-aware loss.
    pub cost: CostParams,
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
            cost: CostParams::default(),
            eval_batches: None,
        }
    }
}
