//! NAS-Bench-201's macro structure, `TinyNetwork` (AutoDL-Projects,
//! `xautodl/models/cell_infers/tiny_network.py`; its search twin `TinyNetworkDarts`): a stem,
//! three stages of `N` cells at `C`, `2C` and `4C` channels separated by residual reduction
//! blocks, then BN, ReLU, global average pooling and a linear classifier.
//!
//! One type serves as the weight-sharing supernet (every edge holds all five operations,
//! cell BNs without affine parameters, as in the benchmark's DARTS search network) and as
//! the standalone network of one cell (every edge holds its one operation, affine BNs, as
//! in the benchmark's own networks, whose parameters it counts exactly).
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::{Cost, Result};
use nas_model::{
    gated_sum, selected_per_sample_sum, DataShape, KeptWeights, Network, ParamStore, Supernet,
    TensorDrive,
};
use nas_ops::BatchNorm2d;

use crate::spec::{EDGES, OPS};
use crate::tensor_ops::{batch_norm, conv_weight, EdgeOp, Linear, ResBlock};

enum Block {
    /// `edges[d][k]`: option `k` of edge `d` (the order of [`EDGES`]).
    Cell(Vec<Vec<EdgeOp>>),
    Reduce(Box<ResBlock>),
}

/// The network. With all options per edge it is a [`Supernet`]; with one, a [`Network`].
pub struct TinyNet {
    store: ParamStore,
    stem_w: Var,
    stem_bn: BatchNorm2d,
    blocks: Vec<Block>,
    last_bn: BatchNorm2d,
    classifier: Linear,
    cost: Cost,
}

/// Which operations each edge gets.
pub enum Edges<'a> {
    /// All of [`OPS`] on every edge, BN without affine parameters (the supernet).
    All,
    /// One operation per edge (option indices in the order of [`EDGES`]), affine BN.
    Chosen(&'a [usize]),
}

impl TinyNet {
    /// Builds the network with `c` initial channels and `n` cells per stage for data of
    /// `shape`.
    pub fn new(
        edges: Edges<'_>,
        c: usize,
        n: usize,
        shape: DataShape,
        mut store: ParamStore,
    ) -> Result<Self> {
        let stem_w = conv_weight(&mut store, "stem.0", c, shape.channels, 3)?;
        let stem_bn = batch_norm(&mut store, "stem.1", c, true)?;
        let mut blocks = Vec::with_capacity(3 * n + 2);
        let mut c_prev = c;
        let mut index = 0usize;
        for stage in 0..3 {
            let cs = c << stage;
            if stage > 0 {
                blocks.push(Block::Reduce(Box::new(ResBlock::new(
                    &mut store,
                    &format!("cells.{index}"),
                    c_prev,
                    cs,
                )?)));
                index += 1;
            }
            for _ in 0..n {
                let mut cell = Vec::with_capacity(EDGES.len());
                for (d, &(to, from)) in EDGES.iter().enumerate() {
                    let prefix = format!("cells.{index}.edges.{to}<-{from}");
                    let ops = match &edges {
                        Edges::All => OPS
                            .iter()
                            .enumerate()
                            .map(|(k, op)| {
                                EdgeOp::build(&mut store, &format!("{prefix}.{k}"), op, cs, false)
                            })
                            .collect::<Result<Vec<_>>>()?,
                        Edges::Chosen(choices) => {
                            let op = choices.get(d).and_then(|&k| OPS.get(k)).ok_or_else(|| {
                                nas_core::NasError::Architecture(format!(
                                    "NAS-Bench-201 cell needs {} choices below {}, got {choices:?}",
                                    EDGES.len(),
                                    OPS.len()
                                ))
                            })?;
                            vec![EdgeOp::build(&mut store, &prefix, op, cs, true)?]
                        }
                    };
                    cell.push(ops);
                }
                blocks.push(Block::Cell(cell));
                index += 1;
            }
            c_prev = cs;
        }
        let last_bn = batch_norm(&mut store, "lastact.0", c_prev, true)?;
        let classifier = Linear::new(&mut store, "classifier", c_prev, shape.num_classes)?;
        let cost = match edges {
            Edges::Chosen(ch) => tiny_cost(ch, c, n, shape),
            Edges::All => Cost::default(),
        };
        Ok(TinyNet {
            store,
            stem_w,
            stem_bn,
            blocks,
            last_bn,
            classifier,
            cost,
        })
    }

    fn cell_forward(
        cell: &[Vec<EdgeOp>],
        x: &Tensor,
        drive: Option<&TensorDrive>,
        kept: &KeptWeights,
        train: bool,
    ) -> CResult<Tensor> {
        let mut nodes = vec![x.clone()];
        for to in 1..4 {
            let mut acc: Option<Tensor> = None;
            for (d, &(t, from)) in EDGES.iter().enumerate() {
                if t != to {
                    continue;
                }
                let y = edge_forward(&cell[d], d, &nodes[from], drive, kept, train)?;
                if let Some(y) = y {
                    acc = Some(match acc {
                        None => y,
                        Some(a) => (a + y)?,
                    });
                }
            }
            nodes.push(match acc {
                Some(a) => a,
                None => x.zeros_like()?,
            });
        }
        Ok(nodes.swap_remove(3))
    }

    fn run(&self, x: &Tensor, drive: Option<&TensorDrive>, train: bool) -> CResult<Tensor> {
        let y = nas_ops::conv2d(x, self.stem_w.as_tensor(), 1, 1)?;
        let mut y = self.stem_bn.forward(&y, train)?;
        let kept = KeptWeights::default();
        for b in &self.blocks {
            y = match b {
                Block::Cell(cell) => Self::cell_forward(cell, &y, drive, &kept, train)?,
                Block::Reduce(r) => r.forward(&y, train)?,
            };
        }
        let y = nas_ops::relu(&self.last_bn.forward(&y, train)?)?;
        self.classifier.forward(&nas_ops::global_avg_pool(&y)?)
    }

    fn all_batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![&self.stem_bn];
        for b in &self.blocks {
            match b {
                Block::Cell(cell) => v.extend(cell.iter().flatten().flat_map(|o| o.batch_norms())),
                Block::Reduce(r) => v.extend(r.batch_norms()),
            }
        }
        v.push(&self.last_bn);
        v
    }
}

/// One edge under a drive (`None`: the network's single operation).
fn edge_forward(
    ops: &[EdgeOp],
    d: usize,
    x: &Tensor,
    drive: Option<&TensorDrive>,
    kept: &KeptWeights,
    train: bool,
) -> CResult<Option<Tensor>> {
    match drive {
        None => match ops.first() {
            Some(op) => op.forward(x, train),
            None => Ok(None),
        },
        Some(TensorDrive::Path { choices }) => match choices.get(d).and_then(|&k| ops.get(k)) {
            Some(op) => op.forward(x, train),
            None => candle_core::bail!("path drive has no valid choice for edge {d}"),
        },
        Some(TensorDrive::Mixed {
            weights,
            skip_zero,
            values,
        }) => {
            let Some(w) = weights.get(d) else {
                candle_core::bail!("mixed drive has no weights for edge {d}");
            };
            // `none` contributes zeros (and a zero gradient for its weight); zero-weighted
            // options are skipped when asked (hard sampling).
            let mut keep: Vec<u32> = Vec::with_capacity(ops.len());
            let mut ys = Vec::with_capacity(ops.len());
            for (k, op) in ops.iter().enumerate() {
                if op.is_zero() {
                    continue;
                }
                if *skip_zero && values.as_ref().is_some_and(|v| v.0[d][k] == 0.0) {
                    continue;
                }
                if let Some(y) = op.forward(x, train)? {
                    keep.push(k as u32);
                    ys.push(y);
                }
            }
            if ys.is_empty() {
                return Ok(None);
            }
            let wk = kept.get(d, w, &keep)?;
            Ok(Some(nas_ops::weighted_sum(&ys, &wk)?))
        }
        // Per-example selection (GDAS, one sample per example): each option runs on the
        // examples that chose it; `none` gives no output.
        Some(TensorDrive::SelectedPerSample { weights, groups }) => {
            let (Some(w), Some(g)) = (weights.get(d), groups.get(d)) else {
                candle_core::bail!("per-example drive has no weights for edge {d}");
            };
            selected_per_sample_sum(w, g, x, |k, xk| match ops.get(k) {
                Some(op) => op.forward(xk, train),
                None => candle_core::bail!("edge {d} has {} options, weight {k}", ops.len()),
            })
        }
        // Binary gates (ProxylessNAS): only the active options run; `none` gives no output.
        Some(TensorDrive::Gated { gates, active }) => {
            let (Some(g), Some(set)) = (gates.get(d), active.get(d)) else {
                candle_core::bail!("gated drive has no gates for edge {d}");
            };
            gated_sum(g, set, |k| match ops.get(k) {
                Some(op) => op.forward(x, train),
                None => candle_core::bail!("edge {d} has {} options, gate {k}", ops.len()),
            })
        }
    }
}

impl Supernet for TinyNet {
    fn forward(
        &self,
        x: &Tensor,
        drive: &TensorDrive,
        _condition: Option<f32>,
        train: bool,
    ) -> CResult<Tensor> {
        self.run(x, Some(drive), train)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.all_batch_norms()
    }
}

impl Network for TinyNet {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<(Tensor, Option<Tensor>)> {
        Ok((self.run(x, None, train)?, None))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.all_batch_norms()
    }

    fn set_drop_path(&self, _p: f64) {}

    fn param_count(&self) -> usize {
        self.store.count()
    }

    fn flops(&self) -> f64 {
        self.cost.flops
    }
}

/// Output side of a 3x3 stride-2 padding-1 convolution (the residual block's main path).
fn halve(side: usize) -> usize {
    side.div_ceil(2)
}

/// Parameters and multiply-accumulates (for one example) of the standalone network of cell
/// `choices` with `c` initial channels, `n` cells per stage, for data of `shape`: every
/// parameter (affine BNs included, running statistics not, every edge counted whether or not
/// it reaches the output), MACs of convolutions and the classifier as the benchmark's FLOP
/// counter takes them (see [`crate::cost`]).
pub fn tiny_cost(choices: &[usize], c: usize, n: usize, shape: DataShape) -> Cost {
    let conv = |cin: usize, cout: usize, k: usize, hw: usize, bn: bool| Cost {
        params: (k * k * cin * cout + if bn { 2 * cout } else { 0 }) as f64,
        flops: (k * k * cin * cout * hw) as f64,
        latency_ms: None,
    };
    let (mut h, mut w) = (shape.height, shape.width);
    let mut total = conv(shape.channels, c, 3, h * w, true);
    let mut c_prev = c;
    for stage in 0..3 {
        let cs = c << stage;
        if stage > 0 {
            h = halve(h);
            w = halve(w);
            total = total
                .add(&conv(c_prev, cs, 3, h * w, true))
                .add(&conv(cs, cs, 3, h * w, true))
                .add(&conv(c_prev, cs, 1, h * w, false));
        }
        for &k in choices {
            let ks = match OPS.get(k) {
                Some(&"nor_conv_1x1") => 1,
                Some(&"nor_conv_3x3") => 3,
                _ => continue,
            };
            let one = conv(cs, cs, ks, h * w, true);
            total = total.add(&Cost {
                params: one.params * n as f64,
                flops: one.flops * n as f64,
                latency_ms: None,
            });
        }
        c_prev = cs;
    }
    total.add(&Cost {
        params: (2 * c_prev + c_prev * shape.num_classes + shape.num_classes) as f64,
        flops: (c_prev * shape.num_classes + shape.num_classes) as f64,
        latency_ms: None,
    })
}
