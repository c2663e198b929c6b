//! An optimizer step (SGD, Adam/AdamW, RMSprop) of many parameter tensors where they lie, with
//! the optimizer's state beside them, and the sum of squares of many tensors (the global
//! gradient norm clipping needs): what a training step on a GPU runs instead of copying every
//! weight and gradient to the host and back (nas-trainer's `DeviceOptimizer`, docs/gpu.md).
//!
//! Every element goes through one kernel body (`nas::sgd_elem`, `adam_elem`, `rmsprop_elem` in
//! nas-kernels' `csrc/nas_kernels.cuh`), whose host build is tested bit for bit against
//! `nas_optim`'s optimizers: on a CUDA device one launch over every tensor, on the CPU the host
//! build tensor by tensor (the reference the device path is tested against).
use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var};
pub use nas_kernels::host::{AdamRule, RmsPropRule, SgdRule, StepRule, TensorStep};

/// One step of `params` (`f32` or `f64` variables, contiguous, on one device) with `grads`
/// (`None`: a parameter the loss does not reach, stepped with a zero gradient) by `rule`.
///
/// `state` is `(values, offsets)` when the rule keeps state ([`StepRule::buffers`] > 0): one
/// contiguous `f64` vector on the parameters' device made of `rule.buffers()` equal parts, the
/// values of parameter `i` in each part starting at `offsets[i]` (Adam: `exp_avg` in the first
/// part, `exp_avg_sq` in the second; see each rule). `tensors[i]` gives parameter `i`'s own
/// values of the step: whether SGD's momentum buffer starts with it, Adam's bias corrections at
/// its step count.
///
/// `Ok(false)`: a CUDA device that this path does not serve (parameters of mixed dtypes, more
/// than 65,535 tensors); nothing has changed and the caller steps another way. An error, with
/// nothing changed, for inputs that do not fit together, among them a parameter given twice
/// or two parameters whose state values overlap (on a GPU every tensor is stepped at once).
pub fn optimizer_step(
    params: &[&Var],
    grads: &[Option<&Tensor>],
    state: Option<(&Tensor, &[usize])>,
    tensors: &[TensorStep],
    rule: &StepRule,
) -> Result<bool> {
    check(params, grads, state, tensors, rule)?;
    if params.is_empty() {
        return Ok(true);
    }
    #[cfg(feature = "cuda")]
    if params[0].device().is_cuda() {
        return crate::device::optimizer_step(params, grads, state, tensors, rule);
    }
    if !params[0].device().is_cpu() {
        return Ok(false);
    }
    match state {
        Some((values, offsets)) => values.inplace_op1(&WithState {
            params,
            grads,
            offsets,
            tensors,
            rule,
        })?,
        None => {
            for ((p, g), t) in params.iter().zip(grads).zip(tensors) {
                step_one(p, *g, None, *t, rule)?;
            }
        }
    }
    Ok(true)
}

/// The sum of the squares of every value of `ts` (any shapes, `f32` or `f64`, one device), in
/// `f64`: the squared global L2 norm. On a CUDA device one launch and one copy of the result;
/// elsewhere summed in order.
pub fn sum_squares(ts: &[&Tensor]) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if ts.first().is_some_and(|t| t.device().is_cuda()) {
        if let Some(v) = crate::device::sum_squares(ts)? {
            return Ok(v);
        }
    }
    let mut sum = 0.0f64;
    for t in ts {
        let t = t.flatten_all()?.to_dtype(DType::F64)?;
        for v in t.to_vec1::<f64>()? {
            sum += v * v;
        }
    }
    Ok(sum)
}

/// Refuses inputs that do not fit together, naming what is wrong.
fn check(
    params: &[&Var],
    grads: &[Option<&Tensor>],
    state: Option<(&Tensor, &[usize])>,
    tensors: &[TensorStep],
    rule: &StepRule,
) -> Result<()> {
    if grads.len() != params.len() || tensors.len() != params.len() {
        bail!(
            "optimizer_step: {} parameters, {} gradients, {} per-tensor steps",
            params.len(),
            grads.len(),
            tensors.len()
        );
    }
    let buffers = rule.buffers();
    match (buffers, state) {
        (0, Some(_)) => bail!("optimizer_step: {rule:?} keeps no state, but state was given"),
        (b, None) if b > 0 => bail!("optimizer_step: {rule:?} needs {b} state buffers"),
        _ => {}
    }
    for (i, (p, g)) in params.iter().zip(grads).enumerate() {
        if !matches!(p.dtype(), DType::F32 | DType::F64) {
            bail!("optimizer_step: parameter {i} is {:?}", p.dtype());
        }
        if !p.device().same_device(params[0].device()) {
            bail!("optimizer_step: parameter {i} is on another device than parameter 0");
        }
        if !p.as_tensor().is_contiguous() {
            // Checked before anything is stepped: a failure half-way would leave some
            // parameters stepped and others not.
            bail!("optimizer_step: parameter {i} is not contiguous");
        }
        if let Some(g) = g {
            if g.dims() != p.dims() || g.dtype() != p.dtype() || !g.device().same_device(p.device())
            {
                bail!(
                    "optimizer_step: gradient {i} is {:?} {:?}, its parameter {:?} {:?}",
                    g.dims(),
                    g.dtype(),
                    p.dims(),
                    p.dtype()
                );
            }
        }
    }
    if let Some((values, offsets)) = state {
        if values.dtype() != DType::F64 || values.rank() != 1 || !values.is_contiguous() {
            bail!(
                "optimizer_step: the state must be one contiguous f64 vector, got {:?} {:?}",
                values.dims(),
                values.dtype()
            );
        }
        if let Some(p) = params.first() {
            if !values.device().same_device(p.device()) {
                bail!("optimizer_step: the state is on another device than the parameters");
            }
        }
        if offsets.len() != params.len() {
            bail!(
                "optimizer_step: {} state offsets for {} parameters",
                offsets.len(),
                params.len()
            );
        }
        let total = values.elem_count();
        if total % buffers != 0 {
            bail!("optimizer_step: {total} state values are not {buffers} equal buffers");
        }
        let stride = total / buffers;
        for (i, (p, &o)) in params.iter().zip(offsets).enumerate() {
            if o.checked_add(p.elem_count()).is_none_or(|end| end > stride) {
                bail!(
                    "optimizer_step: the state of parameter {i} ({} values at {o}) is outside the {stride} of each buffer",
                    p.elem_count()
                );
            }
        }
        // Two parameters sharing state values would be stepped at once on a GPU (one grid row
        // each), each reading what the other writes.
        let mut ranges: Vec<(usize, usize, usize)> = params
            .iter()
            .zip(offsets)
            .enumerate()
            .filter(|(_, (p, _))| p.elem_count() > 0)
            .map(|(i, (p, &o))| (o, o + p.elem_count(), i))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                bail!(
                    "optimizer_step: the states of parameters {} and {} overlap (values {}..{} and {}..{})",
                    w[0].2,
                    w[1].2,
                    w[0].0,
                    w[0].1,
                    w[1].0,
                    w[1].1
                );
            }
        }
    }
    // A parameter given twice would be stepped twice in a row on the CPU but twice at once on a
    // GPU (two grid rows over one tensor, an update lost at random): refused everywhere.
    let mut seen = std::collections::HashMap::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        if let Some(j) = seen.insert(p.as_tensor().id(), i) {
            bail!("optimizer_step: parameters {j} and {i} are the same tensor");
        }
    }
    Ok(())
}

/// The CPU step with state: the state's storage taken mutably, then each parameter stepped
/// in place with its values of it.
struct WithState<'a> {
    params: &'a [&'a Var],
    grads: &'a [Option<&'a Tensor>],
    offsets: &'a [usize],
    tensors: &'a [TensorStep],
    rule: &'a StepRule,
}

impl InplaceOp1 for WithState<'_> {
    fn name(&self) -> &'static str {
        "nas-optimizer-step"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (CpuStorage::F64(all), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            bail!("nas-optimizer-step: the state is not a contiguous f64 vector");
        };
        let all = &mut all[a..b];
        for (i, p) in self.params.iter().enumerate() {
            let at = StateAt {
                values: RefCell::new(&mut *all),
                offset: self.offsets[i],
            };
            step_one(p, self.grads[i], Some(at), self.tensors[i], self.rule)?;
        }
        Ok(())
    }
}

/// A parameter's place in the whole state: every buffer, and its offset in each.
struct StateAt<'a> {
    values: RefCell<&'a mut [f64]>,
    offset: usize,
}

/// Steps one CPU parameter in place (its gradient read from its storage, or zeros).
fn step_one(
    param: &Var,
    grad: Option<&Tensor>,
    state: Option<StateAt<'_>>,
    tensor: TensorStep,
    rule: &StepRule,
) -> Result<()> {
    let op = StepOne {
        state,
        tensor,
        rule,
    };
    match grad {
        Some(g) => param.as_tensor().inplace_op2(&g.contiguous()?, &op),
        None => param.as_tensor().inplace_op1(&op),
    }
}

/// One parameter's step on the CPU through the host build of the kernel body.
struct StepOne<'a, 'b> {
    state: Option<StateAt<'b>>,
    tensor: TensorStep,
    rule: &'a StepRule,
}

impl StepOne<'_, '_> {
    fn run<T: nas_kernels::host::HostFloat>(&self, p: &mut [T], g: Option<&[T]>) -> Result<()> {
        let done = match &self.state {
            Some(s) => {
                let mut values = s.values.borrow_mut();
                nas_kernels::host::optimizer_step_at(
                    p,
                    g,
                    &mut values,
                    s.offset,
                    self.tensor,
                    self.rule,
                )
            }
            None => nas_kernels::host::optimizer_step(p, g, &mut [], self.tensor, self.rule),
        };
        done.map_err(|e| candle_core::Error::Msg(format!("nas-optimizer-step: {e}")))
    }

    /// Steps the contiguous parameter storage `p` with the gradient `g` (a storage and the
    /// range of its values), or zeros.
    fn apply(
        &self,
        p: &mut CpuStorage,
        layout: &Layout,
        g: Option<(&CpuStorage, (usize, usize))>,
    ) -> Result<()> {
        let Some((a, b)) = layout.contiguous_offsets() else {
            bail!("nas-optimizer-step: the parameter is not contiguous");
        };
        match (p, g) {
            (CpuStorage::F32(v), None) => self.run::<f32>(&mut v[a..b], None),
            (CpuStorage::F64(v), None) => self.run::<f64>(&mut v[a..b], None),
            (CpuStorage::F32(v), Some((CpuStorage::F32(g), (c, d)))) => {
                self.run(&mut v[a..b], Some(&g[c..d]))
            }
            (CpuStorage::F64(v), Some((CpuStorage::F64(g), (c, d)))) => {
                self.run(&mut v[a..b], Some(&g[c..d]))
            }
            (p, _) => bail!(
                "nas-optimizer-step: a {:?} parameter with a gradient of another dtype",
                p.dtype()
            ),
        }
    }
}

impl InplaceOp1 for StepOne<'_, '_> {
    fn name(&self) -> &'static str {
        "nas-optimizer-step"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, layout: &Layout) -> Result<()> {
        self.apply(p, layout, None)
    }
}

impl InplaceOp2 for StepOne<'_, '_> {
    fn name(&self) -> &'static str {
        "nas-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<()> {
        let Some(range) = g_layout.contiguous_offsets() else {
            bail!("nas-optimizer-step: the gradient is not contiguous");
        };
        self.apply(p, layout, Some((g, range)))
    }
}
