//! The DARTS search network (quark0/darts `cnn/model_search.py`): a stem, `layers` cells
//! whose edges are mixed operations over all candidates (affine-free BN, pools followed by
//! BN), global average pooling and a linear classifier. Alphas are shared by all cells of a
//! type, so the supernet has one decision per edge of the normal and of the reduction cell.
//!
//! Under shared mixing weights (DARTS), an edge whose options all have a fused form (pools
//! with BN, identity, `FactorizedReduce`, separable and dilated convolutions: every edge of the
//! default space) runs as one [`nas_ops::mixed_edge`] op: the same values and gradients as the
//! separate ops, with far fewer graph nodes.
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::Result;
use nas_model::{
    gated_sum, selected_per_sample_sum, DataShape, Init, KeptWeights, ParamStore, Supernet,
    TensorDrive,
};
use nas_ops::BatchNorm2d;

use crate::layout::{cell_plan, DartsSpaceParams, Layout};
use crate::ops::{batch_norm, conv_weight, Op};

/// The stem: 3x3 convolution and batch norm (affine, as in the reference).
pub struct Stem {
    w: Var,
    bn: BatchNorm2d,
}

impl Stem {
    /// A stem from `c_in` to `c_out` channels.
    pub fn new(store: &mut ParamStore, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Stem {
            w: conv_weight(store, "stem.0", c_out, c_in, 3, 3)?,
            bn: batch_norm(store, "stem.1", c_out, true)?,
        })
    }
    /// Forward.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = nas_ops::conv2d(x, self.w.as_tensor(), 1, 1)?;
        self.bn.forward(&y, train)
    }
    /// Its batch norm.
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }
    /// MACs per example at `h x w`.
    pub fn macs(&self, h: usize, w: usize) -> f64 {
        let d = self.w.dims();
        (d[0] * d[1] * 9 * h * w) as f64
    }
}

/// A linear classifier `[classes, features]` with bias.
pub struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    /// PyTorch `nn.Linear` initialisation: weight and bias `U(-1/sqrt(in), 1/sqrt(in))`.
    pub fn new(store: &mut ParamStore, name: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Linear {
            w: store.var(
                &format!("{name}.weight"),
                &[c_out, c_in],
                Init::FanInUniform { fan_in: c_in },
            )?,
            b: store.var(
                &format!("{name}.bias"),
                &[c_out],
                Init::FanInUniform { fan_in: c_in },
            )?,
        })
    }
    /// `x w^T + b`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())
    }
    /// MACs per example.
    pub fn macs(&self) -> f64 {
        self.w.elem_count() as f64
    }
}

/// The search network's classifier: one linear layer, or DARTS-CC's lambda-conditioned
/// head (reference `PWLinear`: weight and bias are piecewise-linear functions of the
/// normalised lambda `t`).
pub enum Head {
    /// A plain linear classifier.
    Plain(Linear),
    /// `K >= 2` anchor classifiers over the evenly spaced pivots `k / (K - 1)`: at `t` in
    /// `[p_l, p_l+1]`, `logits = (1 - s) head_l(x) + s head_l+1(x)`, `s = t (K - 1) - l`
    /// (the same as interpolating weight and bias, the map being linear). The reference
    /// also trains the pivots; here they stay fixed.
    Conditioned(Vec<Linear>),
}

impl Head {
    /// A plain head (`k = 0`) or `k` anchors, named `classifier` or `classifier.{k}`.
    pub fn new(store: &mut ParamStore, k: usize, c_in: usize, c_out: usize) -> Result<Self> {
        if k == 0 {
            return Ok(Head::Plain(Linear::new(store, "classifier", c_in, c_out)?));
        }
        let anchors = (0..k.max(2))
            .map(|i| Linear::new(store, &format!("classifier.{i}"), c_in, c_out))
            .collect::<Result<Vec<_>>>()?;
        Ok(Head::Conditioned(anchors))
    }

    /// Logits at condition `t` (ignored by a plain head; `None` or a non-finite value is
    /// `t = 0`; `t` is clamped to `[0, 1]`).
    pub fn forward(&self, x: &Tensor, condition: Option<f32>) -> CResult<Tensor> {
        match self {
            Head::Plain(l) => l.forward(x),
            Head::Conditioned(anchors) => {
                let k = anchors.len();
                let t = condition
                    .filter(|t| t.is_finite())
                    .unwrap_or(0.0)
                    .clamp(0.0, 1.0) as f64;
                let pos = t * (k - 1) as f64;
                let l = (pos.floor() as usize).min(k - 2);
                let s = pos - l as f64;
                let left = anchors[l].forward(x)?.affine(1.0 - s, 0.0)?;
                if s == 0.0 {
                    return Ok(left);
                }
                left + anchors[l + 1].forward(x)?.affine(s, 0.0)?
            }
        }
    }
}

/// Applies the two preprocessing ops of a cell (`preprocess0`, `preprocess1`).
pub fn preprocess(
    store: &mut ParamStore,
    prefix: &str,
    cpp: usize,
    cp: usize,
    c: usize,
    reduction_prev: bool,
    affine: bool,
) -> Result<(Op, Op)> {
    let p0 = if reduction_prev {
        Op::factorized_reduce(store, &format!("{prefix}.preprocess0"), cpp, c, affine)?
    } else {
        Op::relu_conv_bn(
            store,
            &format!("{prefix}.preprocess0"),
            cpp,
            c,
            1,
            1,
            0,
            affine,
        )?
    };
    let p1 = Op::relu_conv_bn(
        store,
        &format!("{prefix}.preprocess1"),
        cp,
        c,
        1,
        1,
        0,
        affine,
    )?;
    Ok((p0, p1))
}

/// One search cell: preprocessing and a mixed op per edge.
pub struct SearchCell {
    reduction: bool,
    pre: (Op, Op),
    /// `edges[e][k]`: option `k` of edge `e` (cell-local edge order).
    edges: Vec<Vec<Op>>,
}

/// The DARTS search network.
pub struct DartsSupernet {
    store: ParamStore,
    layout: Layout,
    multiplier: usize,
    stem: Stem,
    cells: Vec<SearchCell>,
    classifier: Head,
}

impl DartsSupernet {
    /// Builds the search network for `params` on data of `shape`.
    pub fn new(params: &DartsSpaceParams, shape: DataShape, mut store: ParamStore) -> Result<Self> {
        let layout = Layout {
            nodes: params.nodes,
        };
        let stem = Stem::new(
            &mut store,
            shape.channels,
            params.stem_multiplier * params.channels,
        )?;
        let plan = cell_plan(
            params.channels,
            params.layers,
            params.multiplier,
            params.stem_multiplier,
        );
        let mut cells = Vec::with_capacity(plan.len());
        for (ci, &(cpp, cp, c, red, red_prev)) in plan.iter().enumerate() {
            let prefix = format!("cells.{ci}");
            let pre = preprocess(&mut store, &prefix, cpp, cp, c, red_prev, false)?;
            let mut edges = Vec::new();
            for i in 0..params.nodes {
                for j in 0..i + 2 {
                    let e = layout.node_offset(i) + j;
                    let stride = if red && j < 2 { 2 } else { 1 };
                    let mut ops = Vec::with_capacity(params.ops.len());
                    for (k, name) in params.ops.iter().enumerate() {
                        let p = format!("{prefix}._ops.{e}._ops.{k}");
                        ops.push(Op::build(&mut store, &p, name, c, stride, false, true)?);
                    }
                    edges.push(ops);
                }
            }
            cells.push(SearchCell {
                reduction: red,
                pre,
                edges,
            });
        }
        let c_last = plan
            .last()
            .map(|&(_, _, c, _, _)| params.multiplier * c)
            .unwrap_or(params.stem_multiplier * params.channels);
        let classifier = Head::new(&mut store, params.head_anchors, c_last, shape.num_classes)?;
        Ok(DartsSupernet {
            store,
            layout,
            multiplier: params.multiplier,
            stem,
            cells,
            classifier,
        })
    }

    fn mixed_edge(
        &self,
        ops: &[Op],
        x: &Tensor,
        d: usize,
        pass: &Pass<'_>,
    ) -> CResult<Option<Tensor>> {
        let train = pass.train;
        match pass.drive {
            TensorDrive::Path { choices } => {
                let k = choices[d];
                if ops[k].is_zero() {
                    return Ok(None);
                }
                Ok(Some(ops[k].forward(x, train)?))
            }
            TensorDrive::Mixed {
                weights,
                skip_zero,
                values,
            } => {
                let w = &weights[d];
                // Options that contribute: never `none` (its output is zero, so its weight's
                // gradient <g, 0> is zero too), and not zero-weighted ones when skipping.
                let mut keep: Vec<u32> = Vec::with_capacity(ops.len());
                for (k, op) in ops.iter().enumerate() {
                    if op.is_zero() {
                        continue;
                    }
                    if *skip_zero {
                        if let Some(v) = values {
                            if v.0[d][k] == 0.0 {
                                continue;
                            }
                        }
                    }
                    keep.push(k as u32);
                }
                if keep.is_empty() {
                    return Ok(None);
                }
                let wk = pass.kept.get(d, w, &keep)?;
                // Shared weights and options of the fused form: the whole edge as one op
                // (the same values and gradients; fewer graph nodes and passes).
                if wk.rank() == 1 {
                    let opts: Option<Vec<_>> = keep
                        .iter()
                        .map(|&k| ops[k as usize].edge_option())
                        .collect();
                    if let Some(opts) = opts.filter(|o| nas_ops::fusable(x, o, train)) {
                        return Ok(Some(nas_ops::mixed_edge(x, &wk, &opts, train)?));
                    }
                }
                let ys = keep
                    .iter()
                    .map(|&k| ops[k as usize].forward(x, train))
                    .collect::<CResult<Vec<_>>>()?;
                Ok(Some(nas_ops::weighted_sum(&ys, &wk)?))
            }
            // Per-example selection: each option runs on the examples that chose it.
            TensorDrive::SelectedPerSample { weights, groups } => {
                let (Some(w), Some(g)) = (weights.get(d), groups.get(d)) else {
                    candle_core::bail!("per-example drive has no weights for edge {d}");
                };
                selected_per_sample_sum(w, g, x, |k, xk| match ops.get(k) {
                    Some(op) if op.is_zero() => Ok(None),
                    Some(op) => op.forward(xk, train).map(Some),
                    None => candle_core::bail!("edge {d} has {} options, weight {k}", ops.len()),
                })
            }
            // Binary gates: only the active options run; `none` contributes nothing.
            TensorDrive::Gated { gates, active } => {
                let (Some(g), Some(set)) = (gates.get(d), active.get(d)) else {
                    candle_core::bail!("gated drive has no gates for edge {d}");
                };
                gated_sum(g, set, |k| match ops.get(k) {
                    Some(op) if op.is_zero() => Ok(None),
                    Some(op) => op.forward(x, train).map(Some),
                    None => candle_core::bail!("edge {d} has {} options, gate {k}", ops.len()),
                })
            }
        }
    }

    fn cell_forward(
        &self,
        t: usize,
        cell: &SearchCell,
        s0: &Tensor,
        s1: &Tensor,
        pass: &Pass<'_>,
    ) -> CResult<Tensor> {
        let train = pass.train;
        let mut states = vec![
            cell.pre.0.forward(s0, train)?,
            cell.pre.1.forward(s1, train)?,
        ];
        for i in 0..self.layout.nodes {
            let mut acc: Option<Tensor> = None;
            for (j, state) in states.iter().enumerate().take(i + 2) {
                let e = self.layout.node_offset(i) + j;
                let d = self.layout.decision(t, i, j);
                if let Some(y) = self.mixed_edge(&cell.edges[e], state, d, pass)? {
                    acc = Some(match acc {
                        None => y,
                        Some(a) => (a + y)?,
                    });
                }
            }
            let s = match acc {
                Some(s) => s,
                None => {
                    // Every input edge is `none`: the node is zero, at the cell's resolution.
                    let (n, c, h, w) = states[1].dims4()?;
                    let (h, w) = if cell.reduction {
                        (h.div_ceil(2), w.div_ceil(2))
                    } else {
                        (h, w)
                    };
                    Tensor::zeros((n, c, h, w), states[1].dtype(), states[1].device())?
                }
            };
            states.push(s);
        }
        let outs: Vec<&Tensor> = states[states.len() - self.multiplier..].iter().collect();
        Tensor::cat(&outs, 1)
    }
}

/// One forward pass: the drive, the kept options' weights made so far, training or not.
struct Pass<'a> {
    drive: &'a TensorDrive,
    kept: KeptWeights,
    train: bool,
}

impl Supernet for DartsSupernet {
    fn forward(
        &self,
        x: &Tensor,
        drive: &TensorDrive,
        condition: Option<f32>,
        train: bool,
    ) -> CResult<Tensor> {
        let s = self.stem.forward(x, train)?;
        let (mut s0, mut s1) = (s.clone(), s);
        let pass = Pass {
            drive,
            kept: KeptWeights::default(),
            train,
        };
        for cell in &self.cells {
            let t = usize::from(cell.reduction);
            let out = self.cell_forward(t, cell, &s0, &s1, &pass)?;
            s0 = s1;
            s1 = out;
        }
        let pooled = nas_ops::global_avg_pool(&s1)?;
        self.classifier.forward(&pooled, condition)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![self.stem.batch_norm()];
        for c in &self.cells {
            v.extend(c.pre.0.batch_norms());
            v.extend(c.pre.1.batch_norms());
            for e in &c.edges {
                for op in e {
                    v.extend(op.batch_norms());
                }
            }
        }
        v
    }
}
