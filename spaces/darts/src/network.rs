//! The standalone network of one architecture, for retraining (quark0/darts `cnn/model.py`,
//! `NetworkCIFAR`): stem, cells built from the genotype with affine batch norm, drop-path on
//! every non-identity op output during training, an optional auxiliary head after the
//! second reduction cell, global pooling and a linear classifier.
use std::sync::Mutex;

use candle_core::{Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{DataShape, Network, ParamStore};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;

use crate::genotype::Gene;
use crate::layout::cell_plan;
use crate::ops::{batch_norm, conv_weight, Op};
use crate::supernet::{preprocess, Linear, Stem};

/// One cell of a standalone network.
struct EvalCell {
    reduction: bool,
    pre: (Op, Op),
    /// Per node, its `(op, input)` edges.
    nodes: Vec<Vec<(Op, usize)>>,
    concat: Vec<usize>,
}

/// `AuxiliaryHeadCIFAR` of the reference: ReLU, 5x5 average pool with stride 3 (no pad),
/// 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear. It assumes 8x8 inputs.
struct AuxHead {
    w1: Var,
    bn1: BatchNorm2d,
    w2: Var,
    bn2: BatchNorm2d,
    fc: Linear,
}

impl AuxHead {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = nas_ops::relu(x)?;
        let y = nas_ops::avg_pool2d(&y, 5, 3, 0, false)?;
        let y = nas_ops::conv2d(&y, self.w1.as_tensor(), 1, 0)?;
        let y = nas_ops::relu(&self.bn1.forward(&y, train)?)?;
        let y = nas_ops::conv2d(&y, self.w2.as_tensor(), 1, 0)?;
        let y = nas_ops::relu(&self.bn2.forward(&y, train)?)?;
        let y = y.flatten_from(1)?;
        self.fc.forward(&y)
    }
}

/// The standalone DARTS network.
pub struct DartsNetwork {
    store: ParamStore,
    stem: Stem,
    cells: Vec<EvalCell>,
    aux: Option<(usize, AuxHead)>,
    classifier: Linear,
    drop_path: Mutex<f64>,
    rng: Mutex<ChaCha8Rng>,
    flops: f64,
}

/// Per cell type: the genes of each node, and the concatenated nodes.
pub struct CellSpec<'a> {
    /// `nodes[i]` = genes of intermediate node `i`.
    pub nodes: &'a [Vec<Gene>],
    /// Concatenated node indices (2-based as in the genotype).
    pub concat: &'a [usize],
}

impl DartsNetwork {
    /// Builds the network of a normal and a reduction cell spec.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        normal: CellSpec<'_>,
        reduce: CellSpec<'_>,
        channels: usize,
        layers: usize,
        auxiliary: bool,
        shape: DataShape,
        mut store: ParamStore,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        let stem_mult = 3;
        let stem = Stem::new(&mut store, shape.channels, stem_mult * channels)?;
        let mut flops = stem.macs(shape.height, shape.width);
        let (mut h, mut w) = (shape.height, shape.width);
        let mut hw_prev = (h, w); // resolution of s0
        let plan_mult = normal.concat.len();
        if reduce.concat.len() != plan_mult {
            return Err(NasError::Architecture(
                "normal and reduction cells must concatenate the same number of nodes".into(),
            ));
        }
        let plan = cell_plan(channels, layers, plan_mult, stem_mult);
        let mut cells = Vec::with_capacity(layers);
        let mut aux_at = None;
        let mut c_aux = 0;
        let mut c_last = stem_mult * channels;
        for (ci, &(cpp, cp, c, red, red_prev)) in plan.iter().enumerate() {
            let spec = if red { &reduce } else { &normal };
            let prefix = format!("cells.{ci}");
            let pre = preprocess(&mut store, &prefix, cpp, cp, c, red_prev, true)?;
            flops += pre.0.macs(cpp, hw_prev.0, hw_prev.1).0 + pre.1.macs(cp, h, w).0;
            let mut nodes = Vec::with_capacity(spec.nodes.len());
            let mut op_i = 0;
            for (i, genes) in spec.nodes.iter().enumerate() {
                let mut edges = Vec::with_capacity(genes.len());
                for (name, j) in genes {
                    if *j >= i + 2 {
                        return Err(NasError::Architecture(format!(
                            "node {} cannot take input {j} (only 0..{})",
                            i + 2,
                            i + 1
                        )));
                    }
                    let stride = if red && *j < 2 { 2 } else { 1 };
                    let op = Op::build(
                        &mut store,
                        &format!("{prefix}._ops.{op_i}"),
                        name,
                        c,
                        stride,
                        true,
                        false,
                    )?;
                    let (ih, iw) = if red && *j >= 2 {
                        (h.div_ceil(2), w.div_ceil(2))
                    } else {
                        (h, w)
                    };
                    flops += op.macs(c, ih, iw).0;
                    op_i += 1;
                    edges.push((op, *j));
                }
                nodes.push(edges);
            }
            for &k in spec.concat {
                if k < 2 || k >= 2 + spec.nodes.len() {
                    return Err(NasError::Architecture(format!(
                        "concat names node {k}, which is not an intermediate node"
                    )));
                }
            }
            cells.push(EvalCell {
                reduction: red,
                pre,
                nodes,
                concat: spec.concat.to_vec(),
            });
            hw_prev = (h, w);
            if red {
                h = h.div_ceil(2);
                w = w.div_ceil(2);
            }
            c_last = plan_mult * c;
            if ci == 2 * layers / 3 {
                aux_at = Some(ci);
                c_aux = c_last;
            }
        }
        let aux = match (auxiliary, aux_at) {
            (true, Some(at)) => {
                let hh = {
                    // resolution after cell `at`
                    let mut r = shape.height;
                    for (k, p) in plan.iter().enumerate().take(at + 1) {
                        let _ = k;
                        if p.3 {
                            r = r.div_ceil(2);
                        }
                    }
                    r
                };
                if hh < 5 || (hh - 5) / 3 + 1 != 2 {
                    return Err(NasError::Architecture(format!(
                        "the auxiliary head (DARTS AuxiliaryHeadCIFAR) needs 8x8 features after the second reduction cell; this network has {hh}x{hh} there: disable it (auxiliary weight 0)"
                    )));
                }
                let head = AuxHead {
                    w1: conv_weight(&mut store, "auxiliary_head.features.2", 128, c_aux, 1, 1)?,
                    bn1: batch_norm(&mut store, "auxiliary_head.features.3", 128, true)?,
                    w2: conv_weight(&mut store, "auxiliary_head.features.5", 768, 128, 2, 2)?,
                    bn2: batch_norm(&mut store, "auxiliary_head.features.6", 768, true)?,
                    fc: Linear::new(
                        &mut store,
                        "auxiliary_head.classifier",
                        768,
                        shape.num_classes,
                    )?,
                };
                Some((at, head))
            }
            _ => None,
        };
        let classifier = Linear::new(&mut store, "classifier", c_last, shape.num_classes)?;
        flops += classifier.macs();
        Ok(DartsNetwork {
            store,
            stem,
            cells,
            aux,
            classifier,
            drop_path: Mutex::new(0.0),
            rng: Mutex::new(rng),
            flops,
        })
    }

    /// The drop-path factors of a batch of `n` ([`nas_model::drop_mask`]).
    fn drop_mask(&self, n: usize, p: f64) -> Vec<f64> {
        let mut rng = self.rng.lock().expect("drop-path rng poisoned");
        nas_model::drop_mask(&mut *rng, n, p)
    }

    fn cell_forward(
        &self,
        cell: &EvalCell,
        s0: &Tensor,
        s1: &Tensor,
        train: bool,
    ) -> CResult<Tensor> {
        let p = *self.drop_path.lock().expect("drop-path lock poisoned");
        let mut states = vec![
            cell.pre.0.forward(s0, train)?,
            cell.pre.1.forward(s1, train)?,
        ];
        for edges in &cell.nodes {
            // The node's inputs, each with its drop-path factors (none: kept whole).
            let mut ys: Vec<Tensor> = Vec::with_capacity(edges.len());
            let mut masks: Vec<Option<Vec<f64>>> = Vec::with_capacity(edges.len());
            for (op, j) in edges {
                if op.is_zero() {
                    continue;
                }
                let y = op.forward(&states[*j], train)?;
                let drop = train && p > 0.0 && !op.is_identity();
                masks.push(drop.then(|| self.drop_mask(y.dims()[0], p)));
                ys.push(y);
            }
            let s = match ys.len() {
                0 => {
                    let (n, c, h, w) = states[1].dims4()?;
                    let (h, w) = if cell.reduction {
                        (h.div_ceil(2), w.div_ceil(2))
                    } else {
                        (h, w)
                    };
                    Tensor::zeros((n, c, h, w), states[1].dtype(), states[1].device())?
                }
                // Drop path and the node's sum in one op.
                _ => nas_model::drop_path_sum(&ys, &masks)?,
            };
            states.push(s);
        }
        let outs: Vec<&Tensor> = cell.concat.iter().map(|&k| &states[k]).collect();
        Tensor::cat(&outs, 1)
    }
}

impl Network for DartsNetwork {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<(Tensor, Option<Tensor>)> {
        let s = self.stem.forward(x, train)?;
        let (mut s0, mut s1) = (s.clone(), s);
        let mut aux_logits = None;
        for (i, cell) in self.cells.iter().enumerate() {
            let out = self.cell_forward(cell, &s0, &s1, train)?;
            s0 = s1;
            s1 = out;
            if let Some((at, head)) = &self.aux {
                if *at == i && train {
                    aux_logits = Some(head.forward(&s1, train)?);
                }
            }
        }
        let pooled = nas_ops::global_avg_pool(&s1)?;
        Ok((self.classifier.forward(&pooled)?, aux_logits))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![self.stem.batch_norm()];
        for c in &self.cells {
            v.extend(c.pre.0.batch_norms());
            v.extend(c.pre.1.batch_norms());
            for n in &c.nodes {
                for (op, _) in n {
                    v.extend(op.batch_norms());
                }
            }
        }
        if let Some((_, h)) = &self.aux {
            v.push(&h.bn1);
            v.push(&h.bn2);
        }
        v
    }

    fn set_drop_path(&self, p: f64) {
        *self.drop_path.lock().expect("drop-path lock poisoned") = p;
    }

    fn reseed_drop_path(&self, seed: u64) {
        *self.rng.lock().expect("drop-path rng poisoned") =
            nas_core::rng::component_rng(seed, "drop_path");
    }

    fn param_count(&self) -> usize {
        self.store.count_excluding(&["auxiliary_head"])
    }

    fn flops(&self) -> f64 {
        self.flops
    }
}
