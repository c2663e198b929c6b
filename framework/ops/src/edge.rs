//! A whole DARTS mixed edge as one op: every candidate operation of the edge, their weighted
//! sum (Liu et al. 2019, DARTS, eq. 2; quark0/darts `model_search.py` `MixedOp`) and the
//! backward of all of it.
//!
//! As separate ops, candle's backward builds the gradient of every operation's output and of
//! the edge input as `zeros_like` + `add` per consumer: for an edge with seven operations, some
//! twenty passes over activation-sized tensors and as many allocations that do no arithmetic
//! of the step. Here the operations read the edge input directly, keep what their backward
//! needs (as the separate ops do), and the backward runs each operation's backward on
//! `w_k * dL/dy` and adds every input gradient into one buffer. The operation weights (depthwise
//! and pointwise convolutions) enter the graph through the taps of [`crate::weighted_sum`], so
//! their gradients reach the parameters as usual.
//!
//! Supported options: max and average pooling followed by an affine-free batch norm (the
//! search's pools), identity, `FactorizedReduce`, and chains of [`crate::relu_dw_pw_bn`] units
//! (`SepConv`, `DilConv`). The caller falls back to the separate ops for anything else (affine
//! batch norm, per-example weights). Values and gradients equal the separate ops' up to the
//! order in which the input gradient's terms are added (tested against them).
use crate::bn::{BatchNorm2d, BnOp, Mode};
use crate::conv1x1::Conv1x1;
use crate::cpu::{dispatch_float, slice, Float};
use crate::fused::{BnWeight, UnitGeom};
use crate::geom::Window;
use crate::mixed::{tap_chain, unread_scalar, with_slices, Geom, Slot, BLOCK};
use crate::pool::{AvgPool, PoolGrad};
use crate::reduce::ReduceGeom;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// One candidate operation of a fused mixed edge.
pub enum EdgeOption<'a> {
    /// Max pooling (square `kernel`, `stride`, `padding`) followed by `bn`.
    MaxPoolBn {
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
        /// The affine-free batch norm after the pool.
        bn: &'a BatchNorm2d,
    },
    /// Average pooling with `count_include_pad = false`, followed by `bn`.
    AvgPoolBn {
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
        /// The affine-free batch norm after the pool.
        bn: &'a BatchNorm2d,
    },
    /// The input itself.
    Identity,
    /// DARTS' `FactorizedReduce`: ReLU, two stride-2 1x1 convolutions (the second on the
    /// input shifted by one row and column), their outputs concatenated over channels, then
    /// `bn` (quark0/darts `operations.py`). The input's height and width must be even.
    FactorizedReduce {
        /// First convolution `[O/2, C, 1, 1]`.
        w_a: &'a Tensor,
        /// Second convolution `[O/2, C, 1, 1]`.
        w_b: &'a Tensor,
        /// The affine-free batch norm over `O` channels.
        bn: &'a BatchNorm2d,
    },
    /// [`crate::relu_dw_pw_bn`] units applied in turn.
    Units(Vec<UnitSpec<'a>>),
}

/// One `ReLU -> depthwise -> pointwise -> BN` unit of an [`EdgeOption::Units`] chain.
pub struct UnitSpec<'a> {
    /// Depthwise weight `[C, 1, k, k]`.
    pub w_dw: &'a Tensor,
    /// Pointwise weight `[O, C, 1, 1]`.
    pub w_pw: &'a Tensor,
    /// The affine-free batch norm over `O` channels.
    pub bn: &'a BatchNorm2d,
    /// Depthwise stride.
    pub stride: usize,
    /// Depthwise padding.
    pub padding: usize,
    /// Depthwise dilation.
    pub dilation: usize,
}

/// Whether [`mixed_edge`] takes `options` on `x` in a training (`train`) or evaluation
/// forward: f32/f64 and only affine-free batch norms; on the CPU any of the options, on a CUDA
/// device (the `cuda` feature) in training only, with at most 32 options (the separate ops
/// serve the rest there).
pub fn fusable(x: &Tensor, options: &[EdgeOption], train: bool) -> bool {
    let device = x.device().is_cpu() || gpu_fusable(x, options, train);
    device
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && options.iter().all(|o| match o {
            EdgeOption::MaxPoolBn { bn, .. } | EdgeOption::AvgPoolBn { bn, .. } => !bn.is_affine(),
            EdgeOption::Identity => true,
            EdgeOption::FactorizedReduce { bn, .. } => !bn.is_affine(),
            EdgeOption::Units(us) => us.iter().all(|u| !u.bn.is_affine()),
        })
}

/// Whether the GPU path of the fused edge ([`crate::edge_device`]) serves `options` on `x`:
/// training, at most [`crate::device::MAX_OPTIONS`] options, and every batch norm a different
/// one (each is locked from the edge's construction until its forward has folded the running
/// statistics; the same one twice would wait for itself).
#[cfg(feature = "cuda")]
fn gpu_fusable(x: &Tensor, options: &[EdgeOption], train: bool) -> bool {
    let mut norms: Vec<*const BatchNorm2d> = Vec::new();
    for o in options {
        match o {
            EdgeOption::MaxPoolBn { bn, .. }
            | EdgeOption::AvgPoolBn { bn, .. }
            | EdgeOption::FactorizedReduce { bn, .. } => norms.push(*bn),
            EdgeOption::Units(us) => norms.extend(us.iter().map(|u| u.bn as *const _)),
            EdgeOption::Identity => {}
        }
    }
    let count = norms.len();
    norms.sort_unstable();
    norms.dedup();
    x.device().is_cuda()
        && train
        && options.len() <= crate::device::MAX_OPTIONS
        && norms.len() == count
}

#[cfg(not(feature = "cuda"))]
fn gpu_fusable(_: &Tensor, _: &[EdgeOption], _: bool) -> bool {
    false
}

/// `sum_k weights[k] * options[k](x)` as one op (see the module doc); `weights` `[K]`, one per
/// option. Batch norms use batch statistics and update their running ones when `train`.
/// Differentiable with respect to `x`, `weights` and every unit's weights.
pub fn mixed_edge<'a>(
    x: &Tensor,
    weights: &Tensor,
    options: &[EdgeOption<'a>],
    train: bool,
) -> Result<Tensor> {
    if options.is_empty() || weights.dims() != [options.len()] {
        bail!(
            "mixed_edge: {} options need weights [{}], got {:?}",
            options.len(),
            options.len(),
            weights.dims()
        );
    }
    if !fusable(x, options, train) || weights.dtype() != x.dtype() {
        bail!("mixed_edge: options, device or dtype it does not take (see `fusable`)");
    }
    let x = x.contiguous()?;
    let dims = x.dims4()?;
    let mut params: Vec<Tensor> = Vec::new();
    let mut plans = Vec::with_capacity(options.len());
    // Every batch norm with the statistics mode of this forward and its values per channel.
    let mut norms: Vec<Norm<'a>> = Vec::new();
    let mut out_dims = None;
    for o in options {
        let (plan, od) = match o {
            EdgeOption::MaxPoolBn {
                kernel,
                stride,
                padding,
                bn,
            }
            | EdgeOption::AvgPoolBn {
                kernel,
                stride,
                padding,
                bn,
            } => {
                let win = pool_window(dims, *kernel, *stride, *padding)?;
                let od = (dims.0, dims.1, win.oh, win.ow);
                let bn = bn_op(&mut norms, bn, &x, od, train)?;
                let plan = if matches!(o, EdgeOption::MaxPoolBn { .. }) {
                    Plan::Max { win, bn }
                } else {
                    let pool = AvgPool {
                        win,
                        count_include_pad: false,
                    };
                    Plan::Avg { pool, bn }
                };
                (plan, od)
            }
            EdgeOption::Identity => (Plan::Identity, dims),
            EdgeOption::FactorizedReduce { w_a, w_b, bn } => {
                let (n, c, h, w) = dims;
                let (co, ci, kh, kw) = w_a.dims4()?;
                if w_b.dims() != w_a.dims() || ci != c || kh != 1 || kw != 1 {
                    bail!(
                        "mixed_edge: FactorizedReduce weights {:?} and {:?} on input {dims:?}",
                        w_a.dims(),
                        w_b.dims()
                    );
                }
                crate::reduce::check_even("mixed_edge", h, w)?;
                let od = (n, 2 * co, h / 2, w / 2);
                let plan = Plan::Reduce {
                    geom: ReduceGeom::new(dims, co, bn_op(&mut norms, bn, &x, od, train)?),
                    pi: params.len(),
                };
                params.push(w_a.contiguous()?);
                params.push(w_b.contiguous()?);
                (plan, od)
            }
            EdgeOption::Units(units) => {
                let mut d = dims;
                let mut geoms = Vec::with_capacity(units.len());
                for u in units {
                    let (wc, one, kh, kw) = u.w_dw.dims4()?;
                    let (o, pc, ph, pw) = u.w_pw.dims4()?;
                    if wc != d.1 || one != 1 || kh != kw || pc != d.1 || ph != 1 || pw != 1 {
                        bail!(
                            "mixed_edge: unit weights {:?} and {:?} do not fit input {d:?}",
                            u.w_dw.dims(),
                            u.w_pw.dims()
                        );
                    }
                    let win = Window::new(d, kh, u.stride, u.padding, u.dilation)?;
                    let od = (d.0, o, win.oh, win.ow);
                    let pwc = Conv1x1 {
                        n: d.0,
                        ci: d.1,
                        co: o,
                        h: win.oh,
                        w: win.ow,
                        stride: 1,
                    };
                    let bn = bn_op(&mut norms, u.bn, &x, od, train)?;
                    geoms.push((UnitGeom { win, pw: pwc, bn }, params.len()));
                    params.push(u.w_dw.contiguous()?);
                    params.push(u.w_pw.contiguous()?);
                    d = od;
                }
                (Plan::Units(geoms), d)
            }
        };
        match out_dims {
            None => out_dims = Some(od),
            Some(prev) if prev != od => {
                bail!("mixed_edge: options give outputs {prev:?} and {od:?}")
            }
            Some(_) => {}
        }
        plans.push(plan);
    }
    let out_dims = out_dims.unwrap_or(dims);
    for p in &params {
        if p.dtype() != x.dtype() {
            bail!("mixed_edge: weights and input must have one dtype");
        }
    }
    crate::pointwise::probe_relu_input(&x);
    let slot: Slot = Arc::new(Mutex::new(vec![None; params.len()]));
    // Under `with_frozen_weights` no weight gradient is wanted: no taps, and the backward
    // skips the weight-gradient work.
    let frozen = crate::frozen::weights_frozen();
    let tracked: Vec<bool> = params.iter().map(|p| p.track_op() && !frozen).collect();
    // The weights join the graph as the weighted sum's operands do.
    let link = tap_chain(&params, &tracked, &slot, &x)?;
    let numel = out_dims.0 * out_dims.1 * out_dims.2 * out_dims.3;
    let edge = Edge {
        plans,
        params,
        tracked,
        slot,
        out_dims,
        mix: Geom {
            k: options.len(),
            numel,
            chunk: BLOCK,
            per_example: false,
        },
        saved: Mutex::new(None),
        #[cfg(feature = "cuda")]
        saved_gpu: Mutex::new(None),
    };
    let y = x.apply_op3(&weights.contiguous()?, &link, edge)?;
    for norm in norms {
        #[cfg(feature = "cuda")]
        norm.bn.finish_running(norm.held, &norm.mode, norm.m)?;
        #[cfg(not(feature = "cuda"))]
        norm.bn.update_running(&norm.mode, norm.m)?;
    }
    Ok(y)
}

/// A batch norm of the edge with the statistics mode of this forward and its values per
/// channel; on a GPU in training, its state locked until the forward (which folds the running
/// statistics) has run ([`BatchNorm2d::begin_fold`]).
struct Norm<'a> {
    bn: &'a BatchNorm2d,
    mode: Mode,
    m: usize,
    #[cfg(feature = "cuda")]
    held: Option<crate::bn::RunningHold<'a>>,
}

/// The kernel of `bn` on `d` (the input `x` of the edge gives the device) in this forward's
/// mode, recorded in `norms` for the running statistics.
fn bn_op<'a>(
    norms: &mut Vec<Norm<'a>>,
    bn: &'a BatchNorm2d,
    x: &Tensor,
    d: (usize, usize, usize, usize),
    train: bool,
) -> Result<BnOp> {
    if bn.channels() != d.1 {
        bail!(
            "mixed_edge: batch norm of {} channels on {d:?}",
            bn.channels()
        );
    }
    let m = d.0 * d.2 * d.3;
    let mode = bn.mode(train, m, &[d.0, d.1, d.2, d.3])?;
    #[cfg(feature = "cuda")]
    let (held, fold) = bn.begin_fold(x, &mode)?;
    #[cfg(not(feature = "cuda"))]
    let _ = x;
    norms.push(Norm {
        bn,
        mode: mode.clone(),
        m,
        #[cfg(feature = "cuda")]
        held,
    });
    Ok(BnOp {
        n: d.0,
        c: d.1,
        hw: d.2 * d.3,
        eps: bn.eps(),
        mode,
        #[cfg(feature = "cuda")]
        fold,
    })
}

fn pool_window(
    dims: (usize, usize, usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Window> {
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        bail!("mixed_edge: pool kernel {kernel}, stride {stride}, padding {padding}");
    }
    Window::new(dims, kernel, stride, padding, 1)
}

/// One option's geometry; a unit carries the index of its depthwise weight in `params` (its
/// pointwise weight follows).
pub(crate) enum Plan {
    Max {
        win: Window,
        bn: BnOp,
    },
    Avg {
        pool: AvgPool,
        bn: BnOp,
    },
    Identity,
    /// `FactorizedReduce` and the index of its first weight in `params` (the second follows).
    Reduce {
        geom: ReduceGeom,
        pi: usize,
    },
    Units(Vec<(UnitGeom, usize)>),
}

impl Plan {
    /// The option's name in `nas bench --profile` (time inside the fused edge).
    fn profile_name(&self, backward: bool) -> &'static str {
        match (self, backward) {
            (Plan::Max { .. }, false) => "  in edge: max pool + BN",
            (Plan::Max { .. }, true) => "  in edge: max pool + BN bwd",
            (Plan::Avg { .. }, false) => "  in edge: avg pool + BN",
            (Plan::Avg { .. }, true) => "  in edge: avg pool + BN bwd",
            (Plan::Identity, false) => "  in edge: identity",
            (Plan::Identity, true) => "  in edge: identity bwd",
            (Plan::Reduce { .. }, false) => "  in edge: factorized reduce",
            (Plan::Reduce { .. }, true) => "  in edge: factorized reduce bwd",
            (Plan::Units(_), false) => "  in edge: relu-dw-pw-bn units",
            (Plan::Units(_), true) => "  in edge: relu-dw-pw-bn units bwd",
        }
    }
}

/// What one option's forward keeps for the backward (besides its output).
enum Kept {
    /// Pool output, argmax taps.
    Max(CpuStorage, Vec<u32>),
    /// Pool output.
    Avg(CpuStorage),
    Identity,
    /// The rectified input, its shifted copy, the concatenated convolution outputs.
    Reduce(CpuStorage, CpuStorage, CpuStorage),
    /// Per unit: depthwise output (empty without weight gradients), pointwise output, and
    /// (all but the last unit) its output.
    Units(Vec<(CpuStorage, CpuStorage, Option<CpuStorage>)>),
}

/// The forward's record: per option what its backward needs and its output (`None` for the
/// identity, whose output is the input, and for a lone option of weight 1, whose output is
/// the op's own).
struct Saved {
    kept: Vec<Kept>,
    outs: Vec<Option<CpuStorage>>,
}

pub(crate) struct Edge {
    pub(crate) plans: Vec<Plan>,
    pub(crate) params: Vec<Tensor>,
    pub(crate) tracked: Vec<bool>,
    pub(crate) slot: Slot,
    pub(crate) out_dims: (usize, usize, usize, usize),
    mix: Geom,
    saved: Mutex<Option<Saved>>,
    /// What a forward on a GPU left there for its backward ([`crate::edge_device`]).
    #[cfg(feature = "cuda")]
    pub(crate) saved_gpu: Mutex<Option<crate::edge_device::Saved>>,
}

/// `dst += scale * src`, in parallel blocks (a plain add when `scale` is 1).
fn add_scaled_into<T: Float>(dst: &mut [T], src: &[T], scale: T) {
    let one = scale == T::ONE;
    dst.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .for_each(|(d, s)| {
            if one {
                for (a, &b) in d.iter_mut().zip(s) {
                    *a += b;
                }
            } else {
                for (a, &b) in d.iter_mut().zip(s) {
                    *a += scale * b;
                }
            }
        });
}

fn own<T: Float>(v: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(v)
}

fn view<T: Float>(s: &CpuStorage) -> Result<&[T]> {
    T::cpu_storage_as_slice(s)
}

impl Edge {
    fn forward<T: Float>(&self, x: &[T], w: &[T], params: &[&[T]]) -> Result<Vec<T>> {
        let mut kept = Vec::with_capacity(self.plans.len());
        let mut outs: Vec<Option<Vec<T>>> = Vec::with_capacity(self.plans.len());
        for plan in &self.plans {
            let _profile = crate::profile::scope(plan.profile_name(false));
            let (k, y) = match plan {
                Plan::Max { win, bn } => {
                    let (p, idx) = crate::pool::max_pool_forward(x, win);
                    let y = bn.run(&p, None, None);
                    (Kept::Max(own(p), idx), Some(y))
                }
                Plan::Avg { pool, bn } => {
                    let p = pool.forward(x);
                    let y = bn.run(&p, None, None);
                    (Kept::Avg(own(p)), Some(y))
                }
                Plan::Identity => (Kept::Identity, None),
                Plan::Reduce { geom, pi } => {
                    let (y, k) = geom.forward(x, params[*pi], params[*pi + 1], None);
                    (Kept::Reduce(own(k.r), own(k.sh), own(k.z)), Some(y))
                }
                Plan::Units(units) => {
                    let mut inner: Vec<(CpuStorage, CpuStorage, Option<CpuStorage>)> =
                        Vec::with_capacity(units.len());
                    let mut last: Option<Vec<T>> = None;
                    for (geom, pi) in units {
                        // The depthwise output only serves the weight gradients.
                        let keep_a = self.tracked[*pi] || self.tracked[*pi + 1];
                        let (y, a, b) = {
                            let input = match &last {
                                Some(o) => o.as_slice(),
                                None => x,
                            };
                            geom.forward(input, params[*pi], params[*pi + 1], None, keep_a)
                        };
                        if let (Some(prev), Some(entry)) = (last.take(), inner.last_mut()) {
                            entry.2 = Some(own(prev));
                        }
                        inner.push((own(a.unwrap_or_default()), own(b), None));
                        last = Some(y);
                    }
                    (Kept::Units(inner), last)
                }
            };
            kept.push(k);
            outs.push(y);
        }
        // A lone option of weight 1 (GDAS, a hard sample): its output is the sum itself.
        let lone = self.plans.len() == 1 && w.first() == Some(&T::ONE);
        let y = match (lone, outs.first_mut()) {
            (true, Some(o @ Some(_))) => o.take(),
            _ => None,
        };
        let y = match y {
            Some(y) => y,
            None => {
                let ys: Vec<&[T]> = outs.iter().map(|o| o.as_deref().unwrap_or(x)).collect();
                let _profile = crate::profile::scope("  in edge: weighted sum");
                self.mix.forward(&ys, w)
            }
        };
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved {
            kept,
            outs: outs.into_iter().map(|o| o.map(own)).collect(),
        });
        Ok(y)
    }

    /// `(dL/dx, dL/dweights, dL/dparams)`.
    #[allow(clippy::type_complexity)]
    fn backward<T: Float>(
        &self,
        x: &[T],
        w: &[T],
        params: &[&[T]],
        g: &[T],
        y: &[T],
    ) -> Result<(Vec<T>, Vec<T>, Vec<Option<Vec<T>>>)> {
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Saved { kept, outs }) = saved.as_ref() else {
            bail!("mixed_edge backward: the forward kept nothing");
        };
        // Each option's output: kept, the input (identity) or the op's output (a lone option).
        let ys: Vec<&[T]> = kept
            .iter()
            .zip(outs)
            .map(|(k, o)| match (k, o) {
                (_, Some(o)) => view::<T>(o),
                (Kept::Identity, None) => Ok(x),
                (_, None) => Ok(y),
            })
            .collect::<Result<_>>()?;
        // dL/dw_k = <g, ys[k]>, as the weighted sum computes it; dL/dys[k] = w_k g is never
        // built: each option's backward takes g and the scale w_k (a batch norm's backward
        // weight, linear in the rest), and the identity adds w_k g.
        let (_, gw) = {
            let _profile = crate::profile::scope("  in edge: weighted sum bwd");
            self.mix.backward(&ys, w, g, &vec![false; ys.len()], true)
        };
        let mut gx = crate::fresh::zeros(x.len());
        let mut gparams: Vec<Option<Vec<T>>> = vec![None; self.params.len()];
        for ((plan, kept), &wk) in self.plans.iter().zip(kept).zip(w) {
            let _profile = crate::profile::scope(plan.profile_name(true));
            let scale = wk.to_f64();
            match (plan, kept) {
                // The batch norm's input gradient is made plane by plane where the pool's
                // backward reads it (never a batch-sized buffer).
                (Plan::Max { win, bn }, Kept::Max(p, idx)) => {
                    let x = view::<T>(p)?;
                    let coef = bn.backward_op(Some(vec![scale; bn.c]))?.coefficients(x, g);
                    let gp = PoolGrad::BatchNorm { coef: &coef, g, x };
                    crate::pool::max_pool_backward_from(&mut gx, &gp, idx, win);
                }
                (Plan::Avg { pool, bn }, Kept::Avg(p)) => {
                    let x = view::<T>(p)?;
                    let coef = bn.backward_op(Some(vec![scale; bn.c]))?.coefficients(x, g);
                    pool.backward_from(&mut gx, &PoolGrad::BatchNorm { coef: &coef, g, x });
                }
                (Plan::Identity, Kept::Identity) => add_scaled_into(&mut gx, g, wk),
                (Plan::Reduce { geom, pi }, Kept::Reduce(r, sh, z)) => {
                    let kept = (view::<T>(r)?, view::<T>(sh)?, view::<T>(z)?);
                    let need = self.tracked[*pi] || self.tracked[*pi + 1];
                    let (wa, wb) = (params[*pi], params[*pi + 1]);
                    let grads = geom.backward_into(
                        &mut gx,
                        kept,
                        (wa, wb),
                        g,
                        BnWeight::Scalar(scale),
                        need,
                    )?;
                    gparams[*pi] = Some(grads.w_a);
                    gparams[*pi + 1] = Some(grads.w_b);
                }
                (Plan::Units(units), Kept::Units(inner)) => {
                    let mut g_cur: Option<Vec<T>> = None;
                    for (i, ((geom, pi), o)) in units.iter().zip(inner).enumerate().rev() {
                        let input = match i.checked_sub(1).map(|j| &inner[j].2) {
                            None => x,
                            Some(Some(prev)) => view::<T>(prev)?,
                            Some(None) => bail!("mixed_edge backward: unit {i} lost its input"),
                        };
                        let (a, b) = (view::<T>(&o.0)?, view::<T>(&o.1)?);
                        // The last unit takes g scaled by w_k; the others their successor's
                        // input gradient, already scaled.
                        let (gy, s) = match &g_cur {
                            Some(gc) => (gc.as_slice(), 1.0),
                            None => (g, scale),
                        };
                        let need = self.tracked[*pi] || self.tracked[*pi + 1];
                        let grads = geom.backward(
                            input,
                            params[*pi],
                            params[*pi + 1],
                            a,
                            b,
                            gy,
                            BnWeight::Scalar(s),
                            need,
                        )?;
                        gparams[*pi] = Some(grads.w_dw);
                        gparams[*pi + 1] = Some(grads.w_pw);
                        g_cur = Some(grads.x);
                    }
                    match g_cur {
                        Some(gc) => add_scaled_into(&mut gx, &gc, T::ONE),
                        None => add_scaled_into(&mut gx, g, wk),
                    }
                }
                _ => bail!("mixed_edge backward: kept activations do not match the plan"),
            }
        }
        Ok((gx, gw, gparams))
    }
}

impl CustomOp3 for Edge {
    fn name(&self) -> &'static str {
        "nas-mixed-edge"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        _s3: &candle_core::CudaStorage,
        _l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        crate::edge_device::forward(self, (s1, l1), (s2, l2))
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        _s3: &CpuStorage,
        _l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let params: Vec<&Tensor> = self.params.iter().collect();
        dispatch_float!("mixed_edge", s1, |T| {
            let (x, w): (&[T], &[T]) = (slice(s1, l1)?, slice(s2, l2)?);
            let y = with_slices::<T, _>(&params, |ps| self.forward(x, w, ps))?;
            Ok((T::to_cpu_storage_owned(y), Shape::from(self.out_dims)))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        link: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _profile = crate::profile::scope("nas-mixed-edge-bwd");
        let g = g.contiguous()?;
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            let (gx, gw) = crate::edge_device::backward(self, x, w, &g)?;
            return Ok((Some(gx), Some(gw), Some(unread_scalar(link)?)));
        }
        let res = res.contiguous()?;
        let mut all: Vec<&Tensor> = vec![x, w, &g, &res];
        all.extend(self.params.iter());
        let dev = Device::Cpu;
        let (gx, gw) = match x.dtype() {
            DType::F32 => self.finish::<f32>(&all, &dev)?,
            DType::F64 => self.finish::<f64>(&all, &dev)?,
            d => bail!("mixed_edge backward: unsupported dtype {d:?}"),
        };
        Ok((Some(gx), Some(gw), Some(unread_scalar(link)?)))
    }
}

impl Edge {
    /// Runs the backward on `[x, w, g, y, params...]`, leaves the parameters' gradients for
    /// the taps and returns `(dL/dx, dL/dw)`.
    fn finish<T: Float>(&self, all: &[&Tensor], dev: &Device) -> Result<(Tensor, Tensor)> {
        let (gx, gw, gp) =
            with_slices::<T, _>(all, |s| self.backward(s[0], s[1], &s[4..], s[2], s[3]))?;
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (g, p)) in gp.into_iter().zip(&self.params).enumerate() {
            if self.tracked[i] {
                let Some(g) = g else {
                    bail!("mixed_edge backward: no gradient for weight {i}");
                };
                slot[i] = Some(Tensor::from_vec(g, p.shape(), dev)?);
            }
        }
        Ok((
            Tensor::from_vec(gx, all[0].shape(), dev)?,
            Tensor::from_vec(gw, all[1].shape(), dev)?,
        ))
    }
}
