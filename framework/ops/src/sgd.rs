//! An SGD step of many parameter tensors where they lie, with the momentum buffers beside
//! them, and the sum of squares of many tensors (the global gradient norm clipping needs):
//! what a training step on a GPU runs instead of copying every weight and gradient to the
//! host and back (nas-trainer's `DeviceSgd`, docs/gpu.md).
//!
//! Every element goes through one kernel body (`nas::sgd_elem` in nas-kernels'
//! `csrc/nas_kernels.cuh`), whose host build is tested bit for bit against
//! `nas_optim::Sgd`: on a CUDA device one launch over every tensor, on the CPU the host build
//! tensor by tensor (the reference the device path is tested against).
use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Result, Tensor, Var};
pub use nas_kernels::host::SgdRule;

/// One SGD step of `params` (`f32` or `f64` variables, contiguous, on one device) with
/// `grads` (`None`: a parameter the loss does not reach, stepped with a zero gradient) by
/// `rule`. With momentum, `momentum` is `(buffers, offsets)`: one contiguous `f64` tensor on
/// the parameters' device holding parameter `i`'s buffer at `offsets[i]`, and `first[i]` says
/// that buffer holds nothing yet (this step starts it, as PyTorch's first step does).
///
/// `Ok(false)`: a CUDA device that this path does not serve (parameters of mixed dtypes, more
/// than 65,535 tensors); nothing has changed and the caller steps another way.
pub fn sgd_step(
    params: &[&Var],
    grads: &[Option<&Tensor>],
    momentum: Option<(&Tensor, &[usize])>,
    first: &[bool],
    rule: &SgdRule,
) -> Result<bool> {
    check(params, grads, momentum, first, rule)?;
    if params.is_empty() {
        return Ok(true);
    }
    #[cfg(feature = "cuda")]
    if params[0].device().is_cuda() {
        return crate::device::sgd_step(params, grads, momentum, first, rule);
    }
    if !params[0].device().is_cpu() {
        return Ok(false);
    }
    match momentum {
        Some((buffers, offsets)) => buffers.inplace_op1(&WithBuffers {
            params,
            grads,
            offsets,
            first,
            rule,
        })?,
        None => {
            for (p, g) in params.iter().zip(grads) {
                step_one(p, *g, None, false, rule)?;
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
    momentum: Option<(&Tensor, &[usize])>,
    first: &[bool],
    rule: &SgdRule,
) -> Result<()> {
    if grads.len() != params.len() || first.len() != params.len() {
        bail!(
            "sgd_step: {} parameters, {} gradients, {} first flags",
            params.len(),
            grads.len(),
            first.len()
        );
    }
    if rule.momentum != 0.0 && momentum.is_none() {
        bail!(
            "sgd_step: momentum {} needs momentum buffers",
            rule.momentum
        );
    }
    for (i, (p, g)) in params.iter().zip(grads).enumerate() {
        if !matches!(p.dtype(), DType::F32 | DType::F64) {
            bail!("sgd_step: parameter {i} is {:?}", p.dtype());
        }
        if !p.device().same_device(params[0].device()) {
            bail!("sgd_step: parameter {i} is on another device than parameter 0");
        }
        if !p.as_tensor().is_contiguous() {
            // Checked before anything is stepped: a failure half-way would leave some
            // parameters stepped and others not.
            bail!("sgd_step: parameter {i} is not contiguous");
        }
        if let Some(g) = g {
            if g.dims() != p.dims() || g.dtype() != p.dtype() || !g.device().same_device(p.device())
            {
                bail!(
                    "sgd_step: gradient {i} is {:?} {:?}, its parameter {:?} {:?}",
                    g.dims(),
                    g.dtype(),
                    p.dims(),
                    p.dtype()
                );
            }
        }
    }
    if let Some((buffers, offsets)) = momentum {
        if buffers.dtype() != DType::F64 || buffers.rank() != 1 || !buffers.is_contiguous() {
            bail!(
                "sgd_step: momentum buffers must be one contiguous f64 vector, got {:?} {:?}",
                buffers.dims(),
                buffers.dtype()
            );
        }
        if let Some(p) = params.first() {
            if !buffers.device().same_device(p.device()) {
                bail!("sgd_step: the momentum buffers are on another device than the parameters");
            }
        }
        if offsets.len() != params.len() {
            bail!(
                "sgd_step: {} buffer offsets for {} parameters",
                offsets.len(),
                params.len()
            );
        }
        let total = buffers.elem_count();
        for (i, (p, &o)) in params.iter().zip(offsets).enumerate() {
            if o.checked_add(p.elem_count()).is_none_or(|end| end > total) {
                bail!(
                    "sgd_step: the buffer of parameter {i} ({} values at {o}) is outside the {total} buffered",
                    p.elem_count()
                );
            }
        }
    }
    Ok(())
}

/// The CPU step with momentum: the buffers' storage taken mutably, then each parameter
/// stepped in place with its slice of it.
struct WithBuffers<'a> {
    params: &'a [&'a Var],
    grads: &'a [Option<&'a Tensor>],
    offsets: &'a [usize],
    first: &'a [bool],
    rule: &'a SgdRule,
}

impl InplaceOp1 for WithBuffers<'_> {
    fn name(&self) -> &'static str {
        "nas-sgd-step"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let (CpuStorage::F64(all), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            bail!("nas-sgd-step: the momentum buffers are not a contiguous f64 vector");
        };
        let all = &mut all[a..b];
        for (i, p) in self.params.iter().enumerate() {
            let (start, len) = (self.offsets[i], p.elem_count());
            let buf = &mut all[start..start + len];
            step_one(p, self.grads[i], Some(buf), self.first[i], self.rule)?;
        }
        Ok(())
    }
}

/// Steps one CPU parameter in place (its gradient read from its storage, or zeros).
fn step_one(
    param: &Var,
    grad: Option<&Tensor>,
    buf: Option<&mut [f64]>,
    first: bool,
    rule: &SgdRule,
) -> Result<()> {
    let op = StepOne {
        buf: RefCell::new(buf),
        first,
        rule,
    };
    match grad {
        Some(g) => param.as_tensor().inplace_op2(&g.contiguous()?, &op),
        None => param.as_tensor().inplace_op1(&op),
    }
}

/// One parameter's step on the CPU through the host build of the kernel body.
struct StepOne<'a> {
    buf: RefCell<Option<&'a mut [f64]>>,
    first: bool,
    rule: &'a SgdRule,
}

impl StepOne<'_> {
    fn run<T: nas_kernels::host::HostFloat>(&self, p: &mut [T], g: Option<&[T]>) -> Result<()> {
        let mut buf = self.buf.borrow_mut();
        nas_kernels::host::sgd_step(p, g, buf.as_deref_mut(), self.first, self.rule)
            .map_err(|e| candle_core::Error::Msg(format!("nas-sgd-step: {e}")))
    }
}

impl StepOne<'_> {
    /// Steps the contiguous parameter storage `p` with the gradient `g` (a storage and the
    /// range of its values), or zeros.
    fn apply(
        &self,
        p: &mut CpuStorage,
        layout: &Layout,
        g: Option<(&CpuStorage, (usize, usize))>,
    ) -> Result<()> {
        let Some((a, b)) = layout.contiguous_offsets() else {
            bail!("nas-sgd-step: the parameter is not contiguous");
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
                "nas-sgd-step: a {:?} parameter with a gradient of another dtype",
                p.dtype()
            ),
        }
    }
}

impl InplaceOp1 for StepOne<'_> {
    fn name(&self) -> &'static str {
        "nas-sgd-step"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, layout: &Layout) -> Result<()> {
        self.apply(p, layout, None)
    }
}

impl InplaceOp2 for StepOne<'_> {
    fn name(&self) -> &'static str {
        "nas-sgd-step"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<()> {
        let Some(range) = g_layout.contiguous_offsets() else {
            bail!("nas-sgd-step: the gradient is not contiguous");
        };
        self.apply(p, layout, Some((g, range)))
    }
}
