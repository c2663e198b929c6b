//! The weight update of a training step, on the network's own tensors.
//!
//! With an optimizer that [updates in place](nas_optim::Optimizer::updates_in_place) and a
//! CPU device, each parameter's storage is updated where it lies (a candle in-place op),
//! reading its gradient's storage directly: no copy of the weights or gradients is made,
//! and the values are exactly those of the copying path (the optimizers compute in `f64`
//! either way). Otherwise (an optimizer written elsewhere, a GPU device) the weights and
//! gradients are copied into `f64` buffers, stepped, and written back.
use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Storage, Tensor, Var};
use nas_core::{NasError, Result};
use nas_optim::{clip_coefficient, GradsRef, InPlace, Optimizer, ParamsMut};

use crate::bridge::{set_vars, terr, to_f64, to_f64_all};
use crate::device_optimizer::DeviceOptimizer;

/// The weights' gradients, one entry per parameter in creation order.
pub(crate) enum WeightGrads {
    /// From one backward pass: `None` where the loss does not depend on the parameter (it
    /// has no gradient, PyTorch's `.grad is None`), which counts as zeros.
    Tensors(Vec<Option<Tensor>>),
    /// Summed over several backward passes (FairNAS's paths on one batch), in `f64`.
    Summed(Vec<Vec<f64>>),
}

impl WeightGrads {
    /// The gradients as `f64` buffers (zeros where there is none); `vars` gives the lengths.
    /// Off the CPU the gradients come over in one transfer ([`to_f64_all`]).
    pub(crate) fn into_f64(self, vars: &[(String, Var)]) -> Result<Vec<Vec<f64>>> {
        match self {
            WeightGrads::Summed(g) => Ok(g),
            WeightGrads::Tensors(g) => {
                let present: Vec<&Tensor> = g.iter().flatten().collect();
                let mut values = to_f64_all(&present)?.into_iter();
                g.iter()
                    .zip(vars)
                    .map(|(g, (_, v))| match g {
                        Some(_) => values.next().ok_or_else(|| {
                            NasError::Other("a weight gradient went missing".into())
                        }),
                        None => Ok(vec![0.0; v.elem_count()]),
                    })
                    .collect()
            }
        }
    }

    /// The gradients where the optimizer step will read them: as they are on the CPU or when
    /// the step runs on the device (`on_device`: a [`DeviceOptimizer`]); otherwise, off the CPU,
    /// copied to `f64` in one transfer, so that the norm and the host step that follow
    /// synchronise no more.
    pub(crate) fn for_update(self, vars: &[(String, Var)], on_device: bool) -> Result<Self> {
        match &self {
            WeightGrads::Tensors(_) if on_device => Ok(self),
            WeightGrads::Tensors(g) if g.iter().flatten().any(|t| !t.device().is_cpu()) => {
                Ok(WeightGrads::Summed(self.into_f64(vars)?))
            }
            _ => Ok(self),
        }
    }

    /// The global L2 norm, summed in `f64` in parameter order (what
    /// [`nas_optim::grad_norm`] gives on the `f64` copies, to the last bit); of gradients on a
    /// GPU, summed there in one launch ([`nas_ops::sum_squares`], another order of addition)
    /// and one copy of the result.
    pub(crate) fn norm(&self) -> Result<f64> {
        if let WeightGrads::Tensors(g) = self {
            let present: Vec<&Tensor> = g.iter().flatten().collect();
            if present.iter().any(|t| !t.device().is_cpu()) {
                return Ok(nas_ops::sum_squares(&present).map_err(terr)?.sqrt());
            }
        }
        let mut sum = 0.0f64;
        let mut add = |g: GradsRef<'_>| match g {
            GradsRef::F32(v) => v.iter().for_each(|&x| sum += x as f64 * x as f64),
            GradsRef::F64(v) => v.iter().for_each(|&x| sum += x * x),
        };
        match self {
            WeightGrads::Summed(g) => g.iter().for_each(|v| add(GradsRef::F64(v))),
            WeightGrads::Tensors(g) => {
                for t in g.iter().flatten() {
                    with_values(t, &mut add)?;
                }
            }
        }
        Ok(sum.sqrt())
    }
}

/// Calls `f` with the values of a tensor (made contiguous first when it is not); tensors
/// off the CPU, or of another dtype than `f32`/`f64`, are copied to `f64`.
fn with_values<R>(t: &Tensor, f: impl FnOnce(GradsRef<'_>) -> R) -> Result<R> {
    let t = t.contiguous().map_err(terr)?;
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(s), Some((a, b))) = (&*storage, layout.contiguous_offsets()) {
            match s {
                CpuStorage::F32(v) => return Ok(f(GradsRef::F32(&v[a..b]))),
                CpuStorage::F64(v) => return Ok(f(GradsRef::F64(&v[a..b]))),
                _ => {}
            }
        }
    }
    Ok(f(GradsRef::F64(&to_f64(&t)?)))
}

/// One optimizer step of the weights `vars` with gradients `grads` at learning rate `lr`,
/// every gradient value multiplied by `grad_scale` (the clipping factor, 1 when not
/// clipping). With `active`, only parameters `i` with `active[i]` are stepped (the others
/// and their optimizer state are left as they are, [`Optimizer::step_active`]).
pub(crate) fn update_weights(
    optimizer: &mut dyn Optimizer,
    vars: &[(String, Var)],
    grads: WeightGrads,
    grad_scale: f64,
    lr: f64,
    active: Option<&[bool]>,
) -> Result<()> {
    let n = match &grads {
        WeightGrads::Tensors(g) => g.len(),
        WeightGrads::Summed(g) => g.len(),
    };
    if n != vars.len() {
        return Err(NasError::Other(format!(
            "{n} weight gradients for {} parameters",
            vars.len()
        )));
    }
    // The step on the parameters' device, one launch (a GPU's weights; see DeviceOptimizer).
    if let (Some(d), WeightGrads::Tensors(g)) = (DeviceOptimizer::of(optimizer), &grads) {
        if d.step_on_device(vars, g, grad_scale, lr, active)? {
            return Ok(());
        }
    }
    let in_place = optimizer.updates_in_place() && vars.iter().all(|(_, v)| v.device().is_cpu());
    if !in_place {
        return update_copies(optimizer, vars, grads, grad_scale, lr, active);
    }
    let is_active = |i: usize| active.is_none_or(|a| a.get(i).copied().unwrap_or(false));
    for (i, (_, var)) in vars.iter().enumerate() {
        if !is_active(i) {
            continue;
        }
        let op = StepOne {
            optimizer: RefCell::new(&mut *optimizer),
            index: i,
            grad_scale,
            lr,
            failure: RefCell::new(None),
        };
        let param = var.as_tensor();
        let done = match &grads {
            WeightGrads::Tensors(g) => match &g[i] {
                Some(g) => param.inplace_op2(&g.contiguous().map_err(terr)?, &op),
                None => op.with_grad(GradsRef::F64(&vec![0.0; var.elem_count()]), param),
            },
            WeightGrads::Summed(g) => op.with_grad(GradsRef::F64(&g[i]), param),
        };
        if let Err(e) = done {
            return Err(op.failure.into_inner().unwrap_or_else(|| terr(e)));
        }
    }
    Ok(())
}

/// The copying path: weights and gradients to `f64`, [`Optimizer::step`] (or
/// `step_active`), weights back.
fn update_copies(
    optimizer: &mut dyn Optimizer,
    vars: &[(String, Var)],
    grads: WeightGrads,
    grad_scale: f64,
    lr: f64,
    active: Option<&[bool]>,
) -> Result<()> {
    let mut g = grads.into_f64(vars)?;
    if grad_scale != 1.0 {
        g.iter_mut().flatten().for_each(|x| *x *= grad_scale);
    }
    let tensors: Vec<&Tensor> = vars.iter().map(|(_, v)| v.as_tensor()).collect();
    let mut w = to_f64_all(&tensors)?;
    {
        let mut wr: Vec<&mut [f64]> = w.iter_mut().map(|v| v.as_mut_slice()).collect();
        let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
        match active {
            Some(a) => optimizer.step_active(&mut wr, &gr, lr, a)?,
            None => optimizer.step(&mut wr, &gr, lr)?,
        }
    }
    let targets: Vec<&Var> = vars.iter().map(|(_, v)| v).collect();
    set_vars(&targets, &w)
}

/// The clipping factor for a gradient norm: [`clip_coefficient`] with a limit, 1 without.
pub(crate) fn grad_scale(norm: f64, clip: Option<f64>) -> f64 {
    clip.map_or(1.0, |m| clip_coefficient(norm, m))
}

/// A candle in-place op that steps parameter `index` of an optimizer on the parameter's
/// own storage: with the gradient tensor as the second operand ([`InplaceOp2`]), or with
/// a gradient given as values ([`StepOne::with_grad`]).
struct StepOne<'a> {
    optimizer: RefCell<&'a mut dyn Optimizer>,
    index: usize,
    grad_scale: f64,
    lr: f64,
    /// The optimizer's own error, kept whole (candle's error type would flatten it).
    failure: RefCell<Option<NasError>>,
}

impl StepOne<'_> {
    fn step(
        &self,
        param: &mut CpuStorage,
        layout: &Layout,
        grad: GradsRef<'_>,
    ) -> candle_core::Result<()> {
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("optimizer step: the parameter is not contiguous");
        };
        let param = match param {
            CpuStorage::F32(v) => ParamsMut::F32(&mut v[a..b]),
            CpuStorage::F64(v) => ParamsMut::F64(&mut v[a..b]),
            other => candle_core::bail!("optimizer step: parameters of {:?}", other.dtype()),
        };
        let tensor = InPlace {
            param,
            grad,
            grad_scale: self.grad_scale,
        };
        self.optimizer
            .borrow_mut()
            .step_in_place(self.index, tensor, self.lr)
            .map_err(|e| {
                let message = e.to_string();
                *self.failure.borrow_mut() = Some(e);
                candle_core::Error::Msg(message)
            })
    }

    /// Steps `param` with gradient values `grad`.
    fn with_grad(&self, grad: GradsRef<'_>, param: &Tensor) -> candle_core::Result<()> {
        param.inplace_op1(&WithGrad { op: self, grad })
    }
}

impl InplaceOp2 for StepOne<'_> {
    fn name(&self) -> &'static str {
        "optimizer-step"
    }

    fn cpu_fwd(
        &self,
        param: &mut CpuStorage,
        layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<()> {
        let Some((a, b)) = grad_layout.contiguous_offsets() else {
            candle_core::bail!("optimizer step: the gradient is not contiguous");
        };
        let grad = match grad {
            CpuStorage::F32(v) => GradsRef::F32(&v[a..b]),
            CpuStorage::F64(v) => GradsRef::F64(&v[a..b]),
            other => candle_core::bail!("optimizer step: gradients of {:?}", other.dtype()),
        };
        self.step(param, layout, grad)
    }
}

/// [`StepOne`] with its gradient given as values.
struct WithGrad<'a, 'b> {
    op: &'a StepOne<'b>,
    grad: GradsRef<'a>,
}

impl InplaceOp1 for WithGrad<'_, '_> {
    fn name(&self) -> &'static str {
        "optimizer-step"
    }

    fn cpu_fwd(&self, param: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        self.op.step(param, layout, self.grad)
    }
}
