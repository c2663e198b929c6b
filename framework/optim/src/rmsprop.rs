//! RMSprop (Hinton, Coursera lecture 6e), with the semantics and defaults of PyTorch's
//! `torch.optim.RMSprop` (alpha 0.99, eps 1e-8, momentum 0, centered false).
use nas_core::{ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::check::{non_negative, positive, unit_interval};
use crate::flat_state::put;
use crate::in_place::{Element, InPlace, PerTensor};
use crate::optimizer::{ensure_same_len, grow, load_slots, save_slots};
use crate::Optimizer;

/// Hyper-parameters of [`RmsProp`]; defaults are PyTorch's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropParams {
    /// Base learning rate (>= 0).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average, in [0, 1).
    pub alpha: f64,
    /// Added to the denominator for numerical stability (> 0).
    pub eps: f64,
    /// L2 penalty added to the gradient (coupled), >= 0.
    pub weight_decay: f64,
    /// Momentum factor in [0, 1); 0 disables the momentum buffer.
    pub momentum: f64,
    /// Centered RMSprop: normalise by an estimate of the gradient's variance.
    pub centered: bool,
}

impl Default for RmsPropParams {
    fn default() -> Self {
        RmsPropParams {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        const C: &str = "optimizer rmsprop";
        non_negative(C, "lr", self.lr)?;
        unit_interval(C, "alpha", self.alpha)?;
        positive(C, "eps", self.eps)?;
        non_negative(C, "weight_decay", self.weight_decay)?;
        unit_interval(C, "momentum", self.momentum)
    }

    /// Documentation of each key, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "lr",
                "base learning rate, scaled by the schedule (PyTorch: 0.01)",
            ),
            ParamDoc::new(
                "alpha",
                "smoothing constant of the squared-gradient average",
            ),
            ParamDoc::new("eps", "added to the denominator sqrt(avg) + eps"),
            ParamDoc::new("weight_decay", "L2 penalty added to the gradient (coupled)"),
            ParamDoc::new(
                "momentum",
                "momentum factor in [0, 1); the buffer starts at zero",
            ),
            ParamDoc::new(
                "centered",
                "divide by sqrt(E[g^2] - E[g]^2) + eps instead of sqrt(E[g^2]) + eps",
            ),
        ]
    }
}

/// One parameter's state, borrowed: step, square_avg, grad_avg, momentum_buffer.
pub(crate) type RmsParts<'a> = (u64, &'a [f64], Option<&'a [f64]>, Option<&'a [f64]>);
/// One parameter's state, owned: step, square_avg, grad_avg, momentum_buffer.
pub(crate) type RmsOwned = (u64, Vec<f64>, Option<Vec<f64>>, Option<Vec<f64>>);

/// Per-parameter state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RmsSlot {
    step: u64,
    square_avg: Vec<f64>,
    /// Only with momentum > 0.
    #[serde(default)]
    momentum_buffer: Option<Vec<f64>>,
    /// Only when centered.
    #[serde(default)]
    grad_avg: Option<Vec<f64>>,
}

/// RMSprop, PyTorch semantics: with `g = grad + wd * p`,
/// `sq = alpha sq + (1 - alpha) g^2` (starting at 0), `avg = sqrt(sq) + eps` (centered:
/// `ga = alpha ga + (1 - alpha) g`, `avg = sqrt(sq - ga^2) + eps`); with momentum
/// `buf = momentum buf + g / avg` (starting at 0) and `p -= lr * buf`, otherwise
/// `p -= lr * g / avg`. (Centered: `sq - ga^2`, a variance, is clamped at 0 against rounding.)
#[derive(Debug, Clone)]
pub struct RmsProp {
    params: RmsPropParams,
    slots: Vec<Option<RmsSlot>>,
}

impl RmsProp {
    /// A new RMSprop optimizer; fails when a hyper-parameter is out of range.
    pub fn new(params: RmsPropParams) -> Result<Self> {
        params.check()?;
        Ok(RmsProp {
            params,
            slots: Vec::new(),
        })
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &RmsPropParams {
        &self.params
    }

    /// Parameter `index`'s state, if it has one: step count, `square_avg`, `grad_avg` (when
    /// centered), `momentum_buffer` (with momentum).
    pub(crate) fn slot_parts(&self, index: usize) -> Option<RmsParts<'_>> {
        self.slot(index).map(|s| {
            (
                s.step,
                s.square_avg.as_slice(),
                s.grad_avg.as_deref(),
                s.momentum_buffer.as_deref(),
            )
        })
    }

    /// Replaces parameter `index`'s state, growing the slots.
    pub(crate) fn set_slot_parts(&mut self, index: usize, state: Option<RmsOwned>) {
        let slot = state.map(|(step, square_avg, grad_avg, momentum_buffer)| RmsSlot {
            step,
            square_avg,
            momentum_buffer,
            grad_avg,
        });
        put(&mut self.slots, index, slot);
    }

    fn slot(&self, index: usize) -> Option<&RmsSlot> {
        self.slots.get(index).and_then(|s| s.as_ref())
    }

    /// One element's update: returns (new square_avg, new grad_avg, new buffer, direction).
    fn element(&self, p: f64, g: f64, sq: f64, ga: f64, buf: f64) -> (f64, f64, f64, f64) {
        let RmsPropParams {
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            ..
        } = self.params;
        let g = g + weight_decay * p;
        let sq = alpha * sq + (1.0 - alpha) * g * g;
        let (ga, avg) = if centered {
            let ga = alpha * ga + (1.0 - alpha) * g;
            (ga, (sq - ga * ga).max(0.0).sqrt() + eps)
        } else {
            (ga, sq.sqrt() + eps)
        };
        if momentum > 0.0 {
            let buf = momentum * buf + g / avg;
            (sq, ga, buf, buf)
        } else {
            (sq, ga, buf, g / avg)
        }
    }
}

impl PerTensor for RmsProp {
    fn label(&self) -> &'static str {
        "rmsprop"
    }

    fn state_len(&self, index: usize) -> Option<usize> {
        self.slot(index).map(|s| s.square_avg.len())
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
        let (momentum, centered) = (self.params.momentum, self.params.centered);
        let mut s = self.slots[index].take().unwrap_or_else(|| RmsSlot {
            step: 0,
            square_avg: vec![0.0; p.len()],
            momentum_buffer: (momentum > 0.0).then(|| vec![0.0; p.len()]),
            grad_avg: centered.then(|| vec![0.0; p.len()]),
        });
        s.step += 1;
        for (j, (p, &g)) in p.iter_mut().zip(g).enumerate() {
            let x = p.get();
            let ga = s.grad_avg.as_ref().map_or(0.0, |v| v[j]);
            let buf = s.momentum_buffer.as_ref().map_or(0.0, |v| v[j]);
            let (sq, ga, buf, dir) =
                self.element(x, g.get() * grad_scale, s.square_avg[j], ga, buf);
            s.square_avg[j] = sq;
            if let Some(v) = s.grad_avg.as_mut() {
                v[j] = ga;
            }
            if let Some(v) = s.momentum_buffer.as_mut() {
                v[j] = buf;
            }
            *p = P::from_f64(x - lr * dir);
        }
        self.slots[index] = Some(s);
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "rmsprop"
    }

    fn base_lr(&self) -> f64 {
        self.params.lr
    }

    fn step(&mut self, params: &mut [&mut [f64]], grads: &[&[f64]], lr: f64) -> Result<()> {
        self.step_active(params, grads, lr, &vec![true; params.len()])
    }

    fn step_active(
        &mut self,
        params: &mut [&mut [f64]],
        grads: &[&[f64]],
        lr: f64,
        active: &[bool],
    ) -> Result<()> {
        self.step_active_per_tensor(params, grads, lr, active)
    }

    fn updates_in_place(&self) -> bool {
        true
    }

    fn step_in_place(&mut self, index: usize, tensor: InPlace<'_>, lr: f64) -> Result<()> {
        self.step_in_place_per_tensor(index, tensor, lr)
    }

    fn lookahead_direction(&self, index: usize, param: &[f64], grad: &[f64]) -> Vec<f64> {
        let slot = self
            .slot(index)
            .filter(|s| s.square_avg.len() == param.len());
        param
            .iter()
            .zip(grad)
            .enumerate()
            .map(|(j, (&p, &g))| {
                let sq = slot.map_or(0.0, |s| s.square_avg[j]);
                let ga = slot.and_then(|s| s.grad_avg.as_ref()).map_or(0.0, |v| v[j]);
                let buf = slot
                    .and_then(|s| s.momentum_buffer.as_ref())
                    .map_or(0.0, |v| v[j]);
                self.element(p, g, sq, ga, buf).3
            })
            .collect()
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn save_state(&self) -> serde_json::Value {
        save_slots("rmsprop", &self.slots)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let mut slots: Vec<Option<RmsSlot>> = load_slots("rmsprop", state)?;
        let (momentum, centered) = (self.params.momentum, self.params.centered);
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            let n = s.square_avg.len();
            // A buffer this configuration uses must be there with the right length; one it
            // does not use is dropped.
            for (key, buf, used) in [
                ("momentum_buffer", &mut s.momentum_buffer, momentum > 0.0),
                ("grad_avg", &mut s.grad_avg, centered),
            ] {
                if !used {
                    *buf = None;
                    continue;
                }
                nas_core::params::ensure(
                    buf.is_some(),
                    "rmsprop optimizer state",
                    &format!("slots[{i}].{key}"),
                    "missing (the state was saved with other momentum/centered settings)",
                )?;
                ensure_same_len("rmsprop", i, key, n, buf.as_ref().map_or(0, Vec::len))?;
            }
        }
        self.slots = slots;
        Ok(())
    }
}
