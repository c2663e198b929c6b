//! DARTS' `FactorizedReduce` (quark0/darts `operations.py`): ReLU, two stride-2 1x1
//! convolutions with half of the output channels each, the second on the input without its
//! first row and column, their outputs concatenated over channels, then a batch norm. As one
//! op ([`factorized_reduce_bn`]: the first input's preprocessing of a cell after a reduction
//! cell, affine in the retraining network) and as the plan a fused mixed edge runs for its
//! stride-2 `skip_connect` ([`ReduceGeom`]).
//!
//! As separate ops, the ReLU's output, its shifted copy, both convolutions' outputs and their
//! concatenation are each a node of the graph, and candle's backward gives each a zero-filled
//! gradient buffer and an addition. Here the forward keeps what the separate ops keep (the
//! rectified input, its shifted copy, the concatenation: the batch norm's input) and the
//! backward adds the input gradient through the ReLU in one pass. The convolutions, the batch
//! norm and their order are the separate ops' own kernels, so values and gradients are theirs
//! bit for bit (tested). On a GPU in training both forms run on the device kernels
//! `nas_fr_fwd` / `nas_fr_bwd_input` / `nas_fr_bwd_weight` and the batch norm's
//! ([`crate::device::factorized_reduce_fwd`]).
use crate::bn::{BatchNorm2d, BnOp};
use crate::conv1x1::Conv1x1;
use crate::cpu::{dispatch_float, slice, Float};
use crate::fused::{pack_affine, unpack_affine, BnWeight};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// An error unless `h` and `w` are even (the reference fails on odd sizes: its two
/// convolutions' outputs then differ in size and `torch.cat` raises).
pub(crate) fn check_even(op: &str, h: usize, w: usize) -> Result<()> {
    if h < 2 || w < 2 || !h.is_multiple_of(2) || !w.is_multiple_of(2) {
        bail!("{op}: FactorizedReduce needs an even input size, got {h}x{w} (the DARTS reference fails the same way)");
    }
    Ok(())
}

/// The two convolutions (the second on the shifted input) and the batch norm of one
/// `FactorizedReduce`.
pub(crate) struct ReduceGeom {
    pub a: Conv1x1,
    pub b: Conv1x1,
    pub bn: BnOp,
}

/// What a forward keeps for the backward: the rectified input, its shifted copy and the
/// concatenated convolution outputs (the batch norm's input).
pub(crate) struct ReduceKept<T> {
    pub r: Vec<T>,
    pub sh: Vec<T>,
    pub z: Vec<T>,
}

/// The gradients of a backward ([`ReduceGeom::backward_into`]).
pub(crate) struct ReduceGrads<T> {
    /// dL/dw_a (zeros without weight gradients).
    pub w_a: Vec<T>,
    /// dL/dw_b (zeros without weight gradients).
    pub w_b: Vec<T>,
    /// `[dL/dgamma, dL/dbeta]` of an affine batch norm with weight gradients; else empty.
    pub bn_params: Vec<T>,
}

impl ReduceGeom {
    /// For an input `[n, c, h, w]` (even `h`, `w`) and `co` outputs per convolution; `bn`
    /// over `2 co` channels.
    pub(crate) fn new((n, c, h, w): (usize, usize, usize, usize), co: usize, bn: BnOp) -> Self {
        let conv = |h: usize, w: usize| Conv1x1 {
            n,
            ci: c,
            co,
            h,
            w,
            stride: 2,
        };
        ReduceGeom {
            a: conv(h, w),
            b: conv(h - 1, w - 1),
            bn,
        }
    }

    /// The output `bn(cat(conv_a(relu(x)), conv_b(relu(x)[:, :, 1:, 1:])))` and what the
    /// backward needs.
    pub(crate) fn forward<T: Float>(
        &self,
        x: &[T],
        w_a: &[T],
        w_b: &[T],
        affine: Option<(&[T], &[T])>,
    ) -> (Vec<T>, ReduceKept<T>) {
        let (r, sh) = rectified_and_shifted(x, &self.a);
        let (ya, yb) = (self.a.forward(&r, w_a), self.b.forward(&sh, w_b));
        let z = concat_channels(&ya, &yb, self.a.n);
        let y = self.bn.run(&z, affine.map(|p| p.0), affine.map(|p| p.1));
        (y, ReduceKept { r, sh, z })
    }

    /// Adds `dL/dx` into `gx` for the output gradient `g` times `bn_weight` (a scale, or an
    /// affine batch norm's weight) and returns the weights' gradients (`weights`: whether
    /// they are wanted).
    pub(crate) fn backward_into<T: Float>(
        &self,
        gx: &mut [T],
        (r, sh, z): (&[T], &[T], &[T]),
        (w_a, w_b): (&[T], &[T]),
        g: &[T],
        bn_weight: BnWeight<'_, T>,
        weights: bool,
    ) -> Result<ReduceGrads<T>> {
        let mut gz = self.bn.backward_op(bn_weight.gammas(self.bn.c))?.run(z, g);
        let bn_params = gz.split_off(z.len());
        let (ga, gb) = split_channels(&gz, self.a.n);
        let mut gr = self.a.backward_with(r, w_a, &ga, weights);
        let gwa = gr.split_off(r.len());
        let mut gs = self.b.backward_with(sh, w_b, &gb, weights);
        let gwb = gs.split_off(sh.len());
        add_shifted_masked(gx, &gr, &gs, r, &self.a);
        let affine = matches!(bn_weight, BnWeight::Affine(_));
        Ok(ReduceGrads {
            w_a: gwa,
            w_b: gwb,
            bn_params: if affine && weights {
                bn_params
            } else {
                Vec::new()
            },
        })
    }
}

/// `relu(x)` and its copy without the first row and column of every plane (the second
/// convolution's input), for the geometry of `a`.
fn rectified_and_shifted<T: Float>(x: &[T], a: &Conv1x1) -> (Vec<T>, Vec<T>) {
    let (h, w) = (a.h, a.w);
    let r: Vec<T> = x.iter().map(|&v| crate::dwconv::rectify(v)).collect();
    let mut sh = Vec::with_capacity(r.len() / (h * w) * (h - 1) * (w - 1));
    for plane in r.chunks_exact(h * w) {
        for row in plane.chunks_exact(w).skip(1) {
            sh.extend_from_slice(&row[1..]);
        }
    }
    (r, sh)
}

/// Per example, the channels of `ya` then those of `yb` (equal sizes).
fn concat_channels<T: Float>(ya: &[T], yb: &[T], n: usize) -> Vec<T> {
    let per = ya.len() / n.max(1);
    let mut z = Vec::with_capacity(2 * ya.len());
    for (pa, pb) in ya.chunks_exact(per.max(1)).zip(yb.chunks_exact(per.max(1))) {
        z.extend_from_slice(pa);
        z.extend_from_slice(pb);
    }
    z
}

/// The inverse of [`concat_channels`].
fn split_channels<T: Float>(z: &[T], n: usize) -> (Vec<T>, Vec<T>) {
    let per = z.len() / (2 * n.max(1));
    let (mut ga, mut gb) = (
        Vec::with_capacity(z.len() / 2),
        Vec::with_capacity(z.len() / 2),
    );
    for ex in z.chunks_exact((2 * per).max(1)) {
        ga.extend_from_slice(&ex[..per]);
        gb.extend_from_slice(&ex[per..]);
    }
    (ga, gb)
}

/// `gx += (gr + gs shifted back by one row and column) * (r > 0)`: the two convolutions'
/// input gradients through the ReLU.
fn add_shifted_masked<T: Float>(gx: &mut [T], gr: &[T], gs: &[T], r: &[T], a: &Conv1x1) {
    let (h, w) = (a.h, a.w);
    let (ip, sp) = (h * w, (h - 1) * (w - 1));
    gx.par_chunks_mut(ip).enumerate().for_each(|(p, gxp)| {
        let (grp, rp) = (&gr[p * ip..(p + 1) * ip], &r[p * ip..(p + 1) * ip]);
        let gsp = &gs[p * sp..(p + 1) * sp];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let mut v = grp[i];
                if y > 0 && x > 0 {
                    v += gsp[(y - 1) * (w - 1) + (x - 1)];
                }
                gxp[i] += if rp[i] > T::ZERO { v } else { T::ZERO };
            }
        }
    });
}

/// DARTS' `FactorizedReduce(C_in, C_out)` followed by its batch norm, as one op:
/// `bn(cat(conv2d(relu(x), w_a, stride 2), conv2d(relu(x)[:, :, 1:, 1:], w_b, stride 2)))`.
///
/// `x` `[N, C, H, W]` with even `H` and `W`, `w_a` and `w_b` `[C_out/2, C, 1, 1]`, `bn` over
/// `C_out` channels in training mode (batch statistics, running statistics updated) when
/// `train`, affine or not. Differentiable with respect to `x`, both weights and an affine
/// `bn`'s weight and bias, which enter the op packed behind `w_b`. One op on the CPU (f32,
/// f64) and, in training, on a CUDA device (two launches forward, three backward); elsewhere
/// the separate ops.
pub fn factorized_reduce_bn(
    x: &Tensor,
    w_a: &Tensor,
    w_b: &Tensor,
    bn: &BatchNorm2d,
    train: bool,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (co, wc, kh, kw) = w_a.dims4()?;
    if w_b.dims() != w_a.dims() || wc != c || kh != 1 || kw != 1 {
        bail!(
            "factorized_reduce_bn: weights {:?} and {:?} must both be [C_out/2, {c}, 1, 1] for input {:?}",
            w_a.dims(),
            w_b.dims(),
            x.dims()
        );
    }
    if bn.channels() != 2 * co {
        bail!(
            "factorized_reduce_bn: the batch norm has {} channels, the convolutions {} outputs",
            bn.channels(),
            2 * co
        );
    }
    check_even("factorized_reduce_bn", h, w)?;
    let gpu_op = cfg!(feature = "cuda") && x.device().is_cuda() && train;
    if !(x.device().is_cpu() || gpu_op) {
        return separate_ops(x, w_a, w_b, bn, train);
    }
    if x.dtype() != w_a.dtype() || x.dtype() != w_b.dtype() {
        bail!("factorized_reduce_bn: x, w_a and w_b must have one dtype");
    }
    crate::cpu::check_float("factorized_reduce_bn", x.dtype())?;
    let affine = bn.affine_params();
    let packed = pack_affine(w_b, affine, 2 * co, x.dtype(), "factorized_reduce_bn")?;
    crate::pointwise::probe_relu_input(x);
    let (oh, ow) = (h / 2, w / 2);
    let m = n * oh * ow;
    let mode = bn.mode(train, m, &[n, 2 * co, oh, ow])?;
    // On a GPU the forward folds the running statistics itself, the state locked until then.
    #[cfg(feature = "cuda")]
    let (held, fold) = bn.begin_fold(x, &mode)?;
    let bn_op = BnOp {
        n,
        c: 2 * co,
        hw: oh * ow,
        eps: bn.eps(),
        mode: mode.clone(),
        #[cfg(feature = "cuda")]
        fold,
    };
    let op = Reduce {
        geom: ReduceGeom::new((n, c, h, w), co, bn_op),
        affine: affine.is_some(),
        saved: Arc::new(Mutex::new(None)),
        #[cfg(feature = "cuda")]
        saved_gpu: Arc::new(Mutex::new(None)),
        frozen: crate::frozen::weights_frozen(),
    };
    let y = x.contiguous()?.apply_op3(&w_a.contiguous()?, &packed, op)?;
    #[cfg(feature = "cuda")]
    bn.finish_running(held, &mode, m)?;
    #[cfg(not(feature = "cuda"))]
    bn.update_running(&mode, m)?;
    Ok(y)
}

/// The separate ops (a GPU in evaluation mode, other devices).
fn separate_ops(
    x: &Tensor,
    w_a: &Tensor,
    w_b: &Tensor,
    bn: &BatchNorm2d,
    train: bool,
) -> Result<Tensor> {
    let r = crate::relu(x)?;
    let (_, _, h, w) = r.dims4()?;
    let a = crate::conv2d(&r, w_a, 2, 0)?;
    let shifted = r.narrow(2, 1, h - 1)?.narrow(3, 1, w - 1)?;
    let b = crate::conv2d(&shifted, w_b, 2, 0)?;
    bn.forward(&Tensor::cat(&[a, b], 1)?, train)
}

/// The fused op: inputs `x`, `w_a` and `w_b` (with an affine batch norm's weight and bias
/// packed behind it); `saved` holds what a forward on the CPU kept, `saved_gpu` what a forward
/// on a GPU left there.
struct Reduce {
    geom: ReduceGeom,
    affine: bool,
    #[allow(clippy::type_complexity)]
    saved: Arc<Mutex<Option<(CpuStorage, CpuStorage, CpuStorage)>>>,
    #[cfg(feature = "cuda")]
    saved_gpu: Arc<Mutex<Option<Arc<crate::device::ReduceSaved>>>>,
    /// Built under [`crate::with_frozen_weights`]: no weight gradients.
    frozen: bool,
}

impl Reduce {
    /// `w_b` and, when affine, the batch norm's weight and bias from the third input.
    #[allow(clippy::type_complexity)]
    fn unpack<'a, T>(&self, packed: &'a [T]) -> Result<(&'a [T], Option<(&'a [T], &'a [T])>)> {
        let b = &self.geom.b;
        unpack_affine(packed, b.co * b.ci, self.geom.bn.c, self.affine)
    }

    fn forward<T: Float>(&self, x: &[T], w_a: &[T], packed: &[T]) -> Result<Vec<T>> {
        let (w_b, affine) = self.unpack(packed)?;
        let (y, k) = self.geom.forward(x, w_a, w_b, affine);
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            T::to_cpu_storage_owned(k.r),
            T::to_cpu_storage_owned(k.sh),
            T::to_cpu_storage_owned(k.z),
        ));
        Ok(y)
    }

    /// `(dL/dx, dL/dw_a, dL/dpacked)`, the last `dL/dw_b` followed, when affine, by the batch
    /// norm's parameters' gradients.
    fn backward<T: Float>(
        &self,
        x_len: usize,
        w_a: &[T],
        packed: &[T],
        g: &[T],
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let (w_b, affine) = self.unpack(packed)?;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some((r, sh, z)) = saved.as_ref() else {
            bail!("factorized_reduce_bn backward: the forward kept no activations");
        };
        let kept = (
            T::cpu_storage_as_slice(r)?,
            T::cpu_storage_as_slice(sh)?,
            T::cpu_storage_as_slice(z)?,
        );
        let bn_weight = match affine {
            Some((gamma, _)) => BnWeight::Affine(gamma),
            None => BnWeight::Scalar(1.0),
        };
        let mut gx = crate::fresh::zeros(x_len);
        let mut grads =
            self.geom
                .backward_into(&mut gx, kept, (w_a, w_b), g, bn_weight, !self.frozen)?;
        grads.w_b.append(&mut grads.bn_params);
        Ok((gx, grads.w_a, grads.w_b))
    }
}

impl CustomOp3 for Reduce {
    fn name(&self) -> &'static str {
        "nas-factorized-reduce-bn"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let g = self.device_geom()?;
        let bn = &self.geom.bn;
        let launched = crate::device::factorized_reduce_fwd(
            [(s1, l1), (s2, l2), (s3, l3)],
            g,
            self.affine,
            bn.eps,
            bn.fold,
        )?;
        let Some((y, shape, saved)) = launched else {
            bail!(
                "factorized_reduce_bn on CUDA: a shape the device kernels do not take ({:?})",
                l1.shape()
            );
        };
        self.geom
            .bn
            .record_device_stats(self.name(), saved.stats())?;
        *self.saved_gpu.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(saved));
        Ok((y, shape))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let a = &self.geom.a;
        dispatch_float!("factorized_reduce_bn", s1, |T| {
            let y = self.forward::<T>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?)?;
            let shape = Shape::from((a.n, 2 * a.co, a.h / 2, a.w / 2));
            Ok((T::to_cpu_storage_owned(y), shape))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w_a: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _profile = crate::profile::scope("nas-factorized-reduce-bn-bwd");
        let g = g.contiguous()?;
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return self.device_backward(x, w_a, packed, &g);
        }
        let (ws, wl) = w_a.storage_and_layout();
        let (ps, pl) = packed.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (Storage::Cpu(ws), Storage::Cpu(ps), Storage::Cpu(gs)) = (&*ws, &*ps, &*gs) else {
            bail!("factorized_reduce_bn backward: tensors are not on the CPU");
        };
        let dev = x.device();
        dispatch_float!("factorized_reduce_bn backward", ws, |T| {
            let (gx, g_a, g_packed) = self.backward::<T>(
                x.elem_count(),
                slice(ws, wl)?,
                slice(ps, pl)?,
                slice(gs, gl)?,
            )?;
            let gx = Tensor::from_vec(gx, x.shape(), dev)?;
            if self.frozen {
                return Ok((Some(gx), None, None));
            }
            Ok((
                Some(gx),
                Some(Tensor::from_vec(g_a, w_a.shape(), dev)?),
                Some(Tensor::from_vec(g_packed, packed.shape(), dev)?),
            ))
        })
    }
}

#[cfg(feature = "cuda")]
impl Reduce {
    /// The device kernels' geometry.
    fn device_geom(&self) -> Result<nas_kernels::Geom> {
        let a = &self.geom.a;
        crate::device::reduce_geom(a.n, a.ci, a.h, a.w, 2 * a.co)
    }

    /// The backward of a forward that ran on a GPU, from what it left there: the gradients
    /// of `x`, `w_a` and the packed `w_b` (with an affine batch norm's weight and bias), the
    /// weights' in a buffer of their own.
    #[allow(clippy::type_complexity)]
    fn device_backward(
        &self,
        x: &Tensor,
        w_a: &Tensor,
        packed: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved_gpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(saved) = saved else {
            bail!("factorized_reduce_bn backward: the GPU forward kept no activations");
        };
        let (w_a, packed) = (w_a.contiguous()?, packed.contiguous()?);
        let (na, np) = (w_a.elem_count(), packed.elem_count());
        let geom = self.device_geom()?;
        let (gx, flat) = crate::handoff::device_backward(
            "nas-factorized-reduce-bn-bwd-device",
            g,
            x.shape(),
            na + np,
            |sg, lg| {
                let guards = [x, &w_a, &packed].map(|t| t.storage_and_layout());
                let Some(s) = crate::device::cuda_storages(&guards) else {
                    bail!("factorized_reduce_bn backward: a tensor is not on the GPU");
                };
                crate::device::factorized_reduce_bwd(
                    [s[0], s[1], s[2], (sg, lg)],
                    &saved,
                    geom,
                    self.affine,
                    !self.frozen,
                )
            },
        )?;
        // None under frozen weights: the backward made no weight gradients.
        let Some(flat) = flat else {
            return Ok((Some(gx), None, None));
        };
        let g_a = flat.narrow(0, 0, na)?.reshape(w_a.shape())?;
        let g_packed = flat.narrow(0, na, np)?.reshape(packed.shape())?;
        Ok((Some(gx), Some(g_a), Some(g_packed)))
    }
}
