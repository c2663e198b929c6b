//! [`ChainNet`]: a stem, a chain of choice layers and a tail, as the weight-sharing
//! supernet (every option of every layer) or as the standalone network of one architecture
//! (one option per layer).
use candle_core::{Result as CResult, Tensor};
use nas_model::{gated_sum, selected_per_sample_sum, Network, ParamStore, Supernet, TensorDrive};
use nas_ops::BatchNorm2d;

use crate::{CostSum, Linear, Shape};

/// One block of a chain: a function of its input, its own residual connection included.
pub trait Candidate: Send + Sync {
    /// The block's output.
    fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor>;
    /// Its batch norms, in a fixed order.
    fn batch_norms(&self) -> Vec<&BatchNorm2d>;
}

/// The identity: FBNet's `skip` and ProxylessNAS' `zero` on a block with an identity
/// shortcut (a zero body plus the shortcut is the input itself).
pub struct Identity;

impl Candidate for Identity {
    fn forward(&self, x: &Tensor, _train: bool) -> CResult<Tensor> {
        Ok(x.clone())
    }
    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        vec![]
    }
}

/// What a space builds a [`ChainNet`] from.
pub struct ChainParts {
    /// Fixed layers before the first decision.
    pub stem: Vec<Box<dyn Candidate>>,
    /// Per decision, the options built (all of them for a supernet, the chosen one for a
    /// standalone network).
    pub layers: Vec<Vec<Box<dyn Candidate>>>,
    /// Per decision, the shape its options take as input.
    pub layer_inputs: Vec<Shape>,
    /// Fixed layers after the last decision (before global pooling).
    pub tail: Vec<Box<dyn Candidate>>,
    /// The classifier after global average pooling.
    pub classifier: Linear,
    /// Cost of the network as built with one option per layer (unused for supernets).
    pub cost: CostSum,
}

/// A chain network: `stem -> layers -> tail -> global average pool -> classifier`.
pub struct ChainNet {
    store: ParamStore,
    parts: ChainParts,
}

impl ChainNet {
    /// A network over `store` (which holds every parameter of `parts`).
    pub fn new(store: ParamStore, parts: ChainParts) -> Self {
        ChainNet { store, parts }
    }

    /// The parts.
    pub fn parts(&self) -> &ChainParts {
        &self.parts
    }

    fn layer(
        &self,
        d: usize,
        x: &Tensor,
        drive: Option<&TensorDrive>,
        train: bool,
    ) -> CResult<Tensor> {
        let ops = &self.parts.layers[d];
        match drive {
            None => ops[0].forward(x, train),
            Some(TensorDrive::Path { choices }) => {
                let k = *choices.get(d).ok_or_else(|| {
                    candle_core::Error::Msg(format!("path has no choice for layer {d}"))
                })?;
                let op = ops.get(k).ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "layer {d} has {} options, choice {k}",
                        ops.len()
                    ))
                })?;
                op.forward(x, train)
            }
            // Weighted sum of the options (all of them, or only the non-zero ones when
            // skipping): the selected option is still scaled by its weight, so the weight
            // gets its gradient (straight-through hard sampling).
            Some(TensorDrive::Mixed {
                weights,
                skip_zero,
                values,
            }) => {
                let w = &weights[d];
                let mut keep: Vec<u32> = (0..ops.len() as u32)
                    .filter(|&k| {
                        !(*skip_zero && values.as_ref().is_some_and(|v| v.0[d][k as usize] == 0.0))
                    })
                    .collect();
                if keep.is_empty() {
                    keep = (0..ops.len() as u32).collect();
                }
                let ys = keep
                    .iter()
                    .map(|&k| ops[k as usize].forward(x, train))
                    .collect::<CResult<Vec<_>>>()?;
                let wk = nas_model::kept_weights(w, &keep)?;
                nas_ops::weighted_sum(&ys, &wk)
            }
            // Per-example selection (GDAS, one sample per example): each option runs on
            // the examples that chose it.
            Some(TensorDrive::SelectedPerSample { weights, groups }) => {
                let (Some(w), Some(g)) = (weights.get(d), groups.get(d)) else {
                    candle_core::bail!("per-example drive has no weights for layer {d}");
                };
                selected_per_sample_sum(w, g, x, |k, xk| match ops.get(k) {
                    Some(op) => op.forward(xk, train).map(Some),
                    None => candle_core::bail!("layer {d} has {} options, weight {k}", ops.len()),
                })?
                .ok_or_else(|| candle_core::Error::Msg(format!("no selected option in layer {d}")))
            }
            // Binary gates (ProxylessNAS): only the active options run.
            Some(TensorDrive::Gated { gates, active }) => {
                let (Some(g), Some(set)) = (gates.get(d), active.get(d)) else {
                    candle_core::bail!("gated drive has no gates for layer {d}");
                };
                gated_sum(g, set, |k| match ops.get(k) {
                    Some(op) => op.forward(x, train).map(Some),
                    None => candle_core::bail!("layer {d} has {} options, gate {k}", ops.len()),
                })?
                .ok_or_else(|| candle_core::Error::Msg(format!("no active option in layer {d}")))
            }
        }
    }

    fn run(&self, x: &Tensor, drive: Option<&TensorDrive>, train: bool) -> CResult<Tensor> {
        let mut y = x.clone();
        for s in &self.parts.stem {
            y = s.forward(&y, train)?;
        }
        for d in 0..self.parts.layers.len() {
            y = self.layer(d, &y, drive, train)?;
        }
        for t in &self.parts.tail {
            y = t.forward(&y, train)?;
        }
        let pooled = nas_ops::global_avg_pool(&y)?;
        self.parts.classifier.forward(&pooled)
    }

    fn all_batch_norms(&self) -> Vec<&BatchNorm2d> {
        let p = &self.parts;
        let mut v: Vec<&BatchNorm2d> = Vec::new();
        for s in &p.stem {
            v.extend(s.batch_norms());
        }
        for l in &p.layers {
            for o in l {
                v.extend(o.batch_norms());
            }
        }
        for t in &p.tail {
            v.extend(t.batch_norms());
        }
        v
    }

    /// The output of option `k` of layer `d` alone (latency measurement).
    pub fn option_forward(&self, d: usize, k: usize, x: &Tensor, train: bool) -> CResult<Tensor> {
        self.parts.layers[d][k].forward(x, train)
    }
}

impl Supernet for ChainNet {
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

impl Network for ChainNet {
    fn forward(&self, x: &Tensor, _train: bool) -> CResult<(Tensor, Option<Tensor>)> {
        Ok((self.run(x, None, _train)?, None))
    }

    fn params(&self) -> &ParamStore {
        &self.store
    }

    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        self.all_batch_norms()
    }

    /// These networks have no drop-path (the papers train them without it).
    fn set_drop_path(&self, _p: f64) {}

    fn param_count(&self) -> usize {
        self.store.count()
    }

    fn flops(&self) -> f64 {
        self.parts.cost.macs as f64
    }
}
