//! The weight step of SGD where the weights lie: on a GPU, one launch over every parameter
//! with the momentum buffers kept in device memory ([`nas_ops::sgd_step`]), instead of
//! copying every weight and gradient to the host and the weights back each step.
//!
//! [`DeviceSgd`] wraps the configured `nas_optim::Sgd` and is itself the trainer's
//! [`Optimizer`]: everything that reads or changes the optimizer's state (a checkpoint's
//! `save_state`, second-order DARTS' `lookahead_direction`, a step on the host, `load_state`)
//! goes through it, and it first brings the wrapped optimizer's momentum buffers up to date
//! from the device (one copy). So checkpoints, resumption and the second-order step see
//! exactly what the host path would, and a checkpoint's JSON is the plain SGD's.
//!
//! The arithmetic is `nas_optim::Sgd`'s (the kernel body `nas::sgd_elem` is tested bit for
//! bit against it); on a GPU the compiler may fuse multiply-adds, so values agree with the
//! host path to rounding, not to the bit.
use std::sync::{Mutex, MutexGuard};

use candle_core::{DType, Tensor, Var};
use nas_core::{NasError, Result};
use nas_optim::{InPlace, Optimizer, Sgd};

use crate::bridge::terr;

/// SGD whose steps run on the parameters' device (see the module documentation). Built by
/// [`DeviceSgd::wrap`]; the trainers wrap their SGD this way when the weights are on a GPU.
pub struct DeviceSgd {
    state: Mutex<State>,
}

struct State {
    /// The wrapped `nas_optim::Sgd` (boxed as the trainer built it); its momentum buffers are
    /// current whenever `mirror` is `None`.
    inner: Box<dyn Optimizer>,
    /// The momentum buffers on the device, newer than `inner`'s while present.
    mirror: Option<Mirror>,
    /// The device path refused these parameters once (`nas_ops::sgd_step` gave `false`):
    /// every later step goes through the host without uploading the buffers again.
    refused: bool,
}

/// The state of the device steps since the last synchronisation.
struct Mirror {
    /// Every parameter's momentum buffer in one `f64` vector on the device (`None` without
    /// momentum), parameter `i`'s at `offsets[i]`.
    buffers: Option<Tensor>,
    offsets: Vec<usize>,
    lens: Vec<usize>,
    /// Whether buffer `i` holds state (the host had one, or a device step started it).
    started: Vec<bool>,
}

impl DeviceSgd {
    /// Wraps `optimizer` when it is `nas_optim::Sgd`; gives it back unchanged otherwise.
    pub fn wrap(
        mut optimizer: Box<dyn Optimizer>,
    ) -> std::result::Result<Self, Box<dyn Optimizer>> {
        if !is_sgd(optimizer.as_mut()) {
            return Err(optimizer);
        }
        Ok(DeviceSgd {
            state: Mutex::new(State {
                inner: optimizer,
                mirror: None,
                refused: false,
            }),
        })
    }

    /// `optimizer` made a [`DeviceSgd`] when `vars` lie on a GPU and it is SGD (already
    /// wrapped stays wrapped); whether its steps now run on the device.
    pub(crate) fn prepare(optimizer: &mut Box<dyn Optimizer>, vars: &[(String, Var)]) -> bool {
        if Self::of(optimizer.as_mut()).is_some() {
            return true;
        }
        // Called every step: anything but SGD on a GPU goes back at once, nothing built.
        let on_gpu = vars.first().is_some_and(|(_, v)| v.device().is_cuda());
        if !on_gpu || !is_sgd(optimizer.as_mut()) {
            return false;
        }
        // A stand-in while the optimizer is moved into its wrapper.
        let Ok(stand_in) = Sgd::new(Default::default()) else {
            return false;
        };
        let taken = std::mem::replace(optimizer, Box::new(stand_in));
        match DeviceSgd::wrap(taken) {
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

    /// `optimizer` as a [`DeviceSgd`], if it is one.
    pub(crate) fn of(optimizer: &mut dyn Optimizer) -> Option<&mut DeviceSgd> {
        optimizer.as_any_mut()?.downcast_mut::<DeviceSgd>()
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
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.refused {
            return Ok(false);
        }
        // A mirror made for other parameters (another count or sizes): back to the host
        // first, then uploaded anew, which reports a size that does not fit as Sgd would.
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
        let Some(sgd) = state
            .inner
            .as_any_mut()
            .and_then(|a| a.downcast_mut::<Sgd>())
        else {
            return Ok(false);
        };
        let p = sgd.params().clone();
        if state.mirror.is_none() {
            state.mirror = Some(Mirror::upload(sgd, vars, p.momentum != 0.0)?);
        }
        let Some(mirror) = state.mirror.as_mut() else {
            return Ok(false);
        };
        let is_active = |i: usize| active.is_none_or(|a| a.get(i).copied().unwrap_or(false));
        let chosen: Vec<usize> = (0..vars.len()).filter(|&i| is_active(i)).collect();
        let params: Vec<&Var> = chosen.iter().map(|&i| &vars[i].1).collect();
        let grad_refs: Vec<Option<&Tensor>> = chosen.iter().map(|&i| grads[i].as_ref()).collect();
        let offsets: Vec<usize> = chosen.iter().map(|&i| mirror.offsets[i]).collect();
        let first: Vec<bool> = chosen.iter().map(|&i| !mirror.started[i]).collect();
        let rule = nas_ops::SgdRule {
            lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            grad_scale,
            nesterov: p.nesterov.into(),
        };
        let momentum = mirror.buffers.as_ref().map(|b| (b, offsets.as_slice()));
        let served =
            nas_ops::sgd_step(&params, &grad_refs, momentum, &first, &rule).map_err(terr)?;
        if !served {
            state.refused = true;
            state.sync()?;
            return Ok(false);
        }
        if mirror.buffers.is_some() {
            for &i in &chosen {
                mirror.started[i] = true;
            }
        }
        Ok(true)
    }
}

/// Whether `optimizer` is `nas_optim::Sgd`.
fn is_sgd(optimizer: &mut dyn Optimizer) -> bool {
    optimizer.as_any_mut().is_some_and(|a| a.is::<Sgd>())
}

impl Mirror {
    /// The momentum buffers of `sgd` for the parameters `vars`, on their device, in one copy
    /// (zeros where a parameter has none yet); no buffers without momentum.
    fn upload(sgd: &Sgd, vars: &[(String, Var)], momentum: bool) -> Result<Self> {
        let lens: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0usize;
        for &n in &lens {
            offsets.push(total);
            total += n;
        }
        let mut started = vec![false; lens.len()];
        let buffers = if momentum {
            let mut flat = vec![0.0f64; total];
            for (i, (name, _)) in vars.iter().enumerate() {
                if let Some(b) = sgd.momentum_buffer(i) {
                    if b.len() != lens[i] {
                        return Err(NasError::Other(format!(
                            "optimizer sgd: parameter {i} (`{name}`) has {} values but its state was created for {}",
                            lens[i],
                            b.len()
                        )));
                    }
                    flat[offsets[i]..offsets[i] + lens[i]].copy_from_slice(b);
                    started[i] = true;
                }
            }
            let device = vars.first().map(|(_, v)| v.device().clone());
            let device = device.unwrap_or(candle_core::Device::Cpu);
            Some(
                Tensor::from_vec(flat, total, &candle_core::Device::Cpu)
                    .and_then(|t| t.to_device(&device))
                    .map_err(terr)?,
            )
        } else {
            None
        };
        Ok(Mirror {
            buffers,
            offsets,
            lens,
            started,
        })
    }
}

impl State {
    /// Hands the device's momentum buffers back to the wrapped SGD (one copy) and forgets
    /// the mirror; the next device step uploads them again. When the copy fails the mirror
    /// stays (the state is still on the device) and nothing changes.
    fn sync(&mut self) -> Result<()> {
        let Some(mirror) = self.mirror.as_ref() else {
            return Ok(());
        };
        let values = match &mirror.buffers {
            Some(b) => Some(
                b.to_dtype(DType::F64)
                    .and_then(|t| t.to_vec1::<f64>())
                    .map_err(terr)?,
            ),
            None => None,
        };
        let Some(sgd) = self
            .inner
            .as_any_mut()
            .and_then(|a| a.downcast_mut::<Sgd>())
        else {
            return Err(NasError::Other(
                "DeviceSgd wraps something other than SGD".into(),
            ));
        };
        // Every parameter's slot, as a host step would leave them (one per parameter);
        // without momentum the slots only grow, what they hold stays.
        for (i, (&o, &n)) in mirror.offsets.iter().zip(&mirror.lens).enumerate() {
            let buffer = match &values {
                Some(v) if mirror.started[i] => Some(v[o..o + n].to_vec()),
                Some(_) => None,
                None => sgd.momentum_buffer(i).map(<[f64]>::to_vec),
            };
            sgd.set_momentum_buffer(i, buffer);
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

impl Optimizer for DeviceSgd {
    fn name(&self) -> &str {
        "sgd"
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
            tracing::warn!("DeviceSgd: momentum buffers could not be read from the device ({e})");
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
            // error instead of going on from old momentum buffers.
            tracing::error!("DeviceSgd: momentum buffers could not be read from the device ({e})");
            return serde_json::json!({
                "optimizer": "sgd",
                "unreadable": format!("the momentum buffers could not be read from the GPU: {e}"),
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
        assert!(!DeviceSgd::prepare(&mut plain, &cpu_vars()));
        assert!(
            DeviceSgd::of(plain.as_mut()).is_none(),
            "not wrapped on the CPU"
        );
        let mut wrapped: Box<dyn Optimizer> = Box::new(DeviceSgd::wrap(sgd()).ok().unwrap());
        assert!(DeviceSgd::prepare(&mut wrapped, &cpu_vars()));
        assert!(DeviceSgd::of(wrapped.as_mut()).is_some());
    }
}
