//! The weight-sharing macro search network (melodyguan/enas `general_child.py`, `_model`
//! with `fixed_arc=None` and `whole_channels`): a 3x3 stem conv-BN to `C` channels; per
//! layer the chosen op on the previous output (every `(layer, op)` owns its weights),
//! then, from the second layer on, the chosen earlier outputs (the stem and the layers
//! before the previous one) are added to it and the sum goes through the layer's BN
//! (`skip` of `_enas_layer`); after each pool layer every output so far is reduced by its
//! own factorized reduction (stride 2, `C` channels: the search network keeps `C`);
//! global pooling and a bias-free classifier. Only the chosen path runs
//! ([`TensorDrive::Path`]).
use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use nas_core::Result;
use nas_model::{DataShape, ParamStore, Supernet, TensorDrive};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;

use super::blocks::{MacroHead, MacroOp, Order};
use super::layout::{decision_count, layer_choices, pool_layers, MACRO_OPS};
use crate::blocks::{batch_norm, conv_weight, FactorizedReduction};

struct SearchLayer {
    ops: Vec<MacroOp>,
    /// The BN after the skip sum (layers >= 1).
    skip_bn: Option<BatchNorm2d>,
    /// After a pool layer: one reduction per output so far (the stem first).
    reduce: Vec<FactorizedReduction>,
}

/// The ENAS macro supernet.
pub struct MacroSupernet {
    store: ParamStore,
    stem_w: Var,
    stem_bn: BatchNorm2d,
    layers: Vec<SearchLayer>,
    head: MacroHead,
}

impl MacroSupernet {
    /// Builds the search network for `data` with `layers` layers of `channels` channels.
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
        let c = channels;
        let stem_w = conv_weight(s, "stem.w", c, data.channels, 3)?;
        let stem_bn = batch_norm(s, "stem.bn", c)?;
        let pools = pool_layers(layers);
        let mut built = Vec::with_capacity(layers);
        for l in 0..layers {
            let ops = (0..MACRO_OPS.len())
                .map(|op| {
                    let name = format!("layer{l}.{}", MACRO_OPS[op]);
                    MacroOp::new(s, &name, op, c, c, Order::Search, false)
                })
                .collect::<Result<Vec<_>>>()?;
            let skip_bn = if l > 0 {
                Some(batch_norm(s, &format!("layer{l}.skip.bn"), c)?)
            } else {
                None
            };
            let mut reduce = Vec::new();
            if pools.contains(&l) {
                for i in 0..l + 2 {
                    let name = format!("pool_at{l}.from{i}");
                    reduce.push(FactorizedReduction::new(s, &name, c, c, false)?);
                }
            }
            built.push(SearchLayer {
                ops,
                skip_bn,
                reduce,
            });
        }
        let head = MacroHead::new(s, c, data.num_classes)?;
        Ok(MacroSupernet {
            store,
            stem_w,
            stem_bn,
            layers: built,
            head,
        })
    }
}

impl Supernet for MacroSupernet {
    fn forward(
        &self,
        x: &Tensor,
        drive: &TensorDrive,
        _condition: Option<f32>,
        train: bool,
    ) -> CResult<Tensor> {
        let arc = match drive {
            TensorDrive::Path { choices } => choices,
            TensorDrive::Mixed { .. }
            | TensorDrive::Gated { .. }
            | TensorDrive::SelectedPerSample { .. } => candle_core::bail!(
                "the enas-macro supernet runs discrete paths only (the reference computes only \
                 the sampled child); use a path strategy such as enas or spos"
            ),
        };
        let n = decision_count(self.layers.len());
        if arc.len() != n {
            candle_core::bail!(
                "an enas-macro path of {} layers needs {n} choices",
                self.layers.len()
            );
        }
        let stem = nas_ops::conv2d(x, self.stem_w.as_tensor(), 1, 1)?;
        let mut outs = vec![self.stem_bn.forward(&stem, train)?];
        for (l, layer) in self.layers.iter().enumerate() {
            let (op, skips) = layer_choices(arc, l);
            let Some(op) = layer.ops.get(op) else {
                candle_core::bail!("enas-macro layer {l}: op {op} out of range (6 ops)");
            };
            let prev = outs.last().expect("the stem is always there");
            let mut y = op.forward(prev, train)?;
            if let Some(bn) = &layer.skip_bn {
                for (i, _) in skips.iter().enumerate().filter(|(_, &b)| b == 1) {
                    y = (y + &outs[i])?;
                }
                y = bn.forward(&y, train)?;
            }
            outs.push(y);
            if !layer.reduce.is_empty() {
                outs = outs
                    .iter()
                    .zip(&layer.reduce)
                    .map(|(o, r)| r.forward(o, train))
                    .collect::<CResult<_>>()?;
            }
        }
        self.head.forward(outs.last().expect("at least the stem"))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![&self.stem_bn];
        for l in &self.layers {
            for op in &l.ops {
                v.extend(op.bns());
            }
            v.extend(l.skip_bn.iter());
            v.extend(l.reduce.iter().map(|r| r.bn()));
        }
        v
    }
}
