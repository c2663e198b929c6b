//! The weight step where the weights lie: on a GPU, one launch over every parameter with the
//! optimizer's state kept in device memory ([`nas_ops::optimizer_step`]), instead of copying
//! every weight and gradient to the host and the weights back each step. Serves the built-in
//! `nas_optim` optimizers: SGD, Adam, AdamW and RMSprop.
//!
//! [`DeviceOptimizer`] wraps the configured optimizer and is itself the trainer's
//! [`Optimizer`]: everything that reads or changes the optimizer's state (a checkpoint's
//! `save_state`, second-order DARTS' `lookahead_direction`, a step on the host, `load_state`)
//! goes through it, and it first brings the wrapped optimizer's state up to date from the
//! device (one copy, through [`nas_optim::FlatState`]). So checkpoints, resumption and the
//! second-order step see exactly what the host path would, and a checkpoint's JSON is the
//! wrapped optimizer's.
//!
//! The arithmetic is `nas_optim`'s (the kernel bodies `nas::sgd_elem`, `adam_elem` and
//! `rmsprop_elem` are tested bit for bit against it, and Adam's bias corrections come from
//! [`nas_optim::adam_bias_corrections`] at each parameter's own step count); on a GPU the
//! compiler may fuse multiply-adds, so values agree with the host path to rounding, not to the
//! bit.
use std::sync::{Mutex, MutexGuard};

use candle_core::{DType, Tensor, Var};
use nas_core::{NasError, Result};
use nas_ops::{AdamRule, RmsPropRule, SgdRule, StepRule, TensorStep};
use nas_optim::{Adam, AdamW, FlatSlot, FlatState, InPlace, Optimizer, RmsProp, Sgd};

use crate::bridge::terr;

/// An optimizer whose steps run on the parameters' device (see the module documentation).
/// Built by [`DeviceOptimizer::wrap`]; the trainers wrap theirs this way when the weights are
/// on a GPU.
pub struct DeviceOptimizer {
    name: String,
    state: Mutex<State>,
}

struct State {
    /// The wrapped optimizer (boxed as the trainer built it); its state is current whenever
    /// `mirror` is `None`.
    inner: Box<dyn Optimizer>,
    /// The state on the device, newer than `inner`'s while present.
    mirror: Option<Mirror>,
    /// The device path refused these parameters once (`nas_ops::optimizer_step` gave
    /// `false`): every later step goes through the host without uploading the state again.
    refused: bool,
}

/// The state of the device steps since the last synchronisation.
struct Mirror {
    /// Every parameter's state in one `f64` vector on the device (`None` when the optimizer
    /// keeps none): `buffers` equal parts of `total` values, parameter `i`'s at `offsets[i]`
    /// in each.
    values: Option<Tensor>,
    buffers: usize,
    total: usize,
    offsets: Vec<usize>,
    lens: Vec<usize>,
    /// Whether parameter `i` has state (the host had it, or a device step started it).
    started: Vec<bool>,
    /// Parameter `i`'s step count.
    steps: Vec<u64>,
}

/// The wrapped optimizer's state, its step rule at `lr` and `grad_scale`, and Adam's betas.
struct View<'a> {
    flat: &'a mut dyn FlatState,
    rule: StepRule,
    betas: Option<[f64; 2]>,
}

/// `optimizer` seen as one of the optimizers the device step serves (SGD, Adam, AdamW,
/// RMSprop), with its rule at `lr` and `grad_scale`; `None` for any other.
fn view(optimizer: &mut dyn Optimizer, lr: f64, grad_scale: f64) -> Option<View<'_>> {
    let any = optimizer.as_any_mut()?;
    if any.is::<Sgd>() {
        let sgd = any.downcast_mut::<Sgd>()?;
        let p = sgd.params().clone();
        let rule = StepRule::Sgd(SgdRule {
            lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            grad_scale,
            nesterov: p.nesterov.into(),
        });
        return Some(View {
            flat: sgd,
            rule,
            betas: None,
        });
    }
    if any.is::<Adam>() || any.is::<AdamW>() {
        let (betas, eps, weight_decay, decoupled) = match any.downcast_ref::<Adam>() {
            Some(a) => {
                let p = a.params();
                (p.betas, p.eps, p.weight_decay, false)
            }
            None => {
                let p = any.downcast_ref::<AdamW>()?.params();
                (p.betas, p.eps, p.weight_decay, true)
            }
        };
        let rule = StepRule::Adam(AdamRule {
            lr,
            beta1: betas[0],
            beta2: betas[1],
            eps,
            weight_decay,
            grad_scale,
            decoupled: decoupled.into(),
        });
        let flat: &mut dyn FlatState = if decoupled {
            any.downcast_mut::<AdamW>()?
        } else {
            any.downcast_mut::<Adam>()?
        };
        return Some(View {
            flat,
            rule,
            betas: Some(betas),
        });
    }
    let rms = any.downcast_mut::<RmsProp>()?;
    let p = rms.params().clone();
    let rule = StepRule::RmsProp(RmsPropRule {
        lr,
        alpha: p.alpha,
        eps: p.eps,
        weight_decay: p.weight_decay,
        momentum: p.momentum,
        grad_scale,
        centered: p.centered.into(),
    });
    Some(View {
        flat: rms,
        rule,
        betas: None,
    })
}

/// Whether the device step serves `optimizer`.
fn is_served(optimizer: &mut dyn Optimizer) -> bool {
    view(optimizer, 0.0, 1.0).is_some()
}

impl DeviceOptimizer {
    /// Wraps `optimizer` when it is `nas_optim`'s SGD, Adam, AdamW or RMSprop; gives it back
    /// unchanged otherwise.
    pub fn wrap(
        mut optimizer: Box<dyn Optimizer>,
    ) -> std::result::Result<Self, Box<dyn Optimizer>> {
        if !is_served(optimizer.as_mut()) {
            return Err(optimizer);
        }
        Ok(DeviceOptimizer {
            name: optimizer.name().to_string(),
            state: Mutex::new(State {
                inner: optimizer,
                mirror: None,
                refused: false,
            }),
        })
    }

    /// `optimizer` made a [`DeviceOptimizer`] when `vars` lie on a GPU and it is one the
    /// device step serves (already wrapped stays wrapped); whether its steps now run on the
    /// device.
    pub(crate) fn prepare(optimizer: &mut Box<dyn Optimizer>, vars: &[(String, Var)]) -> bool {
        if Self::of(optimizer.as_mut()).is_some() {
            return true;
        }
        // Called every step: anything not served, or weights off the GPU, go back at once.
        let on_gpu = vars.first().is_some_and(|(_, v)| v.device().is_cuda());
        if !on_gpu || !is_served(optimizer.as_mut()) {
            return false;
        }
        // A stand-in while the optimizer is moved into its wrapper.
        let Ok(stand_in) = Sgd::new(Default::default()) else {
            return false;
        };
        let taken = std::mem::replace(optimizer, Box::new(stand_in));
        match DeviceOptimizer::wrap(taken) {
            Ok(d) => {
                *optimizer = Box::new(d);
                true
            }
            Err(original) => {
                *optimizer = original;
                false
            }
        }
    }

    /// `optimizer` as a [`DeviceOptimizer`], if it is one.
    pub(crate) fn of(optimizer: &mut dyn Optimizer) -> Option<&mut DeviceOptimizer> {
        optimizer.as_any_mut()?.downcast_mut::<DeviceOptimizer>()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One step of the parameters `vars` (those with `active[i]` only, when given) with the
    /// gradients `grads` (`None`: zeros) scaled by `grad_scale`, at learning rate `lr`, where
    /// the parameters lie. `Ok(false)` when that path does not serve them (nothing changed;
    /// the caller steps through the host).
    pub(crate) fn step_on_device(
        &mut self,
        vars: &[(String, Var)],
        grads: &[Option<Tensor>],
        grad_scale: f64,
        lr: f64,
        active: Option<&[bool]>,
    ) -> Result<bool> {
        if grads.len() != vars.len() {
            return Err(NasError::Other(format!(
                "{} weight gradients for {} parameters",
                grads.len(),
                vars.len()
            )));
        }
        let name = self.name.clone();
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.refused {
            return Ok(false);
        }
        // A mirror made for other parameters (another count or sizes): back to the host
        // first, then uploaded anew, which reports a size that does not fit as the host would.
        let fits = |m: &Mirror| {
            m.lens.len() == vars.len()
                && m.lens
                    .iter()
                    .zip(vars)
                    .all(|(&n, (_, v))| n == v.elem_count())
        };
        if state.mirror.as_ref().is_some_and(|m| !fits(m)) {
            state.sync()?;
        }
        let Some(View { flat, rule, betas }) = view(state.inner.as_mut(), lr, grad_scale) else {
            return Ok(false);
        };
        if state.mirror.is_none() {
            state.mirror = Some(Mirror::upload(&name, flat, vars)?);
        }
        let Some(mirror) = state.mirror.as_mut() else {
            return Ok(false);
        };
        let is_active = |i: usize| active.is_none_or(|a| a.get(i).copied().unwrap_or(false));
        let chosen: Vec<usize> = (0..vars.len()).filter(|&i| is_active(i)).collect();
        let params: Vec<&Var> = chosen.iter().map(|&i| &vars[i].1).collect();
        let grad_refs: Vec<Option<&Tensor>> = chosen.iter().map(|&i| grads[i].as_ref()).collect();
        let offsets: Vec<usize> = chosen.iter().map(|&i| mirror.offsets[i]).collect();
        let tensors: Vec<TensorStep> = chosen
            .iter()
            .map(|&i| {
                let (step_size, bc2_sqrt) = betas.map_or((0.0, 0.0), |b| {
                    nas_optim::adam_bias_corrections(lr, b, mirror.steps[i] + 1)
                });
                TensorStep {
                    first: !mirror.started[i],
                    step_size,
                    bc2_sqrt,
                }
            })
            .collect();
        let values = mirror.values.as_ref().map(|v| (v, offsets.as_slice()));
        let served =
            nas_ops::optimizer_step(&params, &grad_refs, values, &tensors, &rule).map_err(terr)?;
        if !served {
            state.refused = true;
            state.sync()?;
            return Ok(false);
        }
        for &i in &chosen {
            mirror.steps[i] += 1;
            if mirror.buffers > 0 {
                mirror.started[i] = true;
            }
        }
        Ok(true)
    }
}

impl Mirror {
    /// The state of `flat` for the parameters `vars`, on their device, in one copy (zeros
    /// where a parameter has none yet); no values when the optimizer keeps none.
    fn upload(name: &str, flat: &dyn FlatState, vars: &[(String, Var)]) -> Result<Self> {
        let buffers = flat.buffer_names().len();
        let lens: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0usize;
        for &n in &lens {
            offsets.push(total);
            total += n;
        }
        let mut started = vec![false; lens.len()];
        let mut steps = vec![0u64; lens.len()];
        let mut host = vec![0.0f64; buffers * total];
        for (i, (param, _)) in vars.iter().enumerate() {
            let Some(slot) = flat.flat_slot(i) else {
                continue;
            };
            steps[i] = slot.step;
            if buffers == 0 {
                continue;
            }
            for (b, values) in slot.buffers.iter().enumerate().take(buffers) {
                if values.len() != lens[i] {
                    return Err(NasError::Other(format!(
                        "optimizer {name}: parameter {i} (`{param}`) has {} values but its state was created for {}",
                        lens[i],
                        values.len()
                    )));
                }
                host[b * total + offsets[i]..][..lens[i]].copy_from_slice(values);
            }
            started[i] = true;
        }
        let values = if buffers > 0 {
            let device = vars.first().map(|(_, v)| v.device().clone());
            let device = device.unwrap_or(candle_core::Device::Cpu);
            Some(
                Tensor::from_vec(host, buffers * total, &candle_core::Device::Cpu)
                    .and_then(|t| t.to_device(&device))
                    .map_err(terr)?,
            )
        } else {
            None
        };
        Ok(Mirror {
            values,
            buffers,
            total,
            offsets,
            lens,
            started,
            steps,
        })
    }
}

impl State {
    /// Hands the device's state back to the wrapped optimizer (one copy) and forgets the
    /// mirror; the next device step uploads it again. When the copy fails the mirror stays
    /// (the state is still on the device) and nothing changes.
    fn sync(&mut self) -> Result<()> {
        let Some(mirror) = self.mirror.as_ref() else {
            return Ok(());
        };
        let values = match &mirror.values {
            Some(v) => Some(
                v.to_dtype(DType::F64)
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(terr)?,
            ),
            None => None,
        };
        let Some(View { flat, .. }) = view(self.inner.as_mut(), 0.0, 1.0) else {
            return Err(NasError::Other(
                "DeviceOptimizer wraps an optimizer it does not serve".into(),
            ));
        };
        // Every parameter's slot, as a host step would leave them (one per parameter). An
        // optimizer that keeps no state (SGD without momentum) only grows its slots: what they
        // hold stays, as the host's steps leave it.
        for (i, (&o, &n)) in mirror.offsets.iter().zip(&mirror.lens).enumerate() {
            let slot = match &values {
                Some(v) if mirror.started[i] => Some(FlatSlot {
                    step: mirror.steps[i],
                    buffers: (0..mirror.buffers)
                        .map(|b| v[b * mirror.total + o..][..n].to_vec())
                        .collect(),
                }),
                Some(_) => None,
                None if flat.flat_slot(i).is_some() => continue,
                None => None,
            };
            flat.set_flat_slot(i, slot)?;
        }
        self.mirror = None;
        Ok(())
    }

    /// The wrapped optimizer, current.
    fn current(&mut self) -> Result<&mut Box<dyn Optimizer>> {
        self.sync()?;
        Ok(&mut self.inner)
    }
}

impl Optimizer for DeviceOptimizer {
    fn name(&self) -> &str {
        &self.name
    }

    fn base_lr(&self) -> f64 {
        self.lock().inner.base_lr()
    }

    fn step(&mut self, params: &mut [&mut [f64]], grads: &[&[f64]], lr: f64) -> Result<()> {
        self.lock().current()?.step(params, grads, lr)
    }

    fn step_active(
        &mut self,
        params: &mut [&mut [f64]],
        grads: &[&[f64]],
        lr: f64,
        active: &[bool],
    ) -> Result<()> {
        self.lock()
            .current()?
            .step_active(params, grads, lr, active)
    }

    fn updates_in_place(&self) -> bool {
        self.lock().inner.updates_in_place()
    }

    fn step_in_place(&mut self, index: usize, tensor: InPlace<'_>, lr: f64) -> Result<()> {
        self.lock().current()?.step_in_place(index, tensor, lr)
    }

    fn lookahead_direction(&self, index: usize, param: &[f64], grad: &[f64]) -> Vec<f64> {
        let mut state = self.lock();
        if let Err(e) = state.sync() {
            // The trait has no error here; the state stays on the device and the direction
            // is computed from the host's last copy, with a warning.
            tracing::warn!(
                "DeviceOptimizer: the optimizer state could not be read from the device ({e})"
            );
        }
        state.inner.lookahead_direction(index, param, grad)
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn save_state(&self) -> serde_json::Value {
        let mut state = self.lock();
        if let Err(e) = state.sync() {
            // The trait has no error here. A state that `load_state` refuses, naming the
            // cause, rather than the host's stale copy: a resume from it stops with that
            // error instead of going on from an old state.
            tracing::error!(
                "DeviceOptimizer: the optimizer state could not be read from the device ({e})"
            );
            return serde_json::json!({
                "optimizer": self.name,
                "unreadable": format!("the optimizer state could not be read from the GPU: {e}"),
            });
        }
        state.inner.save_state()
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        let mut s = self.lock();
        s.inner.load_state(state)?;
        s.mirror = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_vars() -> Vec<(String, Var)> {
        let t = Tensor::zeros(3, DType::F32, &candle_core::Device::Cpu).unwrap();
        vec![("w".into(), Var::from_tensor(&t).unwrap())]
    }

    #[test]
    fn weights_on_the_cpu_keep_their_optimizer_and_a_wrapped_one_stays_wrapped() {
        let sgd = || nas_optim::build_optimizer("sgd", &serde_json::json!({})).unwrap();
        let mut plain = sgd();
        assert!(!DeviceOptimizer::prepare(&mut plain, &cpu_vars()));
        assert!(
            DeviceOptimizer::of(plain.as_mut()).is_none(),
            "not wrapped on the CPU"
        );
        let mut wrapped: Box<dyn Optimizer> = Box::new(DeviceOptimizer::wrap(sgd()).ok().unwrap());
        assert!(DeviceOptimizer::prepare(&mut wrapped, &cpu_vars()));
        assert!(DeviceOptimizer::of(wrapped.as_mut()).is_some());
    }
}
