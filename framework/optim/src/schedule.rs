//! Learning-rate schedules per epoch: constant, step decay and cosine annealing.
use nas_core::params::ensure;
use nas_core::{decode_params, ComponentInfo, ComponentKind, NasError, ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::check::{non_negative, positive};
use crate::factory::component_info;

/// A learning-rate schedule: the rate for an epoch, given the optimizer's base rate.
/// Pure: the same arguments always give the same rate, so a resumed run needs no
/// schedule state. The only method is required.
pub trait Schedule: Send {
    /// The learning rate for `epoch` (0-based) of a run of `total_epochs` epochs.
    fn lr(&self, base_lr: f64, epoch: usize, total_epochs: usize) -> f64;
}

/// Params of [`Constant`]: none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantParams {}

/// The base rate at every epoch.
#[derive(Debug, Clone, Default)]
pub struct Constant;

impl Schedule for Constant {
    fn lr(&self, base_lr: f64, _epoch: usize, _total_epochs: usize) -> f64 {
        base_lr
    }
}

/// Params of [`StepDecay`]. Defaults: the common ImageNet recipe (decay by 10 every 30
/// epochs, as in torchvision's reference training scripts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepParams {
    /// Epochs between decays (>= 1).
    pub step_size: usize,
    /// Multiplicative factor per decay (> 0).
    pub gamma: f64,
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams {
            step_size: 30,
            gamma: 0.1,
        }
    }
}

/// PyTorch's `StepLR`: `base * gamma^(epoch / step_size)` (integer division).
#[derive(Debug, Clone)]
pub struct StepDecay {
    params: StepParams,
}

impl StepDecay {
    /// A new step schedule; `step_size` must be >= 1 and `gamma` > 0.
    pub fn new(params: StepParams) -> Result<Self> {
        ensure(
            params.step_size >= 1,
            "schedule step",
            "step_size",
            "must be >= 1",
        )?;
        positive("schedule step", "gamma", params.gamma)?;
        Ok(StepDecay { params })
    }
}

impl Schedule for StepDecay {
    fn lr(&self, base_lr: f64, epoch: usize, _total_epochs: usize) -> f64 {
        let k = (epoch / self.params.step_size).min(i32::MAX as usize) as i32;
        base_lr * self.params.gamma.powi(k)
    }
}

/// Params of [`Cosine`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineParams {
    /// The rate reached at the end (>= 0). PyTorch's default is 0; DARTS anneals the
    /// weights' rate from 0.025 to 0.001 (`learning_rate_min`, Liu et al. 2019).
    pub eta_min: f64,
}

/// PyTorch's `CosineAnnealingLR` with `T_max = total_epochs`, in closed form:
/// `eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`
/// (Loshchilov & Hutter 2017, SGDR without restarts). Epochs past the end give `eta_min`;
/// `total_epochs = 0` gives the base rate.
///
/// Note: the DARTS reference code calls `scheduler.step()` at the *start* of each epoch, so
/// its epoch `e` trains with this schedule's rate at `e + 1`; here epoch 0 uses the base
/// rate, as PyTorch intends.
#[derive(Debug, Clone)]
pub struct Cosine {
    params: CosineParams,
}

impl Cosine {
    /// A new cosine schedule; `eta_min` must be >= 0.
    pub fn new(params: CosineParams) -> Result<Self> {
        non_negative("schedule cosine", "eta_min", params.eta_min)?;
        Ok(Cosine { params })
    }
}

impl Schedule for Cosine {
    fn lr(&self, base_lr: f64, epoch: usize, total_epochs: usize) -> f64 {
        if total_epochs == 0 {
            return base_lr;
        }
        let eta_min = self.params.eta_min;
        let frac = epoch.min(total_epochs) as f64 / total_epochs as f64;
        eta_min + (base_lr - eta_min) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
    }
}

/// Names accepted by [`build_schedule`], sorted.
pub const SCHEDULE_NAMES: [&str; 3] = ["constant", "cosine", "step"];

/// Builds the schedule `name` (`constant`, `step`, `cosine`) from its `params` block.
/// Errors name the key; an unknown name is [`NasError::UnknownComponent`].
pub fn build_schedule(name: &str, params: &serde_json::Value) -> Result<Box<dyn Schedule>> {
    let component = format!("schedule {name}");
    Ok(match name {
        "constant" => {
            decode_params::<ConstantParams>(&component, params)?;
            Box::new(Constant)
        }
        "step" => Box::new(StepDecay::new(decode_params(&component, params)?)?),
        "cosine" => Box::new(Cosine::new(decode_params(&component, params)?)?),
        _ => {
            return Err(NasError::UnknownComponent {
                kind: ComponentKind::Schedule.to_string(),
                name: name.to_string(),
                known: SCHEDULE_NAMES.join(", "),
            })
        }
    })
}

/// What `nas list` / `nas describe` show about each schedule, sorted by name.
pub fn schedule_infos() -> Vec<ComponentInfo> {
    let kind = ComponentKind::Schedule;
    vec![
        component_info(kind, "constant", "the base learning rate at every epoch", ConstantParams {}, vec![]),
        component_info(
            kind,
            "cosine",
            "cosine annealing from the base rate to eta_min over the run (PyTorch CosineAnnealingLR, T_max = epochs)",
            CosineParams::default(),
            vec![ParamDoc::new(
                "eta_min",
                "final learning rate (PyTorch: 0; DARTS: 0.001 from 0.025)",
            )],
        ),
        component_info(
            kind,
            "step",
            "multiply the rate by gamma every step_size epochs (PyTorch StepLR)",
            StepParams::default(),
            vec![
                ParamDoc::new("step_size", "epochs between decays (>= 1)"),
                ParamDoc::new("gamma", "factor per decay (> 0)"),
            ],
        ),
    ]
}
