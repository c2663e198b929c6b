//! Stochastic gradient descent with momentum, Nesterov momentum and coupled weight decay,
//! with the semantics of PyTorch's `torch.optim.SGD` (dampening 0).
use nas_core::{ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::check::{non_negative, unit_interval};
use crate::flat_state::put;
use crate::in_place::{Element, InPlace, PerTensor};
use crate::optimizer::{grow, load_slots, save_slots};
use crate::Optimizer;

/// Hyper-parameters of [`Sgd`]. The defaults are those DARTS uses for the supernet weights
/// (Liu et al. 2019, reference code `train_search.py`: lr 0.025, momentum 0.9,
/// weight decay 3e-4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdParams {
    /// Base learning rate (>= 0).
    pub lr: f64,
    /// Momentum factor in [0, 1); 0 disables the momentum buffer.
    pub momentum: f64,
    /// L2 penalty added to the gradient (`grad + weight_decay * param`), >= 0.
    pub weight_decay: f64,
    /// Nesterov momentum (Sutskever et al. 2013, PyTorch's formulation); needs momentum > 0.
    pub nesterov: bool,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams {
            lr: 0.025,
            momentum: 0.9,
            weight_decay: 3e-4,
            nesterov: false,
        }
    }
}

impl SgdParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        const C: &str = "optimizer sgd";
        non_negative(C, "lr", self.lr)?;
        unit_interval(C, "momentum", self.momentum)?;
        non_negative(C, "weight_decay", self.weight_decay)?;
        nas_core::params::ensure(
            !self.nesterov || self.momentum > 0.0,
            C,
            "nesterov",
            "Nesterov momentum needs momentum > 0",
        )
    }

    /// Documentation of each key, for `nas describe`.
    pub fn docs() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new(
                "lr",
                "base learning rate, scaled by the schedule (DARTS: 0.025)",
            ),
            ParamDoc::new(
                "momentum",
                "momentum factor in [0, 1); the buffer starts as the first gradient (PyTorch)",
            ),
            ParamDoc::new(
                "weight_decay",
                "L2 penalty added to the gradient, coupled as in torch.optim.SGD (DARTS: 3e-4)",
            ),
            ParamDoc::new(
                "nesterov",
                "Nesterov momentum: step along grad + momentum * buf (needs momentum > 0)",
            ),
        ]
    }
}

/// Per-parameter state: the momentum buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SgdSlot {
    momentum_buffer: Vec<f64>,
}

/// SGD, PyTorch semantics: with `g = grad + wd * p`,
/// `buf = g` on the first step and `buf = momentum * buf + g` afterwards;
/// the step direction is `buf`, or `g + momentum * buf` with Nesterov; `p -= lr * direction`.
#[derive(Debug, Clone)]
pub struct Sgd {
    params: SgdParams,
    slots: Vec<Option<SgdSlot>>,
}

impl Sgd {
    /// A new SGD optimizer; fails when a hyper-parameter is out of range.
    pub fn new(params: SgdParams) -> Result<Self> {
        params.check()?;
        Ok(Sgd {
            params,
            slots: Vec::new(),
        })
    }

    /// The hyper-parameters.
    pub fn params(&self) -> &SgdParams {
        &self.params
    }

    /// The momentum buffer of parameter `index`, if it exists yet.
    pub fn momentum_buffer(&self, index: usize) -> Option<&[f64]> {
        self.slots
            .get(index)
            .and_then(|s| s.as_ref())
            .map(|s| s.momentum_buffer.as_slice())
    }
}

impl Sgd {
    /// Number of parameter indices with a state slot (stepped or not).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Replaces the momentum buffer of parameter `index` (`None`: not stepped yet, the next
    /// step starts it), as a device-side step hands its buffers back
    /// (`nas_trainer`'s GPU weight step). The buffer's length must be the parameter's; the
    /// next step checks it as for any state.
    pub fn set_momentum_buffer(&mut self, index: usize, buffer: Option<Vec<f64>>) {
        put(
            &mut self.slots,
            index,
            buffer.map(|momentum_buffer| SgdSlot { momentum_buffer }),
        );
    }
}

impl PerTensor for Sgd {
    fn label(&self) -> &'static str {
        "sgd"
    }

    fn state_len(&self, index: usize) -> Option<usize> {
        self.momentum_buffer(index).map(<[f64]>::len)
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
        let SgdParams {
            momentum,
            weight_decay: wd,
            nesterov,
            ..
        } = self.params;
        if momentum == 0.0 {
            for (p, &g) in p.iter_mut().zip(g) {
                let x = p.get();
                *p = P::from_f64(x - lr * (g.get() * grad_scale + wd * x));
            }
            return;
        }
        let slot = &mut self.slots[index];
        let first = slot.is_none();
        let buf = &mut slot
            .get_or_insert_with(|| SgdSlot {
                momentum_buffer: vec![0.0; p.len()],
            })
            .momentum_buffer;
        for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
            let x = p.get();
            let d = g.get() * grad_scale + wd * x;
            *b = if first { d } else { momentum * *b + d };
            let dir = if nesterov { d + momentum * *b } else { *b };
            *p = P::from_f64(x - lr * dir);
        }
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "sgd"
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
        let SgdParams {
            momentum,
            weight_decay: wd,
            nesterov,
            ..
        } = self.params;
        let buf = self
            .momentum_buffer(index)
            .filter(|b| b.len() == param.len());
        param
            .iter()
            .zip(grad)
            .enumerate()
            .map(|(j, (&p, &g))| {
                let d = g + wd * p;
                if momentum == 0.0 {
                    return d;
                }
                // The buffer the next step would hold (it starts as the first gradient).
                let next = buf.map_or(d, |b| momentum * b[j] + d);
                if nesterov {
                    d + momentum * next
                } else {
                    next
                }
            })
            .collect()
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn save_state(&self) -> serde_json::Value {
        save_slots("sgd", &self.slots)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.slots = load_slots("sgd", state)?;
        Ok(())
    }
}
