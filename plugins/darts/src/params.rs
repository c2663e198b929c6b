//! Params of the DARTS strategy.
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
    /// Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 (DARTS reference
    /// `train_search.py`: `--arch_learning_rate 3e-4 --arch_weight_decay 1e-3`).
    fn default() -> Self {
        ArchOptimizer {
            name: "adam".into(),
            params: serde_json::json!({"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
        }
    }
}

/// `strategy.params` of `darts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DartsParams {
    /// `first` (the DARTS paper's first-order approximation) or `second` (unrolled).
    pub order: nas_core::OrderSetting,
    /// Virtual step size of the second-order gradient; `null` = the current weight
    /// learning rate, as the reference code does.
    pub xi: Option<f64>,
    /// Alphas start as `init_scale * N(0, 1)` (reference: `1e-3 * torch.randn`).
    pub init_scale: f64,
    /// The architecture optimizer (overridden by `optimizers.arch` of the experiment).
    pub arch_optimizer: ArchOptimizer,
    /// Validation batches evaluated at the end of each epoch (`null` = all).
    pub eval_batches: Option<usize>,
    /// Epochs of weight training only, before the architecture steps start (0 in DARTS).
    pub warmup_epochs: usize,
    /// The shared cost term (`nas_core::cost_term`; `null` = none, the DARTS paper).
    pub cost: Option<nas_core::cost_term::CostTerm>,
}

impl Default for DartsParams {
    fn default() -> Self {
        DartsParams {
            order: nas_core::OrderSetting::First,
            xi: None,
            init_scale: 1e-3,
            arch_optimizer: ArchOptimizer::default(),
            eval_batches: None,
            warmup_epochs: 0,
            cost: None,
        }
    }
}
