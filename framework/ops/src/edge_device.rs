//! The fused mixed edge ([`crate::mixed_edge`]) on a CUDA device, in training: every option's
//! forward through the device kernels (pooling and batch norm, the fused separable units),
//! their weighted sum, and the backward of all of it in one op.
//!
//! As separate ops, candle's backward gives every option's output, the pools' outputs and the
//! edge input a zero-filled gradient buffer and an addition per consumer: for a DARTS edge of
//! eight options some twenty-five launches of no arithmetic of the step. Here the backward is
//! one launch for the weighted sum's (every `w_k * g` and the mixing weights' gradient), each
//! option's own (the batch norm's and the pool's; the units' five each), and one sum of the
//! options' input gradients into the edge input's; the mixing weights' and the units' weight
//! gradients come out in buffers of their own ([`Handoff`]), so that holding them until the end
//! of the backward does not hold an activation-sized buffer.
//!
//! Served: max and average pooling followed by an affine-free batch norm, identity,
//! `FactorizedReduce` (two launches forward, three backward: [`device::factorized_reduce_fwd`]),
//! chains of separable units, up to [`crate::device::MAX_OPTIONS`] options (evaluation goes
//! through the separate ops; [`crate::fusable`]). The values are those of the
//! separate ops on the device up to the order of additions (tests/device.rs).
use std::sync::Arc;

use candle_core::{bail, CudaStorage, Layout, Result, Shape, Tensor};

use crate::bn::BnOp;
use crate::device::{self, DeviceBatchStats, DeviceUnit, ReduceSaved, UnitConvs, UnitSaved};
use crate::edge::{Edge, Plan};
use crate::handoff::Handoff;

/// What one option's forward keeps on the device for its backward.
enum Kept {
    /// The pool's output (the batch norm's input) and the batch norm's statistics.
    Pool {
        p: CudaStorage,
        stats: Arc<DeviceBatchStats>,
    },
    Identity,
    /// The concatenated convolution outputs and the batch norm's statistics.
    Reduce(ReduceSaved),
    /// Per unit: its input (`None` for the first, whose input is the edge's) and what its
    /// forward kept.
    Units(Vec<(Option<CudaStorage>, UnitSaved)>),
}

/// The forward's record: per option what its backward needs and its output (`None` for the
/// identity, whose output is the edge's input).
pub(crate) struct Saved {
    kept: Vec<Kept>,
    outs: Vec<Option<CudaStorage>>,
}

/// Every option's output under its layout: its own (`out_layout`) or, for the identity, the
/// edge's input `x`.
fn option_outputs<'a>(
    outs: &'a [Option<CudaStorage>],
    out_layout: &'a Layout,
    x: (&'a CudaStorage, &'a Layout),
) -> Vec<(&'a CudaStorage, &'a Layout)> {
    outs.iter()
        .map(|o| match o {
            Some(s) => (s, out_layout),
            None => x,
        })
        .collect()
}

/// An edge's separable unit (affine-free) as the device kernels see it.
fn separable(geom: &crate::fused::UnitGeom) -> DeviceUnit {
    DeviceUnit {
        convs: UnitConvs::Separable(geom.win),
        co: geom.pw.co,
        affine: false,
    }
}

/// Records the batch statistics a device forward of `bn` left, for its running update.
fn record(bn: &BnOp, stats: Arc<DeviceBatchStats>) -> Result<()> {
    bn.record_device_stats("mixed_edge", stats)
}

/// The edge's forward on the device: `sum_k w[k] * options[k](x)`.
pub(crate) fn forward(
    edge: &Edge,
    (sx, lx): (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let param_guards: Vec<_> = edge.params.iter().map(|p| p.storage_and_layout()).collect();
    let Some(params) = device::cuda_storages(&param_guards) else {
        bail!("mixed_edge on CUDA: a weight is not on the GPU");
    };
    let out_shape = Shape::from(edge.out_dims);
    let out_layout = Layout::contiguous(out_shape.clone());
    let mut kept = Vec::with_capacity(edge.plans.len());
    let mut outs = Vec::with_capacity(edge.plans.len());
    for plan in &edge.plans {
        let (k, y) = match plan {
            Plan::Max { bn, .. } | Plan::Avg { bn, .. } => {
                let pooled = match plan {
                    Plan::Avg { pool, .. } => {
                        device::avg_pool(sx, lx, &pool.win, pool.count_include_pad, false)?
                    }
                    Plan::Max { win, .. } => device::max_pool(sx, lx, win)?,
                    _ => None,
                };
                let Some((p, shape)) = pooled else {
                    bail!("mixed_edge on CUDA: a pool the device kernels do not take ({lx:?})");
                };
                let layout = Layout::contiguous(shape);
                let normed = device::batch_norm_train(
                    (&p, &layout),
                    None,
                    (bn.n, bn.c, bn.hw),
                    bn.eps,
                    bn.fold,
                )?;
                let Some((y, _, stats)) = normed else {
                    bail!("mixed_edge on CUDA: a batch norm the device kernels do not take");
                };
                let stats = Arc::new(stats);
                record(bn, stats.clone())?;
                (Kept::Pool { p, stats }, Some(y))
            }
            Plan::Identity => (Kept::Identity, None),
            Plan::Reduce { geom, pi } => {
                let (a, bn) = (&geom.a, &geom.bn);
                let g = device::reduce_geom(a.n, a.ci, a.h, a.w, 2 * a.co)?;
                let launched = device::factorized_reduce_fwd(
                    [(sx, lx), params[*pi], params[*pi + 1]],
                    g,
                    false,
                    bn.eps,
                    bn.fold,
                )?;
                let Some((y, _, saved)) = launched else {
                    bail!("mixed_edge on CUDA: a FactorizedReduce the device kernels do not take ({lx:?})");
                };
                record(bn, saved.stats())?;
                (Kept::Reduce(saved), Some(y))
            }
            Plan::Units(units) => {
                let mut inner: Vec<(Option<CudaStorage>, UnitSaved)> =
                    Vec::with_capacity(units.len());
                let mut current: Option<(CudaStorage, Layout)> = None;
                for (geom, pi) in units {
                    let input = match &current {
                        Some((s, l)) => (s, l),
                        None => (sx, lx),
                    };
                    let launched = device::unit_fwd(
                        input,
                        Some(params[*pi]),
                        params[*pi + 1],
                        &separable(geom),
                        geom.bn.eps,
                        geom.bn.fold,
                    )?;
                    let Some((y, shape, saved)) = launched else {
                        bail!(
                            "mixed_edge on CUDA: a unit the device kernels do not take ({:?})",
                            geom.win
                        );
                    };
                    record(&geom.bn, saved.stats())?;
                    inner.push((current.take().map(|(s, _)| s), saved));
                    current = Some((y, Layout::contiguous(shape)));
                }
                (Kept::Units(inner), current.map(|(s, _)| s))
            }
        };
        kept.push(k);
        outs.push(y);
    }
    let ys = option_outputs(&outs, &out_layout, (sx, lx));
    let Some(y) = device::mixed_sum_storages(&ys, w, out_shape.elem_count())? else {
        bail!("mixed_edge on CUDA: options whose outputs the weighted sum does not take");
    };
    *edge.saved_gpu.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved { kept, outs });
    Ok((y, out_shape))
}

/// The edge's backward on the device for the output gradient `g`: `(dL/dx, dL/dw)`, the
/// units' weight gradients left in the edge's slot for its taps.
pub(crate) fn backward(
    edge: &Edge,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let op = EdgeBwd {
        edge,
        gw: Handoff::default(),
        weights: (0..edge.params.len()).map(|_| Handoff::default()).collect(),
    };
    let gx = x.apply_op3_no_bwd(w, g, &op)?;
    let gw = op.gw.take(x)?.reshape(w.shape())?;
    let mut slot = edge.slot.lock().unwrap_or_else(|e| e.into_inner());
    for plan in &edge.plans {
        let firsts: Vec<usize> = match plan {
            Plan::Units(units) => units.iter().map(|(_, pi)| *pi).collect(),
            Plan::Reduce { pi, .. } => vec![*pi],
            _ => continue,
        };
        // Each pair of weights (a unit's depthwise and pointwise, or FactorizedReduce's two
        // convolutions) came back as one flat buffer, left at the first one's index.
        for pi in &firsts {
            let (first, second) = (&edge.params[*pi], &edge.params[*pi + 1]);
            if !(edge.tracked[*pi] || edge.tracked[*pi + 1]) {
                continue;
            }
            let flat = op.weights[*pi].take(x)?;
            let nf = first.elem_count();
            if edge.tracked[*pi] {
                slot[*pi] = Some(flat.narrow(0, 0, nf)?.reshape(first.shape())?);
            }
            if edge.tracked[*pi + 1] {
                let g = flat.narrow(0, nf, second.elem_count())?;
                slot[*pi + 1] = Some(g.reshape(second.shape())?);
            }
        }
    }
    Ok((gx, gw))
}

/// The backward as one op: inputs `x`, `w`, `dL/dy`; output `dL/dx`, with the mixing weights'
/// gradient left in `gw`, each unit's flat `[dL/dw_dw, dL/dw_pw]` in `weights[i]` (`i` the
/// index of its depthwise weight) and each `FactorizedReduce`'s `[dL/dw_a, dL/dw_b]` in
/// `weights[i]` (`i` the index of `w_a`).
struct EdgeBwd<'a> {
    edge: &'a Edge,
    gw: Handoff,
    weights: Vec<Handoff>,
}

impl candle_core::CustomOp3 for EdgeBwd<'_> {
    fn name(&self) -> &'static str {
        "nas-mixed-edge-bwd-device"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        bail!("mixed_edge backward: the forward ran on a GPU, the tensors are on the CPU")
    }

    fn cuda_fwd(
        &self,
        sx: &CudaStorage,
        lx: &Layout,
        sw: &CudaStorage,
        lw: &Layout,
        sg: &CudaStorage,
        lg: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let edge = self.edge;
        let saved = edge.saved_gpu.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Saved { kept, outs }) = saved.as_ref() else {
            bail!("mixed_edge backward: the GPU forward kept nothing");
        };
        let param_guards: Vec<_> = edge.params.iter().map(|p| p.storage_and_layout()).collect();
        let Some(params) = device::cuda_storages(&param_guards) else {
            bail!("mixed_edge backward on CUDA: a weight is not on the GPU");
        };
        let out_shape = Shape::from(edge.out_dims);
        let out_layout = Layout::contiguous(out_shape.clone());
        let numel = out_shape.elem_count();
        let ys = option_outputs(outs, &out_layout, (sx, lx));
        let Some((gw, gys)) = device::mixed_storages_bwd(&ys, (sw, lw), (sg, lg))? else {
            bail!("mixed_edge backward on CUDA: shapes the weighted sum's kernel does not take");
        };
        self.gw.put(gw, Shape::from(edge.plans.len()));
        // A new buffer of the input's size.
        let fresh_x = Layout::contiguous(lx.shape().clone());
        // Option k's output gradient `w_k g`: row k of `gys`.
        let row = |k: usize| Layout::contiguous_with_offset(out_shape.clone(), k * numel);
        // Each option's input gradient: a buffer of its own, or (the identity) its row of gys.
        let mut parts: Vec<(Option<CudaStorage>, Layout)> = Vec::with_capacity(kept.len());
        for (k, (plan, kept)) in edge.plans.iter().zip(kept).enumerate() {
            let gy = row(k);
            match (plan, kept) {
                (Plan::Max { bn, .. } | Plan::Avg { bn, .. }, Kept::Pool { p, stats }) => {
                    let pl = Layout::contiguous(Shape::from((bn.n, bn.c, bn.hw)));
                    let flat = device::batch_norm_train_bwd(
                        (p, &pl),
                        (&gys, &gy),
                        None,
                        (bn.n, bn.c, bn.hw),
                        stats,
                    )?;
                    let Some((gp, _)) = flat else {
                        bail!("mixed_edge backward on CUDA: a batch norm the kernels do not take");
                    };
                    // The first n c hw values of the batch norm's flat output: dL/dp.
                    let gpl = Layout::contiguous(Shape::from(bn.n * bn.c * bn.hw));
                    let gx = match plan {
                        Plan::Avg { pool, .. } => {
                            device::avg_pool(&gp, &gpl, &pool.win, pool.count_include_pad, true)?
                        }
                        Plan::Max { win, .. } => device::max_pool_bwd(&gp, &gpl, sx, lx, win)?,
                        _ => None,
                    };
                    let Some((gx, _)) = gx else {
                        bail!("mixed_edge backward on CUDA: a pool the kernels do not take");
                    };
                    parts.push((Some(gx), fresh_x.clone()));
                }
                (Plan::Identity, Kept::Identity) => parts.push((None, gy)),
                (Plan::Reduce { geom, pi }, Kept::Reduce(saved)) => {
                    let a = &geom.a;
                    let g = device::reduce_geom(a.n, a.ci, a.h, a.w, 2 * a.co)?;
                    let need = edge.tracked[*pi] || edge.tracked[*pi + 1];
                    let launched = device::factorized_reduce_bwd(
                        [(sx, lx), params[*pi], params[*pi + 1], (&gys, &gy)],
                        saved,
                        g,
                        false,
                        need,
                    )?;
                    let Some((gx, weights)) = launched else {
                        bail!("mixed_edge backward on CUDA: a FactorizedReduce the kernels do not take");
                    };
                    if let Some(wg) = weights {
                        let n = params[*pi].1.shape().elem_count()
                            + params[*pi + 1].1.shape().elem_count();
                        self.weights[*pi].put(wg, Shape::from(n));
                    }
                    parts.push((Some(gx), fresh_x.clone()));
                }
                (Plan::Units(units), Kept::Units(inner)) => {
                    let mut current: Option<CudaStorage> = None;
                    for (i, ((geom, pi), (input, unit))) in
                        units.iter().zip(inner).enumerate().rev()
                    {
                        let il = match i {
                            0 => lx.clone(),
                            _ => Layout::contiguous(Shape::from((
                                geom.win.n, geom.win.c, geom.win.h, geom.win.w,
                            ))),
                        };
                        let input = match (i, input) {
                            (0, _) => sx,
                            (_, Some(s)) => s,
                            (_, None) => bail!("mixed_edge backward: unit {i} lost its input"),
                        };
                        let gl = Layout::contiguous(Shape::from((
                            geom.win.n,
                            geom.pw.co,
                            geom.win.oh,
                            geom.win.ow,
                        )));
                        let g_in = match &current {
                            Some(s) => (s, &gl),
                            None => (&gys, &gy),
                        };
                        let need = edge.tracked[*pi] || edge.tracked[*pi + 1];
                        let launched = device::unit_bwd(
                            (input, &il),
                            Some(params[*pi]),
                            params[*pi + 1],
                            g_in,
                            unit,
                            &separable(geom),
                            need,
                        )?;
                        let Some((gin, weights)) = launched else {
                            bail!("mixed_edge backward on CUDA: a unit the kernels do not take");
                        };
                        if let Some(wg) = weights {
                            let n = params[*pi].1.shape().elem_count()
                                + params[*pi + 1].1.shape().elem_count();
                            self.weights[*pi].put(wg, Shape::from(n));
                        }
                        current = Some(gin);
                    }
                    match current {
                        Some(s) => parts.push((Some(s), fresh_x.clone())),
                        None => parts.push((None, gy)),
                    }
                }
                _ => bail!("mixed_edge backward: kept activations do not match the plan"),
            }
        }
        let refs: Vec<(&CudaStorage, &Layout)> = parts
            .iter()
            .map(|(s, l)| (s.as_ref().unwrap_or(&gys), l))
            .collect();
        let Some(gx) = device::sum_storages(&refs, lx.shape().elem_count())? else {
            bail!("mixed_edge backward on CUDA: input gradients the sum does not take");
        };
        Ok((gx, lx.shape().clone()))
    }
}
