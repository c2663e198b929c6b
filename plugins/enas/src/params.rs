//! The `enas` strategy's params, checked.
use nas_core::params::ensure;
use nas_core::{ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::controller::PolicyConfig;

pub(crate) const COMPONENT: &str = "strategy enas";

/// Params of `enas` (`strategy.params`). Defaults are the melodyguan/enas micro search
/// script's (`scripts/cifar10_micro_search.sh` with `src/cifar10/main.py`'s flag defaults),
/// except the temperature (see [`EnasParams::temperature`]). The paper (Pham et al. 2018,
/// section 3.2) states 100 hidden units, lr 3.5e-4, tanh constant 2.5 and temperature 5.
/// The reference's macro search script uses other values: [`EnasParams::macro_search`],
/// which are the defaults when the space is a macro space (the strategy switches at `init`,
/// when it sees the space; keys the config sets keep the config's value, see
/// [`EnasParams::for_space`]); `skip_target` and `skip_weight` only act on macro spaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnasParams {
    /// LSTM hidden units (reference: 64, hard-coded in `main.py`; paper: 100).
    pub lstm_size: usize,
    /// Controller learning rate (reference micro script: 0.0035; paper: 3.5e-4).
    pub lr: f64,
    /// `c` of `c * tanh(logits)` for input decisions (reference micro script: 1.10;
    /// paper: 2.5); `null`: no squashing.
    pub tanh_constant: Option<f64>,
    /// Op logits use `tanh_constant / op_tanh_reduce` (reference: 2.5).
    pub op_tanh_reduce: f64,
    /// Logits are divided by it first. Paper: 5. The reference's flag
    /// `controller_temperature` defaults to `None` and the micro search script does not
    /// set it, so the reference ran without one; `null` reproduces that.
    pub temperature: Option<f64>,
    /// Weight of the sample entropy added to the reward (reference: 1e-4).
    pub entropy_weight: f64,
    /// Decay of the moving-average baseline (reference `controller_bl_dec`: 0.99).
    pub baseline_decay: f64,
    /// Controller updates after each epoch of weight training (reference: 30).
    pub controller_steps: usize,
    /// Sampled architectures whose gradients are averaged into one update (reference
    /// `controller_num_aggregate`: 10).
    pub aggregate: usize,
    /// Validation batches each reward is measured on (reference: 1).
    pub reward_batches: usize,
    /// Architectures sampled at the end, each scored on `reward_batches` fresh validation
    /// batches; the best is returned (the paper: "sample several models ... the one with
    /// the highest reward").
    pub final_samples: usize,
    /// Adam's `(beta1, beta2)` (reference: `beta1=0.0`, TensorFlow's `beta2=0.999`).
    pub betas: [f64; 2],
    /// Adam's epsilon (reference: 1e-3).
    pub eps: f64,
    /// Half-width of the uniform initialisation of every controller weight (reference: 0.1).
    pub init_range: f64,
    /// Architectures returned, best first.
    pub keep: usize,
    /// Macro spaces only: the skip probability the skip penalty pulls towards (reference
    /// macro script `controller_skip_target=0.4`; paper: 0.4).
    pub skip_target: f64,
    /// Macro spaces only: weight of the skip penalty (the KL divergence of the skip
    /// probabilities from `skip_target`) in the controller loss (reference macro script
    /// `controller_skip_weight=0.8`).
    pub skip_weight: f64,
}

impl Default for EnasParams {
    fn default() -> Self {
        EnasParams {
            lstm_size: 64,
            lr: 0.0035,
            tanh_constant: Some(1.10),
            op_tanh_reduce: 2.5,
            temperature: Some(5.0),
            entropy_weight: 1e-4,
            baseline_decay: 0.99,
            controller_steps: 30,
            aggregate: 10,
            reward_batches: 1,
            final_samples: 10,
            betas: [0.0, 0.999],
            eps: 1e-3,
            init_range: 0.1,
            keep: 1,
            skip_target: 0.4,
            skip_weight: 0.8,
        }
    }
}

impl EnasParams {
    /// The reference macro search script's values (melodyguan/enas
    /// `scripts/cifar10_macro_search.sh` with `main.py`'s hard-coded and flag defaults):
    /// `lstm_size` 64 (hard-coded; paper 100), `lr` 0.001 (`controller_lr`; paper 3.5e-4),
    /// `tanh_constant` 1.5 (paper 2.5; the macro controller squashes op logits with it too,
    /// `op_tanh_reduce` is not used by `general_controller.py`), `temperature` `null`
    /// (`controller_temperature` unset; paper 5), `entropy_weight` 1e-4, `baseline_decay`
    /// 0.99 (`controller_bl_dec` default), `controller_steps` 50 x `aggregate` 20
    /// (`controller_train_steps`, `controller_num_aggregate`; paper: 2000 steps in all),
    /// `skip_target` 0.4 (paper 0.4), `skip_weight` 0.8; Adam `beta1 = 0`, `eps = 1e-3`
    /// and `U(-0.1, 0.1)` initialisation as for micro. Every other value is the default.
    pub fn macro_search() -> Self {
        EnasParams {
            lstm_size: 64,
            lr: 0.001,
            tanh_constant: Some(1.5),
            temperature: None,
            entropy_weight: 1e-4,
            baseline_decay: 0.99,
            controller_steps: 50,
            aggregate: 20,
            skip_target: 0.4,
            skip_weight: 0.8,
            ..EnasParams::default()
        }
    }
}

/// Which reference script's defaults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultsFor {
    /// `scripts/cifar10_micro_search.sh`: [`EnasParams::default`] (every space without
    /// macro layers).
    Micro,
    /// `scripts/cifar10_macro_search.sh`: [`EnasParams::macro_search`].
    Macro,
}

impl EnasParams {
    /// The params of a config's `strategy.params` (`user`, `null` = none set) over the
    /// defaults of `which` space kind: every key the config sets keeps its value, every
    /// other key takes that reference script's default. Errors name the key.
    pub fn for_space(user: &serde_json::Value, which: DefaultsFor) -> Result<Self> {
        let base = match which {
            DefaultsFor::Micro => EnasParams::default(),
            DefaultsFor::Macro => EnasParams::macro_search(),
        };
        let mut merged = serde_json::to_value(base)
            .map_err(|e| nas_core::NasError::Strategy(format!("{COMPONENT}: defaults: {e}")))?;
        if let (Some(m), Some(u)) = (merged.as_object_mut(), user.as_object()) {
            for (k, v) in u {
                m.insert(k.clone(), v.clone());
            }
        } else if !user.is_null() {
            // Not an object: let the decoder name the problem.
            merged = user.clone();
        }
        let p: EnasParams = nas_core::decode_params(COMPONENT, &merged)?;
        p.check()?;
        Ok(p)
    }
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl EnasParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        let c = COMPONENT;
        ensure(self.lstm_size >= 1, c, "lstm_size", "must be >= 1")?;
        ensure(
            positive(self.lr),
            c,
            "lr",
            format!("must be > 0, got {}", self.lr),
        )?;
        if let Some(t) = self.tanh_constant {
            ensure(
                positive(t),
                c,
                "tanh_constant",
                format!("must be > 0 or null, got {t}"),
            )?;
        }
        ensure(
            positive(self.op_tanh_reduce),
            c,
            "op_tanh_reduce",
            format!("must be > 0, got {}", self.op_tanh_reduce),
        )?;
        if let Some(t) = self.temperature {
            ensure(
                positive(t),
                c,
                "temperature",
                format!("must be > 0 or null, got {t}"),
            )?;
        }
        ensure(
            self.entropy_weight.is_finite() && self.entropy_weight >= 0.0,
            c,
            "entropy_weight",
            format!("must be >= 0, got {}", self.entropy_weight),
        )?;
        ensure(
            (0.0..1.0).contains(&self.baseline_decay),
            c,
            "baseline_decay",
            format!("must be in [0, 1), got {}", self.baseline_decay),
        )?;
        ensure(self.aggregate >= 1, c, "aggregate", "must be >= 1")?;
        ensure(
            self.reward_batches >= 1,
            c,
            "reward_batches",
            "must be >= 1",
        )?;
        ensure(self.final_samples >= 1, c, "final_samples", "must be >= 1")?;
        ensure(
            self.betas.iter().all(|b| (0.0..1.0).contains(b)),
            c,
            "betas",
            format!("each must be in [0, 1), got {:?}", self.betas),
        )?;
        ensure(
            positive(self.eps),
            c,
            "eps",
            format!("must be > 0, got {}", self.eps),
        )?;
        ensure(
            positive(self.init_range),
            c,
            "init_range",
            format!("must be > 0, got {}", self.init_range),
        )?;
        ensure(
            self.skip_target > 0.0 && self.skip_target < 1.0,
            c,
            "skip_target",
            format!("must be in (0, 1), got {}", self.skip_target),
        )?;
        ensure(
            self.skip_weight.is_finite() && self.skip_weight >= 0.0,
            c,
            "skip_weight",
            format!("must be >= 0, got {}", self.skip_weight),
        )?;
        ensure(self.keep >= 1, c, "keep", "must be >= 1")
    }

    /// The controller's shape and logit transform.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            lstm_size: self.lstm_size,
            tanh_constant: self.tanh_constant,
            op_tanh_reduce: self.op_tanh_reduce,
            temperature: self.temperature,
            init_range: self.init_range,
            skip_target: self.skip_target,
        }
    }
}

/// Documentation of every param.
pub fn docs() -> Vec<ParamDoc> {
    vec![
        ParamDoc::new("lstm_size", "LSTM hidden units (reference 64; paper 100)"),
        ParamDoc::new(
            "lr",
            "controller Adam learning rate (reference micro 0.0035; paper 3.5e-4)",
        ),
        ParamDoc::new(
            "tanh_constant",
            "c of c*tanh(logits) for inputs (reference micro 1.10; paper 2.5); null: none",
        ),
        ParamDoc::new(
            "op_tanh_reduce",
            "op logits use tanh_constant / op_tanh_reduce (reference 2.5)",
        ),
        ParamDoc::new(
            "temperature",
            "logits divided by it (paper 5; the reference runs without: null)",
        ),
        ParamDoc::new(
            "entropy_weight",
            "sample entropy added to the reward (1e-4)",
        ),
        ParamDoc::new("baseline_decay", "moving-average baseline decay (0.99)"),
        ParamDoc::new(
            "controller_steps",
            "controller updates after each weight epoch (30)",
        ),
        ParamDoc::new(
            "aggregate",
            "sampled architectures averaged into one update (10)",
        ),
        ParamDoc::new(
            "reward_batches",
            "fresh shuffled validation batches per reward (1)",
        ),
        ParamDoc::new(
            "final_samples",
            "architectures sampled at the end; the best by reward is returned (10)",
        ),
        ParamDoc::new("betas", "Adam (beta1, beta2) (reference [0.0, 0.999])"),
        ParamDoc::new("eps", "Adam epsilon, TensorFlow form (reference 1e-3)"),
        ParamDoc::new(
            "init_range",
            "controller weights ~ U(-r, r) (reference 0.1)",
        ),
        ParamDoc::new("keep", "architectures returned, best first"),
        ParamDoc::new(
            "skip_target",
            "macro only: target skip probability of the KL skip penalty (reference 0.4; paper 0.4)",
        ),
        ParamDoc::new(
            "skip_weight",
            "macro only: weight of the KL skip penalty in the loss (reference 0.8)",
        ),
    ]
}
