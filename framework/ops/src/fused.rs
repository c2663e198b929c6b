//! `ReLU -> depthwise conv -> pointwise conv -> BatchNorm` as one op: the repeating unit of
//! DARTS' `SepConv` (twice) and `DilConv` (once) (quark0/darts `operations.py`), with the
//! affine-free batch norm of the search network.
//!
//! As separate ops, candle's backward allocates a zero gradient for each of the two
//! intermediate activations and adds the op's gradient into it (two extra passes and two
//! allocations per intermediate), and the graph holds three nodes. Here the forward keeps the
//! two intermediates (the depthwise output, which the pointwise weight gradient needs, and the
//! pointwise output, which the batch norm backward needs: what the separate ops keep too) and
//! the backward runs batch norm, pointwise and depthwise backward in a row on plain buffers,
//! returning the gradients of the input and of both weights. The kernels are the same
//! functions the separate ops call, in the same order, so values and gradients are the same
//! bit for bit (tested).
use crate::bn::{plane_moments, BatchNorm2d, BnOp, Mode};
use crate::conv1x1::Conv1x1;
use crate::cpu::{dispatch_float, slice, Float};
use crate::dwconv::PlaneForward;
use crate::fresh::{par_chunks_zeroed_two, par_chunks_zeroed_with, Split};
use crate::geom::Window;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Arc, Mutex};

/// `bn(conv1x1(depthwise_conv2d(relu(x), w_dw, stride, padding, dilation), w_pw))`.
///
/// `x` `[N, C, H, W]`, `w_dw` `[C, 1, k, k]`, `w_pw` `[O, C, 1, 1]`; `bn` over `O` channels,
/// in training mode (batch statistics, running statistics updated) when `train`, affine or
/// not (DARTS' search network has affine-free batch norms, its retraining network affine
/// ones: quark0/darts `operations.py`, `affine=False` in `model_search.py`). Differentiable
/// with respect to `x`, `w_dw`, `w_pw` and an affine `bn`'s weight and bias; one op and one
/// node in the autograd graph instead of three (no zero-filled gradients of the two
/// intermediate activations and no additions into them) on the CPU (f32, f64) and, in
/// training, on a CUDA device (three launches forward, five backward). An affine `bn`'s
/// weight and bias enter the op packed behind the pointwise weight (a concatenation of
/// `O * C + 2 * O` values: the op has room for three inputs). On a GPU in evaluation mode the
/// ops run one by one.
#[allow(clippy::too_many_arguments)]
pub fn relu_dw_pw_bn(
    x: &Tensor,
    w_dw: &Tensor,
    w_pw: &Tensor,
    bn: &BatchNorm2d,
    stride: usize,
    padding: usize,
    dilation: usize,
    train: bool,
) -> Result<Tensor> {
    let affine = bn.affine_params();
    let gpu_unit = cfg!(feature = "cuda") && x.device().is_cuda() && train;
    if !(x.device().is_cpu() || gpu_unit) {
        let y = crate::relu_depthwise_conv2d(x, w_dw, stride, padding, dilation)?;
        let y = crate::conv2d(&y, w_pw, 1, 0)?;
        return bn.forward(&y, train);
    }
    let dims = x.dims4()?;
    let (n, c, _, _) = dims;
    let (wc, one, kh, kw) = w_dw.dims4()?;
    let (o, pc, ph, pw) = w_pw.dims4()?;
    if wc != c || one != 1 || kh != kw || pc != c || ph != 1 || pw != 1 {
        bail!(
            "relu_dw_pw_bn: weights must be [{c}, 1, k, k] and [O, {c}, 1, 1] for input {:?}, got {:?} and {:?}",
            x.dims(),
            w_dw.dims(),
            w_pw.dims()
        );
    }
    if bn.channels() != o {
        bail!(
            "relu_dw_pw_bn: the batch norm has {} channels, the pointwise conv {o} outputs",
            bn.channels()
        );
    }
    if x.dtype() != w_dw.dtype() || x.dtype() != w_pw.dtype() {
        bail!("relu_dw_pw_bn: x, w_dw and w_pw must have one dtype");
    }
    crate::cpu::check_float("relu_dw_pw_bn", x.dtype())?;
    let packed = pack_affine(w_pw, affine, o, x.dtype(), "relu_dw_pw_bn")?;
    crate::pointwise::probe_relu_input(x);
    let win = Window::new(dims, kh, stride, padding, dilation)?;
    let pw = Conv1x1 {
        n,
        ci: c,
        co: o,
        h: win.oh,
        w: win.ow,
        stride: 1,
    };
    let m = n * win.oh * win.ow;
    let mode = bn.mode(train, m, &[n, o, win.oh, win.ow])?;
    // On a GPU the forward folds the running statistics itself, the state locked until then.
    #[cfg(feature = "cuda")]
    let (held, fold) = bn.begin_fold(x, &mode)?;
    let unit = Unit {
        geom: UnitGeom {
            win,
            pw,
            bn: BnOp {
                n,
                c: o,
                hw: win.oh * win.ow,
                eps: bn.eps(),
                mode: mode.clone(),
                #[cfg(feature = "cuda")]
                fold,
            },
        },
        affine: affine.is_some(),
        saved: Arc::new(Mutex::new(None)),
        #[cfg(feature = "cuda")]
        saved_gpu: Arc::new(Mutex::new(None)),
        frozen: crate::frozen::weights_frozen(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&w_dw.contiguous()?, &packed, unit)?;
    #[cfg(feature = "cuda")]
    bn.finish_running(held, &mode, m)?;
    #[cfg(not(feature = "cuda"))]
    bn.update_running(&mode, m)?;
    Ok(y)
}

/// The geometry and batch-norm statistics of one unit, with its forward and backward on
/// plain buffers (also used inside a fused mixed edge, `crate::edge`).
pub(crate) struct UnitGeom {
    pub win: Window,
    pub pw: Conv1x1,
    pub bn: BnOp,
}

impl UnitGeom {
    /// `(y, a, b)`: the output and the depthwise (`a`) and pointwise (`b`) outputs the
    /// backward needs; `a` only when `keep_a` (only the pointwise weight gradient reads it:
    /// without weight gradients, [`crate::with_frozen_weights`], it is not kept). `affine`:
    /// the batch norm's weight and bias, if it has them.
    ///
    /// Example by example: each worker takes one example through the ReLU and depthwise
    /// convolution (plane by plane), the pointwise convolution reading that output from cache,
    /// and the [`plane_moments`] of the batch norm's input while it is in cache; then one
    /// parallel pass normalises. Three passes over the batch fewer than the three ops (the
    /// pointwise convolution's read of `a`, the two statistics passes); the kernels and their
    /// order are the ops', so the results are the same bit for bit.
    pub(crate) fn forward<T: Float>(
        &self,
        x: &[T],
        w_dw: &[T],
        w_pw: &[T],
        affine: Option<(&[T], &[T])>,
        keep_a: bool,
    ) -> (Vec<T>, Option<Vec<T>>, Vec<T>) {
        let (n, ci, co) = (self.win.n, self.win.c, self.pw.co);
        let (ip, l) = (self.win.in_plane(), self.pw.l());
        let train = matches!(self.bn.mode, Mode::Train(_));
        let mut moments = vec![[0f64; 2]; n * co];
        let example = |dw: &mut PlaneForward<T>,
                       e: usize,
                       an: &mut [T],
                       bn: &mut [T],
                       mn: &mut [[f64; 2]]| {
            for (ch, ap) in an.chunks_exact_mut(l).enumerate() {
                let p = e * ci + ch;
                dw.plane(&x[p * ip..(p + 1) * ip], w_dw, &self.win, true, ch, ap);
            }
            self.pw.forward_example(an, w_pw, bn);
            if train {
                for (m, bp) in mn.iter_mut().zip(bn.chunks_exact(l)) {
                    *m = plane_moments(bp);
                }
            }
        };
        let split = Split::chunks(n * co * l, co * l);
        let (b, a) = if keep_a && ci * l > 0 {
            let (b, a) = par_chunks_zeroed_two(
                split,
                ci * l,
                &mut moments,
                co,
                PlaneForward::new,
                |dw, e, bn, an, mn| example(dw, e, an, bn, mn),
            );
            (b, Some(a))
        } else {
            let b = par_chunks_zeroed_with(
                split,
                &mut moments,
                co,
                || (PlaneForward::new(), Vec::new()),
                |(dw, an), e, bn, mn| {
                    an.clear();
                    an.resize(ci * l, T::ZERO);
                    example(dw, e, an, bn, mn)
                },
            );
            (b, keep_a.then(Vec::new))
        };
        let (gamma, beta) = (affine.map(|p| p.0), affine.map(|p| p.1));
        let y = self
            .bn
            .run_with_moments(&b, gamma, beta, train.then_some(moments.as_slice()));
        (y, a, b)
    }

    /// The gradients of the input, both weights and an affine batch norm's parameters
    /// ([`UnitGrads`]), from the forward's `a` and `b`, for the output gradient `g` times
    /// `bn_weight`: a scalar `s` (the gradient `s * g`: the scale enters the batch norm's
    /// backward as its weight, the rest being linear in it, so no scaled copy of `g`) or an
    /// affine batch norm's weight.
    ///
    /// Example by example: after the batch norm's reductions over the whole batch, each
    /// worker takes one example through the batch norm's, the pointwise and the depthwise
    /// backward with the example's `dL/db` and `dL/da` in its own per-example scratch, instead
    /// of writing and reading both as batch-sized buffers between three parallel passes. The
    /// arithmetic, its order and the per-example weight-gradient partials (summed over the
    /// batch in f64, in example order) are those of the three ops, so the results are the
    /// same bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward<T: Float>(
        &self,
        x: &[T],
        w_dw: &[T],
        w_pw: &[T],
        a: &[T],
        b: &[T],
        g: &[T],
        bn_weight: BnWeight<'_, T>,
        weights: bool,
    ) -> Result<UnitGrads<T>> {
        let bn_bwd = self.bn.backward_op(bn_weight.gammas(self.bn.c))?;
        let coef = bn_bwd.coefficients(b, g);
        let (n, ci, co) = (self.win.n, self.win.c, self.pw.co);
        let (ip, l) = (self.win.in_plane(), self.pw.l());
        let kk = self.win.k * self.win.k;
        // Per example: the depthwise partials (ci x k x k), then the pointwise ones (co x ci).
        let per_example = ci * kk + co * ci;
        let mut partial = vec![T::ZERO; n * per_example];
        let dw = crate::dwconv::PlaneBackward::new(w_dw, &self.win, true, weights);
        let split = Split::chunks(n * ci * ip, ci * ip);
        let gx = par_chunks_zeroed_with(
            split,
            &mut partial,
            per_example,
            || (crate::dwconv::PlaneScratch::new(), Vec::new(), Vec::new()),
            |(scratch, gb, ga), e, gxn, part| {
                // dL/db of example e, plane by plane.
                gb.clear();
                gb.resize(co * l, T::ZERO);
                for (j, gbp) in gb.chunks_exact_mut(l).enumerate() {
                    let p = e * co + j;
                    coef.apply_plane(p, &g[p * l..(p + 1) * l], &b[p * l..(p + 1) * l], gbp);
                }
                // dL/da (and the pointwise weight partial) of example e.
                ga.clear();
                ga.resize(ci * l, T::ZERO);
                let (part_dw, part_pw) = part.split_at_mut(ci * kk);
                self.pw
                    .backward_example(a, e, w_pw, gb, ga, part_pw, weights);
                // dL/dx (and the depthwise weight partials), channel by channel.
                for ch in 0..ci {
                    let p = e * ci + ch;
                    dw.plane(
                        scratch,
                        p,
                        &x[p * ip..(p + 1) * ip],
                        &ga[ch * l..(ch + 1) * l],
                        &mut gxn[ch * ip..(ch + 1) * ip],
                        &mut part_dw[ch * kk..(ch + 1) * kk],
                    );
                }
            },
        );
        // The batch sums in example order from +0.0, as the depthwise and pointwise ops sum.
        let sum_over_batch =
            |offset: usize| -> T { crate::conv1x1::batch_sum(&partial, n, per_example, offset) };
        let g_dw: Vec<T> = (0..ci * kk).map(sum_over_batch).collect();
        let g_pw: Vec<T> = if weights {
            (0..co * ci).map(|j| sum_over_batch(ci * kk + j)).collect()
        } else {
            vec![T::ZERO; co * ci]
        };
        let bn_params = match bn_weight {
            BnWeight::Affine(_) if weights => bn_bwd.param_grads(&coef),
            _ => Vec::new(),
        };
        Ok(UnitGrads {
            x: gx,
            w_dw: g_dw,
            w_pw: g_pw,
            bn_params,
        })
    }
}

/// What multiplies the normalised output of a unit's batch norm, for its backward.
#[derive(Clone, Copy)]
pub(crate) enum BnWeight<'a, T> {
    /// One scale for every channel (1: an affine-free batch norm; a mixing weight inside a
    /// fused edge).
    Scalar(f64),
    /// An affine batch norm's weight, one per channel.
    Affine(&'a [T]),
}

impl<T: Float> BnWeight<'_, T> {
    /// The per-channel weight of the batch norm's backward over `c` channels (`None`: 1).
    pub(crate) fn gammas(&self, c: usize) -> Option<Vec<f64>> {
        match self {
            BnWeight::Scalar(s) => (*s != 1.0).then(|| vec![*s; c]),
            BnWeight::Affine(gm) => Some(gm.iter().map(|v| v.to_f64()).collect()),
        }
    }
}

/// The gradients of a unit's backward ([`UnitGeom::backward`]).
pub(crate) struct UnitGrads<T> {
    /// dL/dx.
    pub x: Vec<T>,
    /// dL/dw_dw (zeros without weight gradients).
    pub w_dw: Vec<T>,
    /// dL/dw_pw (zeros without weight gradients).
    pub w_pw: Vec<T>,
    /// `[dL/dgamma, dL/dbeta]` of an affine batch norm (`2 * O` values), with weight
    /// gradients; otherwise empty.
    pub bn_params: Vec<T>,
}

/// The fused op; `saved` holds the depthwise and pointwise outputs of its forward on the CPU,
/// `saved_gpu` those of a forward on a GPU with the batch norm's statistics there.
struct Unit {
    geom: UnitGeom,
    /// Whether the third input holds an affine batch norm's weight and bias behind the
    /// pointwise weight.
    affine: bool,
    saved: Arc<Mutex<Option<(CpuStorage, CpuStorage)>>>,
    #[cfg(feature = "cuda")]
    saved_gpu: Arc<Mutex<Option<Arc<crate::device::UnitSaved>>>>,
    /// Built under [`crate::with_frozen_weights`]: the backward computes no weight gradients
    /// (an architecture step), the input's stays the same bit for bit.
    frozen: bool,
}

/// The convolution weight `w` (`[O, C, 1, 1]`) of a fused op, with an affine batch norm's
/// weight and bias packed behind it (`O * C + 2 * O` values; a candle custom op has room for
/// three inputs) when there are any: what [`unpack_affine`] takes apart. Under
/// [`crate::with_frozen_weights`] the parameters are packed detached: the op then gives them
/// no gradient, and candle's backward must not wait for one through the concatenation.
pub(crate) fn pack_affine(
    w: &Tensor,
    affine: Option<(&candle_core::Var, &candle_core::Var)>,
    o: usize,
    dtype: candle_core::DType,
    op: &str,
) -> Result<Tensor> {
    let Some((gamma, beta)) = affine else {
        return w.contiguous();
    };
    for p in [gamma.as_tensor(), beta.as_tensor()] {
        if p.dims() != [o] || p.dtype() != dtype {
            bail!(
                "{op}: the batch norm's affine parameters must be [{o}] of {dtype:?}, got {:?} {:?}",
                p.dims(),
                p.dtype()
            );
        }
    }
    let parts = [
        w.flatten_all()?,
        gamma.as_tensor().clone(),
        beta.as_tensor().clone(),
    ];
    if crate::frozen::weights_frozen() {
        Tensor::cat(&parts.map(|p| p.detach()), 0)
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// The convolution weight (`weight_len` values) and, when `affine`, the weight and bias of the
/// batch norm over `o` channels from what [`pack_affine`] made.
#[allow(clippy::type_complexity)]
pub(crate) fn unpack_affine<T>(
    packed: &[T],
    weight_len: usize,
    o: usize,
    affine: bool,
) -> Result<(&[T], Option<(&[T], &[T])>)> {
    let want = weight_len + if affine { 2 * o } else { 0 };
    if packed.len() != want {
        bail!(
            "fused op: {} values for the convolution weight{}, expected {want}",
            packed.len(),
            if affine {
                " and the batch norm's weight and bias"
            } else {
                ""
            }
        );
    }
    let (w, rest) = packed.split_at(weight_len);
    Ok((w, affine.then(|| rest.split_at(o))))
}

impl Unit {
    /// The pointwise weight and, when affine, the batch norm's weight and bias, from the
    /// third input.
    #[allow(clippy::type_complexity)]
    fn unpack<'a, T>(&self, packed: &'a [T]) -> Result<(&'a [T], Option<(&'a [T], &'a [T])>)> {
        let pw = &self.geom.pw;
        unpack_affine(packed, pw.co * pw.ci, pw.co, self.affine)
    }

    fn forward<T: Float>(&self, x: &[T], w_dw: &[T], packed: &[T]) -> Result<Vec<T>> {
        let (w_pw, affine) = self.unpack(packed)?;
        let (y, a, b) = self.geom.forward(x, w_dw, w_pw, affine, true);
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            T::to_cpu_storage_owned(a.unwrap_or_default()),
            T::to_cpu_storage_owned(b),
        ));
        Ok(y)
    }

    /// `(dL/dx, dL/dw_dw, dL/dpacked)`: the last the pointwise weight's gradient followed, when
    /// affine, by the batch norm's (without weight gradients the weights' parts are zeros and
    /// the batch norm's are left out; the op then returns none of them).
    fn backward<T: Float>(
        &self,
        x: &[T],
        w_dw: &[T],
        packed: &[T],
        g: &[T],
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let (w_pw, affine) = self.unpack(packed)?;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some((a, b)) = saved.as_ref() else {
            bail!("relu_dw_pw_bn backward: the forward kept no activations");
        };
        let (a, b) = (T::cpu_storage_as_slice(a)?, T::cpu_storage_as_slice(b)?);
        let bn_weight = match affine {
            Some((gamma, _)) => BnWeight::Affine(gamma),
            None => BnWeight::Scalar(1.0),
        };
        let mut grads = self
            .geom
            .backward(x, w_dw, w_pw, a, b, g, bn_weight, !self.frozen)?;
        grads.w_pw.append(&mut grads.bn_params);
        Ok((grads.x, grads.w_dw, grads.w_pw))
    }
}

impl CustomOp3 for Unit {
    fn name(&self) -> &'static str {
        "nas-relu-dw-pw-bn"
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
        let bn = &self.geom.bn;
        let launched = crate::device::unit_fwd(
            (s1, l1),
            Some((s2, l2)),
            (s3, l3),
            &self.device_unit(),
            bn.eps,
            bn.fold,
        )?;
        let Some((y, shape, saved)) = launched else {
            bail!(
                "relu_dw_pw_bn on CUDA: a shape the device kernels do not take ({:?} -> {} channels)",
                self.geom.win,
                self.geom.pw.co
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
        dispatch_float!("relu_dw_pw_bn", s1, |T| {
            let y = self.forward::<T>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?)?;
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((
                    self.geom.win.n,
                    self.geom.pw.co,
                    self.geom.win.oh,
                    self.geom.win.ow,
                )),
            ))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w_dw: &Tensor,
        w_pw: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _profile = crate::profile::scope("nas-relu-dw-pw-bn-bwd");
        let g = g.contiguous()?;
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return self.device_backward(x, w_dw, w_pw, &g);
        }
        let (xs, xl) = x.storage_and_layout();
        let (ds, dl) = w_dw.storage_and_layout();
        let (ps, pl) = w_pw.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ds), Storage::Cpu(ps), Storage::Cpu(gs)) =
            (&*xs, &*ds, &*ps, &*gs)
        else {
            bail!("relu_dw_pw_bn backward: tensors are not on the CPU");
        };
        let dev = x.device();
        dispatch_float!("relu_dw_pw_bn backward", xs, |T| {
            let (gx, g_dw, g_pw) = self.backward::<T>(
                slice(xs, xl)?,
                slice(ds, dl)?,
                slice(ps, pl)?,
                slice(gs, gl)?,
            )?;
            if self.frozen {
                return Ok((Some(Tensor::from_vec(gx, x.shape(), dev)?), None, None));
            }
            Ok((
                Some(Tensor::from_vec(gx, x.shape(), dev)?),
                Some(Tensor::from_vec(g_dw, w_dw.shape(), dev)?),
                Some(Tensor::from_vec(g_pw, w_pw.shape(), dev)?),
            ))
        })
    }
}

#[cfg(feature = "cuda")]
impl Unit {
    /// The unit as the device kernels see it.
    fn device_unit(&self) -> crate::device::DeviceUnit {
        crate::device::DeviceUnit {
            convs: crate::device::UnitConvs::Separable(self.geom.win),
            co: self.geom.pw.co,
            affine: self.affine,
        }
    }

    /// The backward of a forward that ran on a GPU, from what it left there
    /// ([`crate::device::unit_bwd`]): the gradients of `x`, `w_dw` and the packed pointwise
    /// weight (with an affine batch norm's weight and bias), the weights' in a buffer of their
    /// own (held until the end of the backward, they do not hold the input's gradient).
    #[allow(clippy::type_complexity)]
    fn device_backward(
        &self,
        x: &Tensor,
        w_dw: &Tensor,
        packed: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved_gpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(saved) = saved else {
            bail!("relu_dw_pw_bn backward: the GPU forward kept no activations");
        };
        let (w_dw, packed) = (w_dw.contiguous()?, packed.contiguous()?);
        let (nd, np) = (w_dw.elem_count(), packed.elem_count());
        let unit = self.device_unit();
        let (gx, flat) = crate::handoff::device_backward(
            "nas-relu-dw-pw-bn-bwd-device",
            g,
            x.shape(),
            nd + np,
            |sg, lg| {
                let guards = [x, &w_dw, &packed].map(|t| t.storage_and_layout());
                let Some(s) = crate::device::cuda_storages(&guards) else {
                    bail!("relu_dw_pw_bn backward: a tensor is not on the GPU");
                };
                crate::device::unit_bwd(
                    s[0],
                    Some(s[1]),
                    s[2],
                    (sg, lg),
                    &saved,
                    &unit,
                    !self.frozen,
                )
            },
        )?;
        // None under frozen weights: the backward made no weight gradients.
        let Some(flat) = flat else {
            return Ok((Some(gx), None, None));
        };
        let g_dw = flat.narrow(0, 0, nd)?.reshape(w_dw.shape())?;
        let g_packed = flat.narrow(0, nd, np)?.reshape(packed.shape())?;
        Ok((Some(gx), Some(g_dw), Some(g_packed)))
    }
}
