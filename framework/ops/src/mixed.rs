//! The DARTS mixed-operation sum `y = sum_k w_k * ys[k]` (Liu et al. 2019, DARTS, eq. 2;
//! quark0/darts `model_search.py` `MixedOp.forward`) as one fused kernel, with shared weights
//! `[K]` or per-example weights `[N, K]` (GDAS/hypernet-style per-sample mixing).
//!
//! candle's custom ops take at most three tensors, and stacking the K operands into one tensor
//! would cost a full copy of all of them (plus, at DARTS sizes, a fresh allocation of K times the
//! activation). Instead:
//! - the fused op [`Mix`] holds the K operands itself (reference-counted, no copy) and reads them
//!   directly in its forward, which writes `y` in one pass;
//! - each operand that needs a gradient enters the graph through a tiny [`Tap`] op (one element
//!   out, no work); the taps form a chain (each takes the previous one's output and its
//!   operand) whose last output is `Mix`'s second input;
//! - `Mix`'s backward computes, in one pass over `g`, every `dL/dw` and every needed
//!   `dL/dys[k] = w_k * g`, and hands the latter to the taps through a shared slot. candle's
//!   backward visits `Mix` before the taps (they are its ancestors), so each tap finds its
//!   gradient there.
//!
//! On a CUDA device the same graph runs two kernels of `nas-kernels`' device.cu (one launch
//! forward, two backward, for any K up to [`crate::device`]'s `MAX_OPTIONS`); per-example
//! weights and larger K use candle's element-wise ops there.
use crate::cpu::{dispatch_float, dot, slice, Float};
use crate::fresh::{par_chunks_zeroed, Split};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Elements per rayon task when the weights are shared.
pub(crate) const BLOCK: usize = 8192;

/// Mixed-op weighted sum: `sum_k weights[k] * ys[k]` (shared weights `[K]`) or, per example n,
/// `sum_k weights[n, k] * ys[k][n]` (weights `[N, K]`, N the first dimension of every `ys[k]`).
///
/// All `ys` must have the same shape and dtype. Differentiable with respect to every `ys[k]` and
/// `weights` (a weight that is exactly 0 still gets its gradient `<g, ys[k]>`).
pub fn weighted_sum(ys: &[Tensor], weights: &Tensor) -> Result<Tensor> {
    let Some(first) = ys.first() else {
        bail!("weighted_sum: no operands");
    };
    let k = ys.len();
    let shape = first.shape().clone();
    for (i, y) in ys.iter().enumerate() {
        if y.shape() != &shape || y.dtype() != first.dtype() {
            bail!(
                "weighted_sum: operand {i} is {:?} {:?}, operand 0 is {:?} {:?}",
                y.dims(),
                y.dtype(),
                shape.dims(),
                first.dtype()
            );
        }
        if !y.device().same_device(first.device()) {
            bail!("weighted_sum: operand {i} is on another device than operand 0");
        }
    }
    crate::cpu::check_float("weighted_sum", first.dtype())?;
    if weights.dtype() != first.dtype() {
        bail!(
            "weighted_sum: weights are {:?}, operands {:?}",
            weights.dtype(),
            first.dtype()
        );
    }
    let numel = shape.elem_count();
    let per_example = match weights.dims() {
        [kw] if *kw == k => false,
        [n, kw] if *kw == k && shape.rank() >= 1 && shape.dims()[0] == *n => true,
        d => bail!(
            "weighted_sum: weights must be [{k}] or [N, {k}] with N = {:?}, got {d:?}",
            shape.dims().first()
        ),
    };
    if !first.device().is_cpu() && !fused_on_device(first, k, per_example) {
        return weighted_sum_by_tensor_ops(ys, weights, per_example);
    }
    let chunk = if per_example {
        numel / weights.dims()[0].max(1)
    } else {
        BLOCK
    };
    let ys: Vec<Tensor> = ys.iter().map(|y| y.contiguous()).collect::<Result<_>>()?;
    let slot = Arc::new(Mutex::new(vec![None; k]));
    let tracked: Vec<bool> = ys.iter().map(|y| y.track_op()).collect();
    let link = tap_chain(&ys, &tracked, &slot, first)?;
    let mix = Mix {
        geom: Geom {
            k,
            numel,
            chunk: chunk.max(1),
            per_example,
        },
        shape,
        ys,
        tracked,
        weights_tracked: weights.track_op(),
        slot,
    };
    weights.contiguous()?.apply_op2(&link, mix)
}

/// Whether a weighted sum of `k` operands like `first` runs as the fused kernels on its
/// (non-CPU) device: a CUDA build, shared weights, at most `MAX_OPTIONS` operands.
fn fused_on_device(first: &Tensor, k: usize, per_example: bool) -> bool {
    #[cfg(feature = "cuda")]
    {
        first.device().is_cuda() && !per_example && k <= crate::device::MAX_OPTIONS
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (first, k, per_example);
        false
    }
}

/// [`weighted_sum`] off the CPU where the fused kernels do not serve it: candle's element-wise
/// ops on the device (autograd through them), `sum_k w_k * ys[k]`, every option multiplied
/// (as the CPU kernel does; the device's `mixed_fwd` skips options of weight exactly 0, the
/// same result for finite outputs).
fn weighted_sum_by_tensor_ops(
    ys: &[Tensor],
    weights: &Tensor,
    per_example: bool,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (k, y) in ys.iter().enumerate() {
        let term = if per_example {
            let n = weights.dims()[0];
            let mut shape = vec![1usize; y.rank()];
            shape[0] = n;
            y.broadcast_mul(&weights.narrow(1, k, 1)?.reshape(shape)?)?
        } else {
            y.broadcast_mul(&weights.narrow(0, k, 1)?)?
        };
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg("weighted_sum: no operands".into()))
}

/// Sizes of one weighted sum.
#[derive(Clone, Copy)]
pub(crate) struct Geom {
    pub k: usize,
    pub numel: usize,
    /// Elements per block: one example when `per_example`, else [`BLOCK`].
    pub chunk: usize,
    pub per_example: bool,
}

impl Geom {
    #[inline]
    fn weight<T: Float>(&self, w: &[T], block: usize, k: usize) -> T {
        if self.per_example {
            w[block * self.k + k]
        } else {
            w[k]
        }
    }

    pub(crate) fn forward<T: Float>(&self, ys: &[&[T]], w: &[T]) -> Vec<T> {
        let split = Split::chunks(self.numel, self.chunk);
        par_chunks_zeroed(
            split,
            || (),
            |_, b, yb| {
                let start = b * self.chunk;
                for (k, src) in ys.iter().enumerate() {
                    let wk = self.weight(w, b, k);
                    let src = &src[start..start + yb.len()];
                    if k == 0 {
                        for (d, &s) in yb.iter_mut().zip(src) {
                            *d = wk * s;
                        }
                    } else {
                        for (d, &s) in yb.iter_mut().zip(src) {
                            *d += wk * s;
                        }
                    }
                }
            },
        )
    }

    /// One pass over `g`: `dL/dys[k] = w_k * g` for the `tracked` operands (None for the
    /// others) and, when `want_w`, `dL/dw` (K or N * K values).
    pub(crate) fn backward<T: Float>(
        &self,
        ys: &[&[T]],
        w: &[T],
        g: &[T],
        tracked: &[bool],
        want_w: bool,
    ) -> (Vec<Option<Vec<T>>>, Vec<T>) {
        let (numel, chunk) = (self.numel, self.chunk);
        let blocks = numel.div_ceil(chunk);
        let mut dys: Vec<Option<Vec<T>>> = tracked
            .iter()
            .map(|&t| t.then(|| vec![T::ZERO; numel]))
            .collect();
        // pieces[b][k] = the block-b part of dL/dys[k]: disjoint borrows, one task per block.
        let mut pieces: Vec<Vec<Option<&mut [T]>>> =
            (0..blocks).map(|_| Vec::with_capacity(self.k)).collect();
        for d in dys.iter_mut() {
            match d {
                Some(d) => {
                    for (b, piece) in d.chunks_mut(chunk).enumerate() {
                        pieces[b].push(Some(piece));
                    }
                }
                None => pieces.iter_mut().for_each(|p| p.push(None)),
            }
        }
        let partial: Vec<Vec<f64>> = pieces
            .into_par_iter()
            .enumerate()
            .map(|(b, ks)| {
                let start = b * chunk;
                let gb = &g[start..(start + chunk).min(numel)];
                ks.into_iter()
                    .enumerate()
                    .map(|(k, d)| {
                        if let Some(d) = d {
                            let wk = self.weight(w, b, k);
                            for (dv, &gv) in d.iter_mut().zip(gb) {
                                *dv = wk * gv;
                            }
                        }
                        if want_w {
                            dot(gb, &ys[k][start..start + gb.len()]).to_f64()
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let dw = if self.per_example {
            partial.iter().flatten().map(|&v| T::from_f64(v)).collect()
        } else {
            (0..self.k)
                .map(|k| T::from_f64(partial.iter().map(|p| p[k]).sum()))
                .collect()
        };
        (dys, dw)
    }
}

/// Gradients handed from [`Mix`]'s backward to the [`Tap`]s, by operand index.
pub(crate) type Slot = Arc<Mutex<Vec<Option<Tensor>>>>;

/// The fused weighted sum: inputs (weights, the taps' link), operands held directly.
struct Mix {
    geom: Geom,
    shape: Shape,
    ys: Vec<Tensor>,
    tracked: Vec<bool>,
    weights_tracked: bool,
    slot: Slot,
}

/// Runs `f` on the contiguous CPU data of `ts` as `&[T]` slices.
pub(crate) fn with_slices<T: Float, R>(
    ts: &[&Tensor],
    f: impl FnOnce(&[&[T]]) -> Result<R>,
) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (st, l) in &guards {
        match &**st {
            Storage::Cpu(cs) => slices.push(slice::<T>(cs, l)?),
            _ => bail!("nas-ops weighted_sum: operand is not on the CPU"),
        }
    }
    f(&slices)
}

impl Mix {
    fn run_backward<T: Float>(&self, w: &Tensor, g: &Tensor) -> Result<Tensor> {
        let w = w.contiguous()?;
        let g = g.contiguous()?;
        let mut all: Vec<&Tensor> = self.ys.iter().collect();
        all.push(&w);
        all.push(&g);
        let (dys, dw) = with_slices::<T, _>(&all, |s| {
            let k = self.geom.k;
            Ok(self
                .geom
                .backward(&s[..k], s[k], s[k + 1], &self.tracked, self.weights_tracked))
        })?;
        let dys: Vec<Option<Tensor>> = dys
            .into_iter()
            .map(|d| {
                d.map(|d| Tensor::from_vec(d, &self.shape, &Device::Cpu))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = dys;
        Tensor::from_vec(dw, w.shape(), &Device::Cpu)
    }
}

impl CustomOp2 for Mix {
    fn name(&self) -> &'static str {
        "nas-weighted-sum"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        match crate::device::mixed_sum(&self.ys, (s1, l1), self.geom.numel)? {
            Some(y) => Ok((y, self.shape.clone())),
            None => bail!("nas-ops weighted_sum: operands the CUDA kernel does not take (f32/f64, contiguous, on one GPU)"),
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let ys: Vec<&Tensor> = self.ys.iter().collect();
        dispatch_float!("weighted_sum", s1, |T| {
            let w: &[T] = slice(s1, l1)?;
            let y = with_slices::<T, _>(&ys, |s| Ok(self.geom.forward(s, w)))?;
            Ok((T::to_cpu_storage_owned(y), self.shape.clone()))
        })
    }

    fn bwd(
        &self,
        w: &Tensor,
        link: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if w.device().is_cuda() {
            return self.device_backward(w, link, g);
        }
        let dw = match w.dtype() {
            DType::F32 => self.run_backward::<f32>(w, g)?,
            DType::F64 => self.run_backward::<f64>(w, g)?,
            d => bail!("nas-ops weighted_sum: unsupported dtype {d:?}"),
        };
        Ok((Some(dw), Some(unread_scalar(link)?)))
    }
}

#[cfg(feature = "cuda")]
impl Mix {
    /// The backward on a GPU: [`MixGrad`]'s two launches, then views of its one buffer.
    fn device_backward(
        &self,
        w: &Tensor,
        link: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let k = self.geom.k;
        let numel = self.geom.numel;
        let grad = MixGrad {
            ys: self.ys.clone(),
            tracked: self.tracked.clone(),
            want_w: self.weights_tracked,
        };
        let all = w.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &grad)?;
        let mut next = k;
        let mut dys = Vec::with_capacity(k);
        for &t in &self.tracked {
            dys.push(if t {
                let d = all.narrow(0, next, numel)?.reshape(&self.shape)?;
                next += numel;
                Some(d)
            } else {
                None
            });
        }
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = dys;
        let dw = if self.weights_tracked {
            Some(all.narrow(0, 0, k)?.reshape(w.shape())?)
        } else {
            None
        };
        Ok((dw, Some(unread_scalar(link)?)))
    }
}

/// The gradients of a weighted sum on a GPU: inputs (weights, dL/dy), operands held; output
/// the flat `[dL/dw | dL/dys[k] for the tracked k]` ([`crate::device::mixed_sum_bwd`]).
#[cfg(feature = "cuda")]
struct MixGrad {
    ys: Vec<Tensor>,
    tracked: Vec<bool>,
    want_w: bool,
}

#[cfg(feature = "cuda")]
impl CustomOp2 for MixGrad {
    fn name(&self) -> &'static str {
        "nas-weighted-sum-bwd-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("nas-ops weighted_sum: the GPU backward was asked for CPU tensors")
    }

    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out =
            crate::device::mixed_sum_bwd(&self.ys, (s1, l1), (s2, l2), &self.tracked, self.want_w)?;
        match out {
            Some(o) => {
                let n = self.ys.len()
                    + self.tracked.iter().filter(|&&t| t).count() * l2.shape().elem_count();
                Ok((o, Shape::from(n)))
            }
            None => bail!("nas-ops weighted_sum: operands the CUDA kernel does not take (f32/f64, contiguous, on one GPU)"),
        }
    }
}

/// The tracked `operands` joined to the graph through a chain of [`Tap`]s (one element each,
/// never read: on a GPU an allocation without a memset or a kernel) whose backward hands each
/// its gradient from `slot`; one such element on `like`'s device and dtype when none is
/// tracked.
pub(crate) fn tap_chain(
    operands: &[Tensor],
    tracked: &[bool],
    slot: &Slot,
    like: &Tensor,
) -> Result<Tensor> {
    let mut link: Option<Tensor> = None;
    for (index, y) in operands.iter().enumerate().filter(|(i, _)| tracked[*i]) {
        let tap = Tap {
            index,
            slot: slot.clone(),
        };
        link = Some(match link {
            None => y.apply_op1(tap)?,
            Some(previous) => previous.apply_op2(y, tap)?,
        });
    }
    match link {
        Some(l) => Ok(l),
        None => unread_scalar(like),
    }
}

/// A one-element tensor of `like`'s dtype on its device, outside the graph, whose value no
/// one reads: what the tap chain's links carry forward and backward (they only order
/// candle's backward). Zero on the CPU; on a GPU left unwritten, so a link costs no memset.
pub(crate) fn unread_scalar(like: &Tensor) -> Result<Tensor> {
    like.apply_op1_no_bwd(&UnreadScalar)
}

/// The op of [`unread_scalar`]; its forwards are also the [`Tap`]s'.
struct UnreadScalar;

impl UnreadScalar {
    /// On the CPU: one zero of `s`'s dtype.
    fn on_cpu(s: &CpuStorage) -> Result<(CpuStorage, Shape)> {
        dispatch_float!("weighted_sum", s, |T| Ok((
            T::to_cpu_storage_owned(vec![T::ZERO]),
            Shape::from(1)
        )))
    }

    /// On a GPU: one element on `s`'s device, unwritten since nothing reads it (no memset, no
    /// kernel); a zero (a memset) for a dtype without device kernels.
    #[cfg(feature = "cuda")]
    fn on_gpu(s: &candle_core::CudaStorage) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::{BackendDevice, BackendStorage};
        match crate::device::unread_scalar(s)? {
            Some(unread) => Ok(unread),
            None => Ok((
                s.device().zeros_impl(&Shape::from(1), s.dtype())?,
                Shape::from(1),
            )),
        }
    }
}

impl CustomOp1 for UnreadScalar {
    fn name(&self) -> &'static str {
        "nas-unread-scalar"
    }

    fn cpu_fwd(&self, s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        Self::on_cpu(s)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        _l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Self::on_gpu(s)
    }
}

/// Connects operand `index` to the graph: forward outputs one element that nothing reads
/// ([`unread_scalar`]'s: zero on the CPU, unwritten on a GPU), backward returns the
/// operand's gradient left in the slot by [`Mix`]'s backward. The first tap takes the operand
/// alone ([`CustomOp1`]); each further one the previous tap's output and its operand
/// ([`CustomOp2`]), passing the chain's gradient back unchanged.
pub(crate) struct Tap {
    pub index: usize,
    pub slot: Slot,
}

impl Tap {
    /// The operand's gradient from the slot.
    fn take(&self) -> Result<Tensor> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.get_mut(self.index).and_then(Option::take) {
            Some(d) => Ok(d),
            None => bail!(
                "nas-ops weighted_sum: operand {} gradient missing (backward order broken)",
                self.index
            ),
        }
    }
}

impl CustomOp1 for Tap {
    fn name(&self) -> &'static str {
        "nas-weighted-sum-tap"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        _l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        UnreadScalar::on_gpu(s)
    }

    fn cpu_fwd(&self, s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(CustomOp1::name(self));
        UnreadScalar::on_cpu(s)
    }

    fn bwd(&self, _y: &Tensor, _res: &Tensor, _g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.take()?))
    }
}

impl CustomOp2 for Tap {
    fn name(&self) -> &'static str {
        "nas-weighted-sum-tap-chain"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        _l1: &Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        UnreadScalar::on_gpu(s1)
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(CustomOp2::name(self));
        UnreadScalar::on_cpu(s1)
    }

    fn bwd(
        &self,
        _previous: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(g.clone()), Some(self.take()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The tensor-op path (used off the CPU) against the CPU kernel: values and the gradients
    /// of every operand and weight, shared and per-example weights.
    #[test]
    fn the_tensor_op_path_matches_the_kernel() {
        let dev = Device::Cpu;
        let ys: Vec<Var> = (0..3)
            .map(|k| {
                let v: Vec<f64> = (0..2 * 3 * 4)
                    .map(|i| ((i * 7 + k * 13) % 11) as f64 / 5.0 - 1.0)
                    .collect();
                Var::from_vec(v, (2, 3, 4), &dev).unwrap()
            })
            .collect();
        for per_example in [false, true] {
            let w = if per_example {
                Var::from_vec(vec![0.2, -0.5, 0.0, 1.5, 0.3, -0.7], (2, 3), &dev).unwrap()
            } else {
                Var::from_vec(vec![0.2, -0.5, 0.0], 3, &dev).unwrap()
            };
            let inputs: Vec<Tensor> = ys.iter().map(|v| v.as_tensor().clone()).collect();
            let r = Tensor::arange(0f64, 24.0, &dev)
                .unwrap()
                .reshape((2, 3, 4))
                .unwrap();
            let run = |y: Tensor| {
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let mut out = vec![y.flatten_all().unwrap().to_vec1::<f64>().unwrap()];
                for v in ys.iter().chain(std::iter::once(&w)) {
                    let g = grads.get(v.as_tensor()).unwrap();
                    out.push(g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
                }
                out
            };
            let kernel = run(weighted_sum(&inputs, w.as_tensor()).unwrap());
            let tensor_ops =
                run(weighted_sum_by_tensor_ops(&inputs, w.as_tensor(), per_example).unwrap());
            for (a, b) in kernel.iter().zip(&tensor_ops) {
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() < 1e-12,
                        "per_example {per_example}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
