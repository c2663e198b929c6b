//! The strategy's params: decoded from the YAML `params:` block, checked, documented.
use nas_core::params::ensure;
use nas_core::{decode_params, GradOrder, NasError, ParamDoc, Result};
use serde::{Deserialize, Serialize};

/// The component name used in param errors.
pub const COMPONENT: &str = "strategy tempered_darts";

/// The optimizer of the alphas (`optimizers.arch` of an experiment replaces it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchOptimizer {
    /// Optimizer name (`adam`, `sgd`, ...; see `nas list`).
    pub name: String,
    /// Its params.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl Default for ArchOptimizer {
    /// Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3: the DARTS reference
    /// (`cnn/train_search.py`, `--arch_learning_rate 3e-4 --arch_weight_decay 1e-3`).
    fn default() -> Self {
        ArchOptimizer {
            name: "adam".into(),
            params: serde_json::json!({"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
        }
    }
}

/// `strategy.params` of `tempered_darts`. Unknown keys are errors; missing keys default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemperedParams {
    /// Temperature of the first epoch. Default 10, as GDAS anneals its temperature
    /// (Dong & Yang, "Searching for a Robust Neural Architecture in Four GPU Hours",
    /// CVPR 2019: linearly from 10 to 0.1 over the search).
    pub tau_start: f64,
    /// Temperature of the last epoch (default 0.1, GDAS).
    pub tau_end: f64,
    /// `first` (DARTS' first-order approximation) or `second` (the unrolled gradient).
    pub order: String,
    /// Virtual step of the second order; `null` = the current weight learning rate.
    pub xi: Option<f64>,
    /// Alphas start as `init_scale * N(0, 1)` (DARTS reference: 1e-3).
    pub init_scale: f64,
    /// The optimizer of the alphas.
    pub arch_optimizer: ArchOptimizer,
    /// Validation batches evaluated at each epoch end (`null` = all).
    pub eval_batches: Option<usize>,
}

impl Default for TemperedParams {
    fn default() -> Self {
        TemperedParams {
            tau_start: 10.0,
            tau_end: 0.1,
            order: "first".into(),
            xi: None,
            init_scale: 1e-3,
            arch_optimizer: ArchOptimizer::default(),
            eval_batches: None,
        }
    }
}

impl TemperedParams {
    /// Decodes and checks a `params` block (`null` = all defaults).
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let p: TemperedParams = decode_params(COMPONENT, value)?;
        for (key, tau) in [("tau_start", p.tau_start), ("tau_end", p.tau_end)] {
            ensure(
                tau.is_finite() && tau > 0.0,
                COMPONENT,
                key,
                format!("must be a positive number, got {tau}"),
            )?;
        }
        ensure(p.init_scale >= 0.0, COMPONENT, "init_scale", "must be >= 0")?;
        if let Some(xi) = p.xi {
            ensure(xi >= 0.0, COMPONENT, "xi", "must be >= 0")?;
        }
        p.order()?;
        Ok(p)
    }

    /// The gradient order named by `order`.
    pub fn order(&self) -> Result<GradOrder> {
        match self.order.as_str() {
            "first" => Ok(GradOrder::First),
            "second" => Ok(GradOrder::Second { xi: self.xi }),
            o => Err(NasError::InvalidParams {
                component: COMPONENT.into(),
                path: "order".into(),
                message: format!("`{o}` is not one of: first, second"),
            }),
        }
    }

    /// The temperature of `epoch` out of `total`: linear from `tau_start` (first epoch) to
    /// `tau_end` (last epoch), GDAS' schedule `tau_max - (tau_max - tau_min) * e / (E - 1)`.
    pub fn tau(&self, epoch: usize, total: usize) -> f64 {
        if total <= 1 {
            return self.tau_start;
        }
        let f = epoch.min(total - 1) as f64 / (total - 1) as f64;
        self.tau_start - (self.tau_start - self.tau_end) * f
    }

    /// The defaults as JSON, for `nas describe`.
    pub fn defaults_json() -> serde_json::Value {
        serde_json::to_value(TemperedParams::default()).unwrap_or_default()
    }

    /// Documentation of each param, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("tau_start", "temperature of the first epoch (GDAS: 10)"),
            ParamDoc::new(
                "tau_end",
                "temperature of the last epoch, linear in between (GDAS: 0.1); tau_start = \
                 tau_end = 1 is plain DARTS",
            ),
            ParamDoc::new("order", "first | second (unrolled, DARTS eq. 7-8)"),
            ParamDoc::new(
                "xi",
                "virtual step of the second order; null = current weight lr",
            ),
            ParamDoc::new(
                "init_scale",
                "alphas start as init_scale * N(0,1) (DARTS: 1e-3)",
            ),
            ParamDoc::new(
                "arch_optimizer",
                "optimizer of the alphas (DARTS: Adam lr 3e-4, betas 0.5/0.999, wd 1e-3); \
                 optimizers.arch overrides it",
            ),
            ParamDoc::new(
                "eval_batches",
                "validation batches at each epoch end (null = all)",
            ),
        ]
    }
}
