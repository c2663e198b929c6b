//! The standalone network of one architecture, for retraining (melodyguan/enas
//! `micro_child.py` with `fixed_arc`: `_fixed_layer`, `_fixed_conv`, `_fixed_combine`): a
//! 3x3 stem to `3C` channels; `layers + 2` layers, the reduction layers (`pool_layers`)
//! doubling `C` and running the reduction cell with stride 2 on the cell inputs; each cell
//! calibrates its inputs (`_maybe_calibrate_size`), applies ReLU-1x1 conv-BN to the second
//! (`layer_base`), computes its nodes and concatenates the unused ones (the larger unused
//! cell inputs of a reduction cell through a factorized reduction); drop-path on the
//! non-identity op outputs; an optional auxiliary head after layer `pool_layers[1] + 1`;
//! ReLU, global pooling and a bias-free classifier.
use std::sync::Mutex;

use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{DataShape, Network, NetworkConfig, ParamStore};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;

use crate::blocks::{
    batch_norm, conv_weight, pool, Classifier, FactorizedReduction, ReluConvBn, SepConv,
};
use crate::layout::{pool_layers, unused, NODES};
use crate::supernet::Calib;

enum FixedOp {
    Sep(SepConv),
    Pool { op: usize, stride: usize },
    Identity,
    Reduce(FactorizedReduction),
}

impl FixedOp {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        match self {
            FixedOp::Sep(s) => s.forward(x, train),
            FixedOp::Pool { op, stride } => pool(x, *op, *stride),
            FixedOp::Identity => Ok(x.clone()),
            FixedOp::Reduce(f) => f.forward(x, train),
        }
    }

    fn drop_path(&self) -> bool {
        matches!(self, FixedOp::Sep(_) | FixedOp::Pool { .. })
    }

    fn bns(&self) -> Vec<&BatchNorm2d> {
        match self {
            FixedOp::Sep(s) => s.bns(),
            FixedOp::Reduce(f) => vec![f.bn()],
            _ => vec![],
        }
    }
}

struct FixedCell {
    calib_x: Option<Calib>,
    calib_y: Option<ReluConvBn>,
    base: ReluConvBn,
    /// `[node] -> [(input, op); 2]`.
    ops: Vec<[(usize, FixedOp); 2]>,
    /// Unused states, with a reduction for the larger ones.
    combine: Vec<(usize, Option<FactorizedReduction>)>,
    /// `(layer_id + 1) / (layers + 2)`: the reference scales drop-path by depth.
    depth_ratio: f64,
}

/// The auxiliary head of the reference (`aux_head`): ReLU, 5x5 average pool stride 3
/// (valid), 1x1 conv to 128, BN, ReLU, conv over the whole remaining map to 768, BN, ReLU,
/// global pooling, bias-free linear.
struct AuxHead {
    w1: Var,
    bn1: BatchNorm2d,
    w2: Var,
    bn2: BatchNorm2d,
    fc: Var,
}

impl AuxHead {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = nas_ops::avg_pool2d(&nas_ops::relu(x)?, 5, 3, 0, false)?;
        let y = nas_ops::conv2d(&y, self.w1.as_tensor(), 1, 0)?;
        let y = nas_ops::relu(&self.bn1.forward(&y, train)?)?;
        let y = nas_ops::conv2d(&y, self.w2.as_tensor(), 1, 0)?;
        let y = nas_ops::relu(&self.bn2.forward(&y, train)?)?;
        let y = nas_ops::global_avg_pool(&y)?.flatten_from(1)?;
        y.matmul(&self.fc.as_tensor().t()?)
    }
}

/// The standalone ENAS micro network.
pub struct EnasNetwork {
    store: ParamStore,
    stem_w: Var,
    stem_bn: BatchNorm2d,
    cells: Vec<FixedCell>,
    aux: Option<(usize, AuxHead)>,
    fc: Classifier,
    drop_path: Mutex<f64>,
    rng: Mutex<ChaCha8Rng>,
    flops: f64,
}

/// Shapes and MACs while building.
struct Builder<'a> {
    s: &'a mut ParamStore,
    macs: f64,
}

impl Builder<'_> {
    fn sep(&mut self, name: &str, k: usize, stride: usize, c: usize, h: usize) -> Result<SepConv> {
        let ho = h.div_ceil(stride);
        self.macs += ((c * k * k + c * c) * ho * ho * 2) as f64;
        SepConv::new(self.s, name, k, stride, c, c)
    }
    fn fr(
        &mut self,
        name: &str,
        c_in: usize,
        c: usize,
        h: usize,
        relu: bool,
    ) -> Result<FactorizedReduction> {
        let ho = h.div_ceil(2);
        self.macs += (c_in * c * ho * ho) as f64;
        FactorizedReduction::new(self.s, name, c_in, c, relu)
    }
    fn rcb(&mut self, name: &str, c_in: usize, c: usize, h: usize) -> Result<ReluConvBn> {
        self.macs += (c_in * c * h * h) as f64;
        ReluConvBn::new(self.s, name, c_in, c)
    }
    fn calib(
        &mut self,
        name: &str,
        (c0, h0): (usize, usize),
        (c, h): (usize, usize),
    ) -> Result<Option<Calib>> {
        if h0 != h || c0 != c {
            self.macs += (c0 * c * h * h) as f64;
        }
        Calib::build(self.s, name, (c0, h0), (c, h))
    }
}

impl EnasNetwork {
    /// Builds the network of `arc` (40 choices: normal then reduce, `[x_id, x_op, y_id,
    /// y_op]` per node).
    pub fn new(
        arc: &[usize],
        data: DataShape,
        cfg: &NetworkConfig,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        let mut drop_rng = rng.clone();
        drop_rng.set_stream(1);
        let mut store = ParamStore::new(device.clone(), dtype, rng);
        let mut b = Builder {
            s: &mut store,
            macs: 0.0,
        };
        let arcs = [&arc[..4 * NODES], &arc[4 * NODES..]];
        let mut c = cfg.channels;
        let stem_w = conv_weight(b.s, "stem.w", 3 * c, data.channels, 3)?;
        let stem_bn = batch_norm(b.s, "stem.bn", 3 * c)?;
        b.macs += (data.channels * 9 * 3 * c * data.height * data.width) as f64;
        let mut prev = [(3 * c, data.height), (3 * c, data.height)];
        let total = cfg.layers + 2;
        let pools = pool_layers(cfg.layers);
        let aux_at = pools[1] + 1;
        let mut cells = Vec::new();
        let mut aux = None;
        for l in 0..total {
            let name = format!("layer{l}");
            let reduce = pools.contains(&l);
            let stride = if reduce { 2 } else { 1 };
            if reduce {
                c *= 2;
            }
            let a = arcs[usize::from(reduce)];
            // `_maybe_calibrate_size`: the first input to the second's size and C channels.
            let h = prev[1].1;
            let calib_x = b.calib(&format!("{name}.calib_x"), prev[0], (c, h))?;
            let calib_y = if prev[1].0 != c {
                Some(b.rcb(&format!("{name}.calib_y"), prev[1].0, c, h)?)
            } else {
                None
            };
            let base = b.rcb(&format!("{name}.base"), c, c, h)?;
            let ho = h.div_ceil(stride);
            let mut ops = Vec::new();
            for node in 0..NODES {
                let mut pair = Vec::new();
                for br in 0..2 {
                    let (j, op) = (a[4 * node + 2 * br], a[4 * node + 2 * br + 1]);
                    let s = if j < 2 { stride } else { 1 };
                    let hin = if j < 2 { h } else { ho };
                    let p = format!("{name}.n{node}.b{br}");
                    let fop = match op {
                        0 => FixedOp::Sep(b.sep(&format!("{p}.sep3"), 3, s, c, hin)?),
                        1 => FixedOp::Sep(b.sep(&format!("{p}.sep5"), 5, s, c, hin)?),
                        2 | 3 => {
                            b.macs += (c * 9 * ho * ho) as f64;
                            FixedOp::Pool { op, stride: s }
                        }
                        _ if s == 2 => {
                            FixedOp::Reduce(b.fr(&format!("{p}.reduce"), c, c, hin, false)?)
                        }
                        _ => FixedOp::Identity,
                    };
                    pair.push((j, fop));
                }
                let [x, y]: [(usize, FixedOp); 2] = pair
                    .try_into()
                    .map_err(|_| NasError::Other("two branches per node".into()))?;
                ops.push([x, y]);
            }
            let mut combine = Vec::new();
            for j in unused(a) {
                let fr = if j < 2 && stride == 2 {
                    Some(b.fr(&format!("{name}.combine{j}"), c, c, h, false)?)
                } else {
                    None
                };
                combine.push((j, fr));
            }
            let c_out = combine.len() * c;
            cells.push(FixedCell {
                calib_x,
                calib_y,
                base,
                ops,
                combine,
                depth_ratio: (l + 1) as f64 / total as f64,
            });
            prev = [prev[1], (c_out, ho)];
            if cfg.auxiliary && l == aux_at {
                let (ca, ha) = prev[1];
                if ha < 5 {
                    return Err(NasError::Architecture(format!(
                        "the auxiliary head needs maps of at least 5x5 after layer {aux_at}, \
                         they are {ha}x{ha}; set `train.auxiliary: false`"
                    )));
                }
                let hp = (ha - 5) / 3 + 1;
                let w1 = conv_weight(b.s, "aux_head.proj.w", 128, ca, 1)?;
                let bn1 = batch_norm(b.s, "aux_head.proj.bn", 128)?;
                let w2 = conv_weight(b.s, "aux_head.avg_pool.w", 768, 128, hp)?;
                let bn2 = batch_norm(b.s, "aux_head.avg_pool.bn", 768)?;
                let fc = b.s.var(
                    "aux_head.fc.w",
                    &[data.num_classes, 768],
                    nas_model::Init::FanInUniform { fan_in: 768 },
                )?;
                aux = Some((
                    l,
                    AuxHead {
                        w1,
                        bn1,
                        w2,
                        bn2,
                        fc,
                    },
                ));
            }
        }
        let fc = Classifier::new(b.s, prev[1].0, data.num_classes)?;
        b.macs += (prev[1].0 * data.num_classes) as f64;
        let flops = b.macs;
        Ok(EnasNetwork {
            store,
            stem_w,
            stem_bn,
            cells,
            aux,
            fc,
            drop_path: Mutex::new(0.0),
            rng: Mutex::new(drop_rng),
            flops,
        })
    }

    /// The drop-path factors of a batch of `n` ([`nas_model::drop_mask`]).
    fn drop_mask(&self, n: usize, p: f64) -> Vec<f64> {
        let mut rng = self.rng.lock().expect("drop-path rng poisoned");
        nas_model::drop_mask(&mut *rng, n, p)
    }

    fn cell(&self, cell: &FixedCell, p0: &Tensor, p1: &Tensor, train: bool) -> CResult<Tensor> {
        let x0 = match &cell.calib_x {
            Some(c) => c.forward(p0, train)?,
            None => p0.clone(),
        };
        let x1 = match &cell.calib_y {
            Some(c) => c.forward(p1, train)?,
            None => p1.clone(),
        };
        let x1 = cell.base.forward(&x1, train)?;
        let p = *self.drop_path.lock().expect("drop-path lock poisoned") * cell.depth_ratio;
        let mut states = vec![x0, x1];
        for pair in &cell.ops {
            let mut outs = Vec::with_capacity(2);
            let mut masks = Vec::with_capacity(2);
            for (j, op) in pair {
                let y = op.forward(&states[*j], train)?;
                let drop = train && p > 0.0 && op.drop_path();
                masks.push(drop.then(|| self.drop_mask(y.dims()[0], p)));
                outs.push(y);
            }
            // Drop path and the node's sum in one op.
            states.push(nas_model::drop_path_sum(&outs, &masks)?);
        }
        let parts: Vec<Tensor> = cell
            .combine
            .iter()
            .map(|(j, fr)| match fr {
                Some(f) => f.forward(&states[*j], train),
                None => Ok(states[*j].clone()),
            })
            .collect::<CResult<_>>()?;
        Tensor::cat(&parts, 1)
    }
}

impl Network for EnasNetwork {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<(Tensor, Option<Tensor>)> {
        let s = nas_ops::conv2d(x, self.stem_w.as_tensor(), 1, 1)?;
        let s = self.stem_bn.forward(&s, train)?;
        let (mut p0, mut p1) = (s.clone(), s);
        let mut aux_logits = None;
        for (l, cell) in self.cells.iter().enumerate() {
            let out = self.cell(cell, &p0, &p1, train)?;
            p0 = p1;
            p1 = out;
            if let Some((at, head)) = &self.aux {
                if train && *at == l {
                    aux_logits = Some(head.forward(&p1, train)?);
                }
            }
        }
        Ok((self.fc.forward(&p1)?, aux_logits))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![&self.stem_bn];
        for c in &self.cells {
            if let Some(x) = &c.calib_x {
                v.push(x.bn());
            }
            if let Some(y) = &c.calib_y {
                v.push(y.bn());
            }
            v.push(c.base.bn());
            for pair in &c.ops {
                for (_, op) in pair {
                    v.extend(op.bns());
                }
            }
            v.extend(
                c.combine
                    .iter()
                    .filter_map(|(_, f)| f.as_ref().map(|f| f.bn())),
            );
        }
        if let Some((_, a)) = &self.aux {
            v.push(&a.bn1);
            v.push(&a.bn2);
        }
        v
    }

    fn set_drop_path(&self, p: f64) {
        *self.drop_path.lock().expect("drop-path lock poisoned") = p;
    }

    fn param_count(&self) -> usize {
        self.store.count_excluding(&["aux_head."])
    }

    fn flops(&self) -> f64 {
        self.flops
    }
}
