//! `ReLU -> 1x1 convolution -> BatchNorm` as one op: DARTS' `ReLUConvBN` with a 1x1 kernel,
//! which preprocesses both inputs of every cell (quark0/darts `model.py` and
//! `model_search.py`: `ReLUConvBN(C_prev, C, 1, 1, 0)`, affine in the retraining network,
//! affine-free in the search network).
//!
//! As three ops, the ReLU's output (the cell input's size: four times the cell's channels
//! after a normal cell) is written, kept for the convolution's weight gradient, and the
//! backward allocates zero-filled gradients for it and for the convolution's output and adds
//! into them. Here each worker takes one example: it rectifies the example's input into its
//! own scratch, runs the convolution's GEMM on it and takes the batch norm's moments while the
//! output is in cache; the backward rectifies the example again for the weight gradient and
//! masks the input gradient in place. Only the convolution's output is kept (the batch norm's
//! backward reads it), as the separate ops keep it. The kernels, their order and the
//! per-example weight partials summed in example order are the separate ops', so values and
//! gradients are the same bit for bit (tested).
use crate::bn::{plane_moments, BatchNorm2d, BnOp, Mode};
use crate::conv1x1::Conv1x1;
use crate::cpu::{dispatch_float, slice, Float};
use crate::fresh::{par_chunks_zeroed_with, Split};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Arc, Mutex};

/// `bn(conv2d(relu(x), w))` for a 1x1 kernel, stride 1, no padding.
///
/// `x` `[N, C, H, W]`, `w` `[O, C, 1, 1]`, `bn` over `O` channels in training mode (batch
/// statistics, running statistics updated) when `train`, affine or not. Differentiable with
/// respect to `x`, `w` and an affine `bn`'s weight and bias, which enter the op packed behind
/// `w` (`O * C + 2 * O` values). One op on the CPU (f32, f64) and, in training, on a CUDA
/// device (two launches forward, three backward: [`crate::device::unit_fwd`] with
/// [`crate::device::UnitConvs::Pointwise`]); elsewhere the three ops one by one.
pub fn relu_conv1x1_bn(x: &Tensor, w: &Tensor, bn: &BatchNorm2d, train: bool) -> Result<Tensor> {
    let gpu_op = cfg!(feature = "cuda") && x.device().is_cuda() && train;
    if !(x.device().is_cpu() || gpu_op) {
        let y = crate::conv2d(&crate::relu(x)?, w, 1, 0)?;
        return bn.forward(&y, train);
    }
    let (n, c, h, wd) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c || kh != 1 || kw != 1 {
        bail!(
            "relu_conv1x1_bn: the weight must be [O, {c}, 1, 1] for input {:?}, got {:?}",
            x.dims(),
            w.dims()
        );
    }
    if bn.channels() != o {
        bail!(
            "relu_conv1x1_bn: the batch norm has {} channels, the convolution {o} outputs",
            bn.channels()
        );
    }
    if x.dtype() != w.dtype() {
        bail!(
            "relu_conv1x1_bn: dtype mismatch, x {:?} vs weight {:?}",
            x.dtype(),
            w.dtype()
        );
    }
    crate::cpu::check_float("relu_conv1x1_bn", x.dtype())?;
    let affine = bn.affine_params();
    let packed = crate::fused::pack_affine(w, affine, o, x.dtype(), "relu_conv1x1_bn")?;
    crate::pointwise::probe_relu_input(x);
    let pw = Conv1x1 {
        n,
        ci: c,
        co: o,
        h,
        w: wd,
        stride: 1,
    };
    let m = n * h * wd;
    let mode = bn.mode(train, m, &[n, o, h, wd])?;
    // On a GPU the forward folds the running statistics itself, the state locked until then.
    #[cfg(feature = "cuda")]
    let (held, fold) = bn.begin_fold(x, &mode)?;
    let op = ReluConvBn {
        pw,
        bn: BnOp {
            n,
            c: o,
            hw: h * wd,
            eps: bn.eps(),
            mode: mode.clone(),
            #[cfg(feature = "cuda")]
            fold,
        },
        affine: affine.is_some(),
        saved: Arc::new(Mutex::new(None)),
        #[cfg(feature = "cuda")]
        saved_gpu: Arc::new(Mutex::new(None)),
        frozen: crate::frozen::weights_frozen(),
    };
    let y = x.contiguous()?.apply_op2(&packed, op)?;
    #[cfg(feature = "cuda")]
    bn.finish_running(held, &mode, m)?;
    #[cfg(not(feature = "cuda"))]
    bn.update_running(&mode, m)?;
    Ok(y)
}

/// The fused op; `saved` holds the convolution's output of its forward on the CPU,
/// `saved_gpu` what a forward on a GPU left there.
struct ReluConvBn {
    pw: Conv1x1,
    bn: BnOp,
    /// Whether the second input holds an affine batch norm's weight and bias behind the
    /// convolution's weight.
    affine: bool,
    saved: Arc<Mutex<Option<CpuStorage>>>,
    #[cfg(feature = "cuda")]
    saved_gpu: Arc<Mutex<Option<Arc<crate::device::UnitSaved>>>>,
    /// Built under [`crate::with_frozen_weights`]: no weight gradients.
    frozen: bool,
}

/// `max(v, 0)` of every value of `src` into `dst` (cleared first), as [`crate::relu`] does.
fn rectify_into<T: Float>(src: &[T], dst: &mut Vec<T>) {
    dst.clear();
    dst.extend(src.iter().map(|&v| if v < T::ZERO { T::ZERO } else { v }));
}

impl ReluConvBn {
    fn forward<T: Float>(&self, x: &[T], packed: &[T]) -> Result<Vec<T>> {
        let (w, affine) =
            crate::fused::unpack_affine(packed, self.pw.co * self.pw.ci, self.pw.co, self.affine)?;
        let (n, ci, co, l) = (self.pw.n, self.pw.ci, self.pw.co, self.pw.l());
        let train = matches!(self.bn.mode, Mode::Train(_));
        let mut moments = vec![[0f64; 2]; n * co];
        let split = Split::chunks(n * co * l, co * l);
        let b = par_chunks_zeroed_with(
            split,
            &mut moments,
            co,
            Vec::new,
            |r: &mut Vec<T>, e, bn, mn| {
                rectify_into(&x[e * ci * l..(e + 1) * ci * l], r);
                self.pw.forward_example(r, w, bn);
                if train {
                    for (m, bp) in mn.iter_mut().zip(bn.chunks_exact(l)) {
                        *m = plane_moments(bp);
                    }
                }
            },
        );
        let (gamma, beta) = (affine.map(|p| p.0), affine.map(|p| p.1));
        let y = self
            .bn
            .run_with_moments(&b, gamma, beta, train.then_some(moments.as_slice()));
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(T::to_cpu_storage_owned(b));
        Ok(y)
    }

    /// `(dL/dx, dL/dpacked)`: the convolution weight's gradient followed, when affine, by the
    /// batch norm's (zeros without weight gradients).
    fn backward<T: Float>(&self, x: &[T], packed: &[T], g: &[T]) -> Result<(Vec<T>, Vec<T>)> {
        let (w, affine) =
            crate::fused::unpack_affine(packed, self.pw.co * self.pw.ci, self.pw.co, self.affine)?;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = saved.as_ref() else {
            bail!("relu_conv1x1_bn backward: the forward kept no activations");
        };
        let b = T::cpu_storage_as_slice(b)?;
        let gamma = affine.map(|(gm, _)| gm.iter().map(|v| v.to_f64()).collect());
        let bn_bwd = self.bn.backward_op(gamma)?;
        let coef = bn_bwd.coefficients(b, g);
        let weights = !self.frozen;
        let (n, ci, co, l) = (self.pw.n, self.pw.ci, self.pw.co, self.pw.l());
        // Per example the weight's partial gradient (left zero without weight gradients).
        let mut partial = vec![T::ZERO; n * co * ci];
        let split = Split::chunks(n * ci * l, ci * l);
        let gx = par_chunks_zeroed_with(
            split,
            &mut partial,
            co * ci,
            || (Vec::new(), Vec::new()),
            |(r, gb): &mut (Vec<T>, Vec<T>), e, gxn, part| {
                // dL/db of example e, plane by plane.
                gb.clear();
                gb.resize(co * l, T::ZERO);
                for (j, gbp) in gb.chunks_exact_mut(l).enumerate() {
                    let p = e * co + j;
                    coef.apply_plane(p, &g[p * l..(p + 1) * l], &b[p * l..(p + 1) * l], gbp);
                }
                let xn = &x[e * ci * l..(e + 1) * ci * l];
                if weights {
                    rectify_into(xn, r);
                }
                self.pw.backward_example(r, 0, w, gb, gxn, part, weights);
                // The ReLU's backward: the gradient flows where the input is positive.
                for (d, &v) in gxn.iter_mut().zip(xn) {
                    *d = if v > T::ZERO { *d } else { T::ZERO };
                }
            },
        );
        let mut gw = vec![T::ZERO; co * ci];
        if weights {
            // The batch sum as the convolution's own backward.
            for (j, d) in gw.iter_mut().enumerate() {
                *d = crate::conv1x1::batch_sum(&partial, n, co * ci, j);
            }
            if self.affine {
                gw.extend(bn_bwd.param_grads(&coef));
            }
        }
        Ok((gx, gw))
    }
}

impl CustomOp2 for ReluConvBn {
    fn name(&self) -> &'static str {
        "nas-relu-conv1x1-bn"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let launched = crate::device::unit_fwd(
            (s1, l1),
            None,
            (s2, l2),
            &self.device_unit(),
            self.bn.eps,
            self.bn.fold,
        )?;
        let Some((y, shape, saved)) = launched else {
            bail!(
                "relu_conv1x1_bn on CUDA: a shape the device kernels do not take ({:?})",
                l1.shape()
            );
        };
        self.bn.record_device_stats(self.name(), saved.stats())?;
        *self.saved_gpu.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(saved));
        Ok((y, shape))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("relu_conv1x1_bn", s1, |T| {
            let y = self.forward::<T>(slice(s1, l1)?, slice(s2, l2)?)?;
            let shape = (self.pw.n, self.pw.co, self.pw.h, self.pw.w);
            Ok((T::to_cpu_storage_owned(y), Shape::from(shape)))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _profile = crate::profile::scope("nas-relu-conv1x1-bn-bwd");
        let g = g.contiguous()?;
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return self.device_backward(x, packed, &g);
        }
        let (xs, xl) = x.storage_and_layout();
        let (ps, pl) = packed.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ps), Storage::Cpu(gs)) = (&*xs, &*ps, &*gs) else {
            bail!("relu_conv1x1_bn backward: tensors are not on the CPU");
        };
        let dev = x.device();
        dispatch_float!("relu_conv1x1_bn backward", xs, |T| {
            let (gx, gw) = self.backward::<T>(slice(xs, xl)?, slice(ps, pl)?, slice(gs, gl)?)?;
            let gx = Tensor::from_vec(gx, x.shape(), dev)?;
            if self.frozen {
                return Ok((Some(gx), None));
            }
            Ok((Some(gx), Some(Tensor::from_vec(gw, packed.shape(), dev)?)))
        })
    }
}

#[cfg(feature = "cuda")]
impl ReluConvBn {
    /// The op as the device kernels see it: a unit of one pointwise convolution.
    fn device_unit(&self) -> crate::device::DeviceUnit {
        let pw = &self.pw;
        crate::device::DeviceUnit {
            convs: crate::device::UnitConvs::Pointwise {
                n: pw.n,
                c: pw.ci,
                h: pw.h,
                w: pw.w,
            },
            co: pw.co,
            affine: self.affine,
        }
    }

    /// The backward of a forward that ran on a GPU, from what it left there: the gradients of
    /// `x` and of the packed weight (with an affine batch norm's weight and bias), the latter in
    /// a buffer of its own.
    fn device_backward(
        &self,
        x: &Tensor,
        packed: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved_gpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(saved) = saved else {
            bail!("relu_conv1x1_bn backward: the GPU forward kept no activations");
        };
        let packed = packed.contiguous()?;
        let unit = self.device_unit();
        let (gx, flat) = crate::handoff::device_backward(
            "nas-relu-conv1x1-bn-bwd-device",
            g,
            x.shape(),
            packed.elem_count(),
            |sg, lg| {
                let guards = [x, &packed].map(|t| t.storage_and_layout());
                let Some(s) = crate::device::cuda_storages(&guards) else {
                    bail!("relu_conv1x1_bn backward: a tensor is not on the GPU");
                };
                crate::device::unit_bwd(s[0], None, s[1], (sg, lg), &saved, &unit, !self.frozen)
            },
        )?;
        // No weight gradients under frozen weights: the backward made none.
        let g_packed = flat.map(|f| f.reshape(packed.shape())).transpose()?;
        Ok((Some(gx), g_packed))
    }
}
