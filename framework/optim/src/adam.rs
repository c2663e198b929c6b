//! Adam (Kingma & Ba 2015) with coupled L2 weight decay, as `torch.optim.Adam`, and AdamW
//! (Loshchilov & Hutter 2019) with decoupled weight decay, as `torch.optim.AdamW`.
use nas_core::{ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::check::{non_negative, positive, unit_interval};
use crate::flat_state::put;
use crate::in_place::{Element, InPlace, PerTensor};
use crate::optimizer::{ensure_same_len, grow, load_slots, save_slots};
use crate::Optimizer;

/// Hyper-parameters of [`Adam`] and [`AdamW`]. The defaults are PyTorch's, except that
/// `weight_decay` defaults to 0 for Adam and 0.01 for AdamW (also PyTorch's). DARTS
/// optimises its architecture logits with Adam, lr 3e-4, betas (0.5, 0.999), weight decay
/// 1e-3 (Liu et al. 2019, `train_search.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamParams {
    /// Base learning rate (>= 0).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Added to the denominator for numerical stability (> 0).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Weight decay (>= 0): coupled L2 for Adam, decoupled for AdamW.
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_lr() -> f64 {
    1e-3
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: 0.0,
        }
    }
}

/// Hyper-parameters of [`AdamW`]: those of Adam with PyTorch's AdamW default decay 0.01.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWParams {
    /// Base learning rate (>= 0).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Decay rates of the first and second moment estimates, each in [0, 1).
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Added to the denominator for numerical stability (> 0).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay (>= 0): `param *= 1 - lr * weight_decay` before the update.
    #[serde(default = "default_adamw_decay")]
    pub weight_decay: f64,
}

fn default_adamw_decay() -> f64 {
    1e-2
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_adamw_decay(),
        }
    }
}

impl AdamParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        check_common(
            "optimizer adam",
            self.lr,
            self.betas,
            self.eps,
            self.weight_decay,
        )
    }

    /// Documentation of each key, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        docs(
            "L2 penalty added to the gradient, coupled as in torch.optim.Adam (DARTS alphas: 1e-3)",
        )
    }
}

impl AdamWParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        check_common(
            "optimizer adamw",
            self.lr,
            self.betas,
            self.eps,
            self.weight_decay,
        )
    }

    /// Documentation of each key, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        docs("decoupled weight decay: param *= 1 - lr * weight_decay (Loshchilov & Hutter 2019)")
    }
}

fn check_common(c: &str, lr: f64, betas: [f64; 2], eps: f64, wd: f64) -> Result<()> {
    non_negative(c, "lr", lr)?;
    unit_interval(c, "betas[0]", betas[0])?;
    unit_interval(c, "betas[1]", betas[1])?;
    positive(c, "eps", eps)?;
    non_negative(c, "weight_decay", wd)
}

fn docs(weight_decay: &str) -> Vec<ParamDoc> {
    vec![
        ParamDoc::new(
            "lr",
            "base learning rate, scaled by the schedule (DARTS alphas: 3e-4)",
        ),
        ParamDoc::new(
            "betas",
            "[beta1, beta2]: decay of the moment estimates (DARTS alphas: [0.5, 0.999])",
        ),
        ParamDoc::new("eps", "added to the denominator sqrt(v_hat) + eps"),
        ParamDoc::new("weight_decay", weight_decay),
    ]
}

/// Per-parameter state: step count and the two moment estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AdamSlot {
    step: u64,
    exp_avg: Vec<f64>,
    exp_avg_sq: Vec<f64>,
}

/// Adam's bias corrections at step `step` (1 for the first): the step size
/// `lr / (1 - beta1^step)` and `sqrt(1 - beta2^step)`, as `torch.optim.Adam` computes them
/// (Kingma & Ba 2015, Algorithm 1). A step taken elsewhere (the GPU weight step) computes them
/// here, so that its values are the host's.
pub fn adam_bias_corrections(lr: f64, betas: [f64; 2], step: u64) -> (f64, f64) {
    let t = step as f64;
    let bc1 = 1.0 - betas[0].powf(t);
    let bc2_sqrt = (1.0 - betas[1].powf(t)).sqrt();
    (lr / bc1, bc2_sqrt)
}

/// The update shared by Adam and AdamW; `decoupled` selects AdamW's weight decay.
#[derive(Debug, Clone)]
struct AdamCore {
    name: &'static str,
    lr: f64,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    slots: Vec<Option<AdamSlot>>,
}

impl AdamCore {
    fn slot(&self, index: usize) -> Option<&AdamSlot> {
        self.slots.get(index).and_then(|s| s.as_ref())
    }

    fn lookahead_direction(&self, index: usize, param: &[f64], grad: &[f64]) -> Vec<f64> {
        let [b1, b2] = self.betas;
        let slot = self.slot(index).filter(|s| s.exp_avg.len() == param.len());
        let t = slot.map_or(0, |s| s.step) as f64 + 1.0;
        let bc1 = 1.0 - b1.powf(t);
        let bc2_sqrt = (1.0 - b2.powf(t)).sqrt();
        param
            .iter()
            .zip(grad)
            .enumerate()
            .map(|(j, (&p, &g))| {
                let (m0, v0) = slot.map_or((0.0, 0.0), |s| (s.exp_avg[j], s.exp_avg_sq[j]));
                let grad = if self.decoupled {
                    g
                } else {
                    g + self.weight_decay * p
                };
                let m = b1 * m0 + (1.0 - b1) * grad;
                let v = b2 * v0 + (1.0 - b2) * grad * grad;
                let update = m / bc1 / (v.sqrt() / bc2_sqrt + self.eps);
                // AdamW: p(1 - lr wd) - lr u = p - lr (wd p + u).
                if self.decoupled {
                    update + self.weight_decay * p
                } else {
                    update
                }
            })
            .collect()
    }
}

/// One parameter's state: step count, `exp_avg`, `exp_avg_sq`.
type SlotParts<'a> = (u64, &'a [f64], &'a [f64]);

macro_rules! impl_flat_access {
    ($ty:ty) => {
        impl $ty {
            /// The name of the optimizer ("adam" or "adamw").
            pub(crate) fn core_name(&self) -> &'static str {
                self.core.name
            }

            /// Parameter `index`'s state, if it has one.
            pub(crate) fn core_slot(&self, index: usize) -> Option<SlotParts<'_>> {
                self.core
                    .slot(index)
                    .map(|s| (s.step, s.exp_avg.as_slice(), s.exp_avg_sq.as_slice()))
            }

            /// Replaces parameter `index`'s state, growing the slots.
            pub(crate) fn set_core_slot(
                &mut self,
                index: usize,
                state: Option<(u64, Vec<f64>, Vec<f64>)>,
            ) {
                let slot = state.map(|(step, exp_avg, exp_avg_sq)| AdamSlot {
                    step,
                    exp_avg,
                    exp_avg_sq,
                });
                put(&mut self.core.slots, index, slot);
            }
        }
    };
}

impl_flat_access!(Adam);
impl_flat_access!(AdamW);

impl PerTensor for AdamCore {
    fn label(&self) -> &'static str {
        self.name
    }

    fn state_len(&self, index: usize) -> Option<usize> {
        self.slot(index).map(|s| s.exp_avg.len())
    }

    fn grow_slots(&mut self, n: usize) {
        grow(&mut self.slots, n);
    }

    fn update<P: Element, G: Element>(
        &mut self,
        index: usize,
        p: &mut [P],
        g: &[G],
        grad_scale: f64,
        lr: f64,
    ) {
        let [b1, b2] = self.betas;
        let (eps, wd, decoupled) = (self.eps, self.weight_decay, self.decoupled);
        let s = self.slots[index].get_or_insert_with(|| AdamSlot {
            step: 0,
            exp_avg: vec![0.0; p.len()],
            exp_avg_sq: vec![0.0; p.len()],
        });
        s.step += 1;
        let (step_size, bc2_sqrt) = adam_bias_corrections(lr, self.betas, s.step);
        for (j, (p, &g)) in p.iter_mut().zip(g).enumerate() {
            let mut x = p.get();
            let mut grad = g.get() * grad_scale;
            if decoupled {
                x *= 1.0 - lr * wd;
            } else {
                grad += wd * x;
            }
            let m = b1 * s.exp_avg[j] + (1.0 - b1) * grad;
            let v = b2 * s.exp_avg_sq[j] + (1.0 - b2) * grad * grad;
            s.exp_avg[j] = m;
            s.exp_avg_sq[j] = v;
            *p = P::from_f64(x - step_size * m / (v.sqrt() / bc2_sqrt + eps));
        }
    }
}

/// Adam with coupled L2 weight decay, as `torch.optim.Adam` (amsgrad off): with
/// `g = grad + wd * p` and step count `t`, `m = b1 m + (1 - b1) g`,
/// `v = b2 v + (1 - b2) g^2`, `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
#[derive(Debug, Clone)]
pub struct Adam {
    params: AdamParams,
    core: AdamCore,
}

impl Adam {
    /// A new Adam optimizer; fails when a hyper-parameter is out of range.
    pub fn new(params: AdamParams) -> Result<Self> {
        params.check()?;
        let core = AdamCore {
            name: "adam",
            lr: params.lr,
            betas: params.betas,
            eps: params.eps,
            weight_decay: params.weight_decay,
            decoupled: false,
            slots: Vec::new(),
        };
        Ok(Adam { params, core })
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &AdamParams {
        &self.params
    }
}

/// AdamW, as `torch.optim.AdamW` (amsgrad off): `p *= 1 - lr * wd`, then the Adam update
/// with the plain gradient.
#[derive(Debug, Clone)]
pub struct AdamW {
    params: AdamWParams,
    core: AdamCore,
}

impl AdamW {
    /// A new AdamW optimizer; fails when a hyper-parameter is out of range.
    pub fn new(params: AdamWParams) -> Result<Self> {
        params.check()?;
        let core = AdamCore {
            name: "adamw",
            lr: params.lr,
            betas: params.betas,
            eps: params.eps,
            weight_decay: params.weight_decay,
            decoupled: true,
            slots: Vec::new(),
        };
        Ok(AdamW { params, core })
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &AdamWParams {
        &self.params
    }
}

macro_rules! impl_adam_optimizer {
    ($ty:ty) => {
        impl Optimizer for $ty {
            fn name(&self) -> &str {
                self.core.name
            }

            fn base_lr(&self) -> f64 {
                self.core.lr
            }

            fn step(&mut self, params: &mut [&mut [f64]], grads: &[&[f64]], lr: f64) -> Result<()> {
                self.core
                    .step_active_per_tensor(params, grads, lr, &vec![true; params.len()])
            }

            fn step_active(
                &mut self,
                params: &mut [&mut [f64]],
                grads: &[&[f64]],
                lr: f64,
                active: &[bool],
            ) -> Result<()> {
                self.core.step_active_per_tensor(params, grads, lr, active)
            }

            fn updates_in_place(&self) -> bool {
                true
            }

            fn step_in_place(&mut self, index: usize, tensor: InPlace<'_>, lr: f64) -> Result<()> {
                self.core.step_in_place_per_tensor(index, tensor, lr)
            }

            fn lookahead_direction(&self, index: usize, param: &[f64], grad: &[f64]) -> Vec<f64> {
                self.core.lookahead_direction(index, param, grad)
            }

            fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
                Some(self)
            }

            fn save_state(&self) -> serde_json::Value {
                save_slots(self.core.name, &self.core.slots)
            }

            fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
                let slots: Vec<Option<AdamSlot>> = load_slots(self.core.name, state)?;
                for (i, s) in slots.iter().enumerate() {
                    if let Some(s) = s {
                        ensure_same_len(
                            self.core.name,
                            i,
                            "exp_avg_sq",
                            s.exp_avg.len(),
                            s.exp_avg_sq.len(),
                        )?;
                    }
                }
                self.core.slots = slots;
                Ok(())
            }
        }
    };
}

impl_adam_optimizer!(Adam);
impl_adam_optimizer!(AdamW);
