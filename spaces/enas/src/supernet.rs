//! The weight-sharing search network (melodyguan/enas `micro_child.py`, `_model` with
//! `fixed_arc=None`): a 3x3 stem to `3C` channels, `layers + 2` layers whose reduction
//! layers first apply a factorized reduction to the previous output (doubling `C`) and then
//! run a cell with the reduction arc at stride 1; every cell calibrates its two inputs to
//! `C` channels, computes its five nodes, and maps the concatenation of the unused nodes
//! back to `C` channels by a ReLU-1x1 conv-BN whose weight has one `C x C` slice per
//! possible node (`final_conv`). Every `(node, branch, input)` candidate owns its separable
//! convolutions (`_enas_conv`: weights indexed by the input); pools and identity have no
//! weights. Only the chosen path runs ([`TensorDrive::Path`]).
use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{DataShape, ParamStore, Supernet, TensorDrive};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;

use crate::blocks::{
    batch_norm, conv_weight, pool, Classifier, FactorizedReduction, ReluConvBn, SepConv,
};
use crate::layout::{pool_layers, unused, NODES};

/// How a cell brings its first input to `C` channels and its spatial size.
pub(crate) enum Calib {
    /// ReLU then a factorized reduction (the input is twice as large).
    Reduce(FactorizedReduction),
    /// ReLU-1x1 conv-BN (only the channels differ).
    Conv(ReluConvBn),
}

impl Calib {
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        match self {
            Calib::Reduce(f) => f.forward(x, train),
            Calib::Conv(c) => c.forward(x, train),
        }
    }

    pub(crate) fn bn(&self) -> &BatchNorm2d {
        match self {
            Calib::Reduce(f) => f.bn(),
            Calib::Conv(c) => c.bn(),
        }
    }

    /// The calibration of `(c0, h0)` to `(c, h)`; `None` when nothing differs.
    pub(crate) fn build(
        store: &mut ParamStore,
        name: &str,
        (c0, h0): (usize, usize),
        (c, h): (usize, usize),
    ) -> Result<Option<Calib>> {
        Ok(if h0 != h {
            Some(Calib::Reduce(FactorizedReduction::new(
                store, name, c0, c, true,
            )?))
        } else if c0 != c {
            Some(Calib::Conv(ReluConvBn::new(store, name, c0, c)?))
        } else {
            None
        })
    }
}

struct SearchCell {
    /// Index of the cell type's arc (0 normal, 1 reduce).
    arc: usize,
    pre_reduce: Option<FactorizedReduction>,
    calib_x: Option<Calib>,
    calib_y: Option<ReluConvBn>,
    /// `[node][branch][input]` -> (sep 3x3, sep 5x5).
    convs: Vec<[Vec<[SepConv; 2]>; 2]>,
    final_w: Var,
    final_bn: BatchNorm2d,
    c: usize,
}

impl SearchCell {
    fn forward(&self, p0: &Tensor, p1: &Tensor, arc: &[usize], train: bool) -> CResult<Tensor> {
        let x0 = match &self.calib_x {
            Some(c) => c.forward(p0, train)?,
            None => p0.clone(),
        };
        let x1 = match &self.calib_y {
            Some(c) => c.forward(p1, train)?,
            None => p1.clone(),
        };
        let mut states = vec![x0, x1];
        for node in 0..NODES {
            let mut outs = Vec::with_capacity(2);
            for br in 0..2 {
                let (j, op) = (arc[4 * node + 2 * br], arc[4 * node + 2 * br + 1]);
                let x = &states[j];
                outs.push(match op {
                    0 | 1 => self.convs[node][br][j][op].forward(x, train)?,
                    2 | 3 => pool(x, op, 1)?,
                    _ => x.clone(),
                });
            }
            states.push((&outs[0] + &outs[1])?);
        }
        let idx = unused(arc);
        let cat: Vec<Tensor> = idx.iter().map(|&j| states[j].clone()).collect();
        let ws: Vec<Tensor> = idx
            .iter()
            .map(|&j| self.final_w.as_tensor().narrow(1, j * self.c, self.c))
            .collect::<CResult<_>>()?;
        let y = nas_ops::relu(&Tensor::cat(&cat, 1)?)?;
        let y = nas_ops::conv2d(&y, &Tensor::cat(&ws, 1)?, 1, 0)?;
        self.final_bn.forward(&y, train)
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = Vec::new();
        if let Some(f) = &self.pre_reduce {
            v.push(f.bn());
        }
        if let Some(c) = &self.calib_x {
            v.push(c.bn());
        }
        if let Some(c) = &self.calib_y {
            v.push(c.bn());
        }
        for node in &self.convs {
            for br in node {
                for pair in br {
                    for s in pair {
                        v.extend(s.bns());
                    }
                }
            }
        }
        v.push(&self.final_bn);
        v
    }
}

/// The ENAS micro supernet.
pub struct EnasSupernet {
    store: ParamStore,
    stem_w: Var,
    stem_bn: BatchNorm2d,
    cells: Vec<SearchCell>,
    fc: Classifier,
}

impl EnasSupernet {
    /// Builds the search network for `data` with `channels` (`out_filters`) and `layers`
    /// normal layers.
    pub fn new(
        data: DataShape,
        channels: usize,
        layers: usize,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        let mut store = ParamStore::new(device.clone(), dtype, rng);
        let s = &mut store;
        let mut c = channels;
        let stem_w = conv_weight(s, "stem.w", 3 * c, data.channels, 3)?;
        let stem_bn = batch_norm(s, "stem.bn", 3 * c)?;
        // (channels, height) of the two previous outputs.
        let mut prev = [(3 * c, data.height), (3 * c, data.height)];
        let pools = pool_layers(layers);
        let mut cells = Vec::new();
        for l in 0..layers + 2 {
            let name = format!("layer{l}");
            let reduce = pools.contains(&l);
            let mut pre_reduce = None;
            if reduce {
                c *= 2;
                let (c1, h1) = prev[1];
                pre_reduce = Some(FactorizedReduction::new(
                    s,
                    &format!("{name}.reduce"),
                    c1,
                    c,
                    false,
                )?);
                prev = [prev[1], (c, h1.div_ceil(2))];
            }
            let h = prev[1].1;
            let calib_x = Calib::build(s, &format!("{name}.calib_x"), prev[0], (c, h))?;
            let calib_y = if prev[1].0 != c {
                Some(ReluConvBn::new(
                    s,
                    &format!("{name}.calib_y"),
                    prev[1].0,
                    c,
                )?)
            } else {
                None
            };
            let mut convs = Vec::new();
            for node in 0..NODES {
                let mut per_branch: [Vec<[SepConv; 2]>; 2] = [Vec::new(), Vec::new()];
                for (br, list) in per_branch.iter_mut().enumerate() {
                    for j in 0..node + 2 {
                        let p = format!("{name}.n{node}.b{br}.in{j}");
                        list.push([
                            SepConv::new(s, &format!("{p}.sep3"), 3, 1, c, c)?,
                            SepConv::new(s, &format!("{p}.sep5"), 5, 1, c, c)?,
                        ]);
                    }
                }
                convs.push(per_branch);
            }
            let final_w = conv_weight(s, &format!("{name}.final.w"), c, (NODES + 2) * c, 1)?;
            let final_bn = batch_norm(s, &format!("{name}.final.bn"), c)?;
            cells.push(SearchCell {
                arc: usize::from(reduce),
                pre_reduce,
                calib_x,
                calib_y,
                convs,
                final_w,
                final_bn,
                c,
            });
            prev = [prev[1], (c, h)];
        }
        let fc = Classifier::new(s, c, data.num_classes)?;
        Ok(EnasSupernet {
            store,
            stem_w,
            stem_bn,
            cells,
            fc,
        })
    }
}

impl Supernet for EnasSupernet {
    fn forward(
        &self,
        x: &Tensor,
        drive: &TensorDrive,
        _condition: Option<f32>,
        train: bool,
    ) -> CResult<Tensor> {
        let choices = match drive {
            TensorDrive::Path { choices } => choices,
            TensorDrive::Mixed { .. }
            | TensorDrive::Gated { .. }
            | TensorDrive::SelectedPerSample { .. } => candle_core::bail!(
                "the enas-micro supernet runs discrete paths only (the reference computes only \
                 the sampled child); use a path strategy such as enas or spos"
            ),
        };
        if choices.len() != 2 * 4 * NODES {
            candle_core::bail!("an enas-micro path needs {} choices", 2 * 4 * NODES);
        }
        let arcs = [&choices[..4 * NODES], &choices[4 * NODES..]];
        let s = nas_ops::conv2d(x, self.stem_w.as_tensor(), 1, 1)?;
        let s = self.stem_bn.forward(&s, train)?;
        let (mut p0, mut p1) = (s.clone(), s);
        for cell in &self.cells {
            if let Some(f) = &cell.pre_reduce {
                let r = f.forward(&p1, train)?;
                p0 = p1;
                p1 = r;
            }
            let out = cell.forward(&p0, &p1, arcs[cell.arc], train)?;
            p0 = p1;
            p1 = out;
        }
        self.fc.forward(&p1)
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![&self.stem_bn];
        for c in &self.cells {
            v.extend(c.batch_norms());
        }
        v
    }
}

/// Checks that the data is large enough for two factorized reductions.
pub(crate) fn check_data(data: DataShape) -> Result<()> {
    if data.height < 2 || data.width < 2 || data.height != data.width {
        return Err(NasError::Architecture(format!(
            "enas-micro needs square inputs of at least 2x2, got {}x{}",
            data.height, data.width
        )));
    }
    Ok(())
}
