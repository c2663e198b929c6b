//! Params of the Gumbel-softmax strategies, with each method's paper defaults.
use nas_core::cost_term::CostTerm;
use nas_core::params::ensure;
use nas_core::{decode_params, NasError, Result};
use nas_strategy_darts::ArchOptimizer;
use serde::{Deserialize, Serialize};

use crate::schedule::TauSchedule;

/// The three registered methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GDAS (Dong & Yang, CVPR 2019): hard straight-through samples, linear temperature.
    Gdas,
    /// SNAS (Xie et al., ICLR 2019): soft Gumbel-softmax samples, exponential temperature.
    Snas,
    /// FBNet (Wu et al., CVPR 2019): soft samples plus the multiplicative latency loss.
    Fbnet,
}

impl Method {
    /// Registered name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Gdas => "gdas",
            Method::Snas => "snas",
            Method::Fbnet => "fbnet",
        }
    }

    /// Every method.
    pub fn all() -> [Method; 3] {
        [Method::Gdas, Method::Snas, Method::Fbnet]
    }

    /// From a registered name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::all().into_iter().find(|m| m.name() == name)
    }
}

/// `hard` (straight-through one-hot, only the selected option computed) or `soft`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// One-hot straight-through samples, driven `SelectedOnly` or `SelectedPerSample` (GDAS).
    Hard,
    /// Soft Gumbel-softmax samples, driven `Mixed` / `MixedPerSample` (SNAS, FBNet).
    Soft,
}

/// One sample per batch or one per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Samples {
    /// The same sample for every example of a batch.
    Batch,
    /// An independent sample per example: `SelectedPerSample` for hard samples (each
    /// option runs only on the examples that chose it), `MixedPerSample` for soft ones.
    Example,
}

/// `strategy.params` of `gdas`, `snas` and `fbnet` (the same keys, different defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GumbelParams {
    /// `hard` | `soft`.
    pub sampling: Sampling,
    /// `batch` | `example`.
    pub samples: Samples,
    /// `linear` (GDAS) | `exponential` (FBNet / SNAS).
    pub tau_schedule: TauSchedule,
    /// Starting temperature.
    pub tau_max: f64,
    /// Final temperature of the linear schedule.
    pub tau_min: f64,
    /// Per-epoch factor of the exponential schedule.
    pub tau_decay: f64,
    /// Logits start as `init_scale * N(0, 1)`.
    pub init_scale: f64,
    /// The logits' optimizer (overridden by `optimizers.arch`).
    pub arch_optimizer: ArchOptimizer,
    /// Epochs of weight training before the architecture steps start.
    pub warmup_epochs: usize,
    /// Validation batches evaluated at each epoch end (`null` = all).
    pub eval_batches: Option<usize>,
    /// The shared cost term (`null` = none); see `nas_core::cost_term`.
    pub cost: Option<CostTerm>,
}

/// The defaults of `method`, with their sources.
pub fn defaults(method: Method) -> GumbelParams {
    // Adam lr 3e-4, betas (0.5, 0.999), wd 1e-3: GDAS reference
    // (`configs/nas-benchmark/algos/GDAS.config`, `--arch_learning_rate 3e-4
    // --arch_weight_decay 1e-3`), the DARTS values; SNAS uses the same arch optimizer.
    let darts_adam = ArchOptimizer::default();
    match method {
        Method::Gdas => GumbelParams {
            sampling: Sampling::Hard,
            samples: Samples::Batch,
            tau_schedule: TauSchedule::Linear,
            tau_max: 10.0,
            tau_min: 0.1,
            tau_decay: 1.0,
            init_scale: 1e-3,
            arch_optimizer: darts_adam,
            warmup_epochs: 0,
            eval_batches: None,
            cost: None,
        },
        Method::Snas => GumbelParams {
            sampling: Sampling::Soft,
            samples: Samples::Batch,
            tau_schedule: TauSchedule::Exponential,
            tau_max: 5.0,
            tau_min: 0.0,
            tau_decay: 0.956,
            init_scale: 1e-3,
            arch_optimizer: darts_adam,
            warmup_epochs: 0,
            eval_batches: None,
            cost: None,
        },
        // FBNet (Wu et al. 2019, section 4.1): theta by Adam lr 0.01, weight decay 5e-4;
        // temperature 5.0 x 0.956 per epoch; the first 10 of 90 epochs train weights only;
        // loss CE * 0.2 * log(LAT)^0.6.
        Method::Fbnet => GumbelParams {
            sampling: Sampling::Soft,
            samples: Samples::Batch,
            tau_schedule: TauSchedule::Exponential,
            tau_max: 5.0,
            tau_min: 0.0,
            tau_decay: 0.956,
            init_scale: 1e-3,
            arch_optimizer: ArchOptimizer {
                name: "adam".into(),
                params: serde_json::json!({"lr": 0.01, "weight_decay": 5e-4}),
            },
            warmup_epochs: 10,
            eval_batches: None,
            cost: Some(CostTerm::default()),
        },
    }
}

/// Decodes `params` over the defaults of `method` (top-level keys replace the default's)
/// and checks the numbers.
pub fn decode(method: Method, params: &serde_json::Value) -> Result<GumbelParams> {
    let c = format!("strategy {}", method.name());
    let mut v = serde_json::to_value(defaults(method))
        .map_err(|e| NasError::Other(format!("{c} defaults: {e}")))?;
    match params {
        serde_json::Value::Null => {}
        serde_json::Value::Object(o) => {
            if let Some(d) = v.as_object_mut() {
                for (k, x) in o {
                    d.insert(k.clone(), x.clone());
                }
            }
        }
        other => {
            return Err(NasError::InvalidParams {
                component: c,
                path: ".".into(),
                message: format!("params must be a mapping, got {other}"),
            })
        }
    }
    let p: GumbelParams = decode_params(&c, &v)?;
    ensure(
        p.tau_max.is_finite() && p.tau_max > 0.0,
        &c,
        "tau_max",
        "must be > 0",
    )?;
    ensure(
        p.tau_min.is_finite() && p.tau_min >= 0.0 && p.tau_min <= p.tau_max,
        &c,
        "tau_min",
        "must be in [0, tau_max]",
    )?;
    if p.tau_schedule == TauSchedule::Linear {
        ensure(
            p.tau_min > 0.0,
            &c,
            "tau_min",
            "must be > 0 for the linear schedule",
        )?;
    }
    ensure(
        p.tau_decay.is_finite() && p.tau_decay > 0.0 && p.tau_decay <= 1.0,
        &c,
        "tau_decay",
        "must be in (0, 1]",
    )?;
    ensure(
        p.init_scale.is_finite() && p.init_scale >= 0.0,
        &c,
        "init_scale",
        "must be >= 0",
    )?;
    if let Some(cost) = &p.cost {
        cost.check(&c)?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_replace_defaults_and_bad_values_name_the_key() {
        let p = decode(Method::Gdas, &serde_json::json!({"tau_max": 5.0})).unwrap();
        assert_eq!((p.tau_max, p.tau_min), (5.0, 0.1));
        let e = decode(Method::Fbnet, &serde_json::json!({"bogus": 1})).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let p = decode(Method::Gdas, &serde_json::json!({"samples": "example"})).unwrap();
        assert_eq!((p.sampling, p.samples), (Sampling::Hard, Samples::Example));
        let e = decode(Method::Gdas, &serde_json::json!({"samples": "each"})).unwrap_err();
        assert!(e.to_string().contains("samples"), "{e}");
        let e = decode(Method::Snas, &serde_json::json!({"tau_decay": 1.5})).unwrap_err();
        assert!(e.to_string().contains("tau_decay"), "{e}");
        let e = decode(Method::Fbnet, &serde_json::json!({"cost": {"a": -1.0}})).unwrap_err();
        assert!(e.to_string().contains("cost.a"), "{e}");
    }
}
