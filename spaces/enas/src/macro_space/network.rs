//! The standalone network of one macro architecture, for retraining (melodyguan/enas
//! `general_child.py` with `fixed_arc` and `whole_channels`, `_fixed_layer`): a 3x3 stem
//! conv-BN to `C` channels; per layer the chosen op in the reference's fixed order
//! (ReLU-1x1 conv-BN, then ReLU-conv-BN); from the second layer on, the chosen earlier
//! outputs are concatenated with the op's output and mapped back to `C` channels by
//! ReLU-1x1 conv-BN (`skip`); after each pool layer `C` doubles and every output so far is
//! reduced to the new `C` by its own factorized reduction; global pooling and a bias-free
//! classifier.
//!
//! Differences from the reference, documented in docs/enas.md: the separable ops are
//! separable here (the reference's `_fixed_layer` builds plain convolutions for them;
//! `retrain_sep_as_conv: true` reproduces that); the pool ops run ReLU-1x1 conv-BN then the
//! pool (the reference's `_fixed_layer` has no pool branch: `pass`, then fails); no dropout
//! before the classifier (the reference final script keeps 0.5).
use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{DataShape, Network, ParamStore};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;

use super::blocks::{ConvBn, MacroHead, MacroOp, Order};
use super::layout::{layer_choices, layers_of, pool_layers};
use crate::blocks::{batch_norm, conv_weight, FactorizedReduction};

struct FixedLayer {
    op: MacroOp,
    /// The chosen earlier outputs (0 the stem, `i >= 1` layer `i - 1`), ascending.
    skips: Vec<usize>,
    /// ReLU-1x1 conv-BN over the concatenation (layers >= 1).
    skip_conv: Option<ConvBn>,
    reduce: Vec<FactorizedReduction>,
}

/// The standalone ENAS macro network.
pub struct MacroNetwork {
    store: ParamStore,
    stem_w: Var,
    stem_bn: BatchNorm2d,
    layers: Vec<FixedLayer>,
    head: MacroHead,
    flops: f64,
}

impl MacroNetwork {
    /// Builds the network of `arc` (its length fixes the layer count) with `channels` channels before the
    /// first reduction; `sep_as_conv` as [`super::MacroSpaceParams::retrain_sep_as_conv`].
    pub fn new(
        arc: &[usize],
        data: DataShape,
        channels: usize,
        sep_as_conv: bool,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        let layers = layers_of(arc.len()).ok_or_else(|| {
            NasError::Architecture(format!(
                "{} choices are no enas-macro arc (L layers have L + L(L-1)/2)",
                arc.len()
            ))
        })?;
        let mut store = ParamStore::new(device.clone(), dtype, rng);
        let s = &mut store;
        let mut c = channels;
        let (mut hh, mut ww) = (data.height, data.width);
        let mut h = hh * ww;
        let stem_w = conv_weight(s, "stem.w", c, data.channels, 3)?;
        let stem_bn = batch_norm(s, "stem.bn", c)?;
        let mut macs = (9 * data.channels * c * h) as f64;
        let pools = pool_layers(layers);
        // Channels of every output so far.
        let mut widths = vec![c];
        let mut built = Vec::with_capacity(layers);
        for l in 0..layers {
            let (op_i, bits) = layer_choices(arc, l);
            let op = MacroOp::new(
                s,
                &format!("layer{l}.op"),
                op_i,
                c,
                c,
                Order::Fixed,
                sep_as_conv,
            )?;
            macs += (op.macs_per_pixel(c) * h) as f64;
            let skips: Vec<usize> = (0..l).filter(|&i| bits[i] == 1).collect();
            let skip_conv = if l > 0 {
                let cin = (skips.len() + 1) * c;
                macs += (cin * c * h) as f64;
                Some(ConvBn::plain(s, &format!("layer{l}.skip"), 1, cin, c)?)
            } else {
                None
            };
            widths.push(c);
            let mut reduce = Vec::new();
            if pools.contains(&l) {
                c *= 2;
                (hh, ww) = (hh.div_ceil(2), ww.div_ceil(2));
                h = hh * ww;
                for (i, w) in widths.iter().enumerate() {
                    let name = format!("pool_at{l}.from{i}");
                    macs += (w * c * h) as f64;
                    reduce.push(FactorizedReduction::new(s, &name, *w, c, false)?);
                }
                widths = vec![c; widths.len()];
            }
            built.push(FixedLayer {
                op,
                skips,
                skip_conv,
                reduce,
            });
        }
        let head = MacroHead::new(s, c, data.num_classes)?;
        macs += (c * data.num_classes) as f64;
        Ok(MacroNetwork {
            store,
            stem_w,
            stem_bn,
            layers: built,
            head,
            flops: macs,
        })
    }

    /// The earlier outputs each layer adds (0 the stem, `i >= 1` layer `i - 1`).
    pub fn skip_inputs(&self) -> Vec<Vec<usize>> {
        self.layers.iter().map(|l| l.skips.clone()).collect()
    }
}

impl Network for MacroNetwork {
    fn forward(&self, x: &Tensor, train: bool) -> CResult<(Tensor, Option<Tensor>)> {
        let stem = nas_ops::conv2d(x, self.stem_w.as_tensor(), 1, 1)?;
        let mut outs = vec![self.stem_bn.forward(&stem, train)?];
        for layer in &self.layers {
            let prev = outs.last().expect("the stem is always there");
            let mut y = layer.op.forward(prev, train)?;
            if let Some(conv) = &layer.skip_conv {
                let mut parts: Vec<Tensor> = layer.skips.iter().map(|&i| outs[i].clone()).collect();
                parts.push(y);
                y = conv.forward(&nas_ops::relu(&Tensor::cat(&parts, 1)?)?, train)?;
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
        let logits = self.head.forward(outs.last().expect("at least the stem"))?;
        Ok((logits, None))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![&self.stem_bn];
        for l in &self.layers {
            v.extend(l.op.bns());
            v.extend(l.skip_conv.iter().map(|c| c.bn()));
            v.extend(l.reduce.iter().map(|r| r.bn()));
        }
        v
    }

    /// The reference has no drop-path in the macro network.
    fn set_drop_path(&self, _p: f64) {}

    fn param_count(&self) -> usize {
        self.store.count()
    }

    fn flops(&self) -> f64 {
        self.flops
    }
}
