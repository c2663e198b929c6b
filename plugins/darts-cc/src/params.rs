//! `strategy.params` of `darts_cc`.
use nas_core::params::ensure;
use nas_core::{GradOrder, NasError, Result};
use nas_strategy_darts::ArchOptimizer;
use serde::{Deserialize, Serialize};

use crate::lambda::LambdaRange;
use crate::penalty::CostKind;

/// Params of the DARTS-CC strategy. Sources: the DARTS-CC paper and reference code
/// (Yakovlev, Grebenkova, Bakhteev, Strijov), DARTS (Liu et al. 2019) for the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DartsCcParams {
    /// `L_min = log10` of the smallest `lambda` (DARTS-CC: -10 for CIFAR-sized supernets,
    /// -8 for small ones).
    pub log_lambda_min: f64,
    /// `L_max = log10` of the largest `lambda` (DARTS-CC: -6 for CIFAR-sized supernets,
    /// -4 for small ones).
    pub log_lambda_max: f64,
    /// Anchors per hypernetwork; `null` = the reference's `int(L_max - L_min) + 1`.
    pub anchors: Option<usize>,
    /// Train the pivots with the anchors (the reference does; off by default here: with a
    /// coupled weight decay, Adam drags every pivot toward 0 at about `lr` per step).
    pub train_pivots: bool,
    /// Anchors start as `U(-b, b)`; `null` = the reference's `1 / sqrt(rows * ops)`.
    pub init_bound: Option<f64>,
    /// `gumbel` (Gumbel-softmax, one sample per example; the reference's, the default) or
    /// `softmax` (the same weights for a batch; the cheaper variant).
    pub relaxation: String,
    /// Initial temperature (reference: 1.0).
    pub tau0: f64,
    /// Temperature change per epoch (reference: -0.016).
    pub tau_step: f64,
    /// Lowest temperature (ours; the reference has no floor).
    pub tau_min: f64,
    /// `params` (the paper) or `flops`: the per-option cost the penalty weighs.
    pub cost: String,
    /// `second` (DARTS' unrolled gradient; the reference's, the default) or `first` order
    /// architecture gradient (the cheaper variant).
    pub order: nas_core::OrderSetting,
    /// Second-order virtual step; `null` = the current weight learning rate (DARTS).
    pub xi: Option<f64>,
    /// Optimizer of the hypernetwork (reference: Adam, lr 1e-3, betas (0.5, 0.999), weight
    /// decay 1e-3; DARTS' own alphas use lr 3e-4); `optimizers.arch` of the experiment
    /// overrides it.
    pub arch_optimizer: ArchOptimizer,
    /// The `t` values of the family reported at the end (and tracked every epoch).
    pub family_t: Vec<f64>,
    /// Derivation rule of the family: the space's modes (DARTS: `darts` = top-2 non-none
    /// edges per node, `simple` = argmax over all ops including none).
    pub derive_mode: String,
    /// Validation batches evaluated at the end of each epoch (`null` = all).
    pub eval_batches: Option<usize>,
    /// Epochs of weight training only, before the architecture steps start.
    pub warmup_epochs: usize,
}

/// The reference's hypernetwork optimizer: Adam, lr 1e-3, betas (0.5, 0.999), weight decay
/// 1e-3.
pub fn reference_arch_optimizer() -> ArchOptimizer {
    ArchOptimizer {
        name: "adam".into(),
        params: serde_json::json!({"lr": 1e-3, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
    }
}

/// The defaults are the reference configuration (Gumbel-softmax, second order, hypernetwork
/// lr 1e-3); the cheaper variant of the worked example is `relaxation: softmax, order:
/// first` (docs/darts-cc.md).
impl Default for DartsCcParams {
    fn default() -> Self {
        DartsCcParams {
            log_lambda_min: -10.0,
            log_lambda_max: -6.0,
            anchors: None,
            train_pivots: false,
            init_bound: None,
            relaxation: "gumbel".into(),
            tau0: 1.0,
            tau_step: -0.016,
            tau_min: 0.05,
            cost: "params".into(),
            order: nas_core::OrderSetting::Second,
            xi: None,
            arch_optimizer: reference_arch_optimizer(),
            family_t: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            derive_mode: "default".into(),
            eval_batches: None,
            warmup_epochs: 0,
        }
    }
}

/// The relaxation of the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relaxation {
    /// `softmax(alpha / tau)`, shared by the batch.
    Softmax,
    /// Gumbel-softmax, one sample per example.
    Gumbel,
}

/// Checked params.
#[derive(Debug, Clone)]
pub struct ValidParams {
    /// The raw params (defaults filled in).
    pub p: DartsCcParams,
    /// The lambda range.
    pub range: LambdaRange,
    /// Anchors per hypernetwork.
    pub anchors: usize,
    /// The relaxation.
    pub relaxation: Relaxation,
    /// The gradient order.
    pub order: GradOrder,
    /// The penalty's cost.
    pub cost: CostKind,
}

impl DartsCcParams {
    /// Checks every value.
    pub fn check(self) -> Result<ValidParams> {
        let c = "strategy darts_cc";
        let range = LambdaRange::new(self.log_lambda_min, self.log_lambda_max)?;
        let anchors = self.anchors.unwrap_or_else(|| range.reference_anchors());
        ensure(anchors >= 2, c, "anchors", "must be at least 2")?;
        let one_of = |path: &str, v: &str, known: &str| NasError::InvalidParams {
            component: c.into(),
            path: path.into(),
            message: format!("`{v}` is not one of: {known}"),
        };
        let relaxation = match self.relaxation.as_str() {
            "softmax" => Relaxation::Softmax,
            "gumbel" => Relaxation::Gumbel,
            r => return Err(one_of("relaxation", r, "softmax, gumbel")),
        };
        let order = self.order.grad_order(self.xi);
        let cost = match self.cost.as_str() {
            "params" => CostKind::Params,
            "flops" => CostKind::Flops,
            o => return Err(one_of("cost", o, "params, flops")),
        };
        ensure(
            self.tau0.is_finite() && self.tau0 > 0.0,
            c,
            "tau0",
            "must be > 0",
        )?;
        ensure(self.tau_step.is_finite(), c, "tau_step", "must be finite")?;
        ensure(
            self.tau_min.is_finite() && self.tau_min > 0.0,
            c,
            "tau_min",
            "must be > 0",
        )?;
        if let Some(b) = self.init_bound {
            ensure(b.is_finite() && b >= 0.0, c, "init_bound", "must be >= 0")?;
        }
        if let Some(xi) = self.xi {
            ensure(xi.is_finite() && xi >= 0.0, c, "xi", "must be >= 0")?;
        }
        ensure(
            !self.family_t.is_empty(),
            c,
            "family_t",
            "needs at least one t",
        )?;
        for (i, t) in self.family_t.iter().enumerate() {
            ensure(
                (0.0..=1.0).contains(t),
                c,
                &format!("family_t[{i}]"),
                format!("{t} is outside [0, 1]"),
            )?;
        }
        Ok(ValidParams {
            range,
            anchors,
            relaxation,
            order,
            cost,
            p: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_and_bad_values_are_located() {
        let v = DartsCcParams::default().check().unwrap();
        assert_eq!(v.anchors, 5);
        // The reference configuration: Gumbel-softmax, second order, hypernetwork lr 1e-3.
        assert_eq!(v.relaxation, Relaxation::Gumbel);
        assert!(matches!(v.order, GradOrder::Second { xi: None }));
        assert_eq!(v.p.arch_optimizer.params["lr"], 1e-3);
        let e = DartsCcParams {
            relaxation: "gumble".into(),
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(matches!(e, NasError::InvalidParams { ref path, .. } if path == "relaxation"));
        let e = DartsCcParams {
            family_t: vec![0.0, 1.5],
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(matches!(e, NasError::InvalidParams { ref path, .. } if path == "family_t[1]"));
        assert!(DartsCcParams {
            log_lambda_min: -4.0,
            log_lambda_max: -8.0,
            ..Default::default()
        }
        .check()
        .is_err());
    }
}
