//! The tensor-side traits of a search space.
use candle_core::{DType, Device, Tensor};
use nas_core::{Architecture, Cost, MixingWeights, Result, SpaceRules};
use nas_ops::BatchNorm2d;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::ParamStore;

/// Shape of the data a network is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataShape {
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// How the supernet is driven in one forward pass, on the tensor side. The trainer builds
/// it from a plain-data [`nas_core::Drive`]; mixing-weight tensors are leaves of the
/// autograd graph so the trainer can return their gradients.
pub enum TensorDrive {
    /// Weighted sums of all options. Each tensor is `[K]` (shared) or `[N, K]` (per example).
    Mixed {
        /// One tensor per decision.
        weights: Vec<Tensor>,
        /// When true, options whose weight is exactly zero (in a `[K]` tensor) are not
        /// computed (GDAS / ProxylessNAS hard sampling); their gradient is zero.
        skip_zero: bool,
        /// The plain values of `weights` (shared case), so that ops can be skipped without
        /// reading tensors back.
        values: Option<MixingWeights>,
    },
    /// Binary gates (ProxylessNAS; built from [`nas_core::DriveKind::Gated`]): decision `d`
    /// computes only the options in `active[d]` and outputs their gate-weighted sum (use
    /// [`gated_sum`]), so every active option's gate gets its gradient, zero-valued gates
    /// included, and no other option is computed.
    Gated {
        /// One `[K]` gate tensor per decision.
        gates: Vec<Tensor>,
        /// The options computed per decision (strictly increasing, non-empty).
        active: Vec<Vec<usize>>,
    },
    /// Per-example selected options (built from [`nas_core::DriveKind::SelectedPerSample`]):
    /// option `k` of decision `d` runs only on the examples `groups[d][k]`, and each
    /// example's output is its own weighted sum (use [`selected_per_sample_sum`]).
    SelectedPerSample {
        /// One `[N, K]` weight tensor per decision.
        weights: Vec<Tensor>,
        /// Per decision, per option: the examples (ascending) whose weight for it is
        /// non-zero; empty groups are not computed.
        groups: Vec<Vec<Vec<u32>>>,
    },
    /// One discrete path: only the chosen option of each decision runs.
    Path {
        /// Option index per decision.
        choices: Vec<usize>,
    },
}

/// `w` at the options `keep` along its last axis: `w` itself when `keep` is every option in
/// order (no index upload, no gather and no scatter in the backward), else one gather.
pub fn kept_weights(w: &Tensor, keep: &[u32]) -> candle_core::Result<Tensor> {
    let all = w.dim(w.rank() - 1)?;
    if keep.len() == all && keep.iter().enumerate().all(|(i, &k)| k as usize == i) {
        return Ok(w.clone());
    }
    let idx = Tensor::new(keep, w.device())?;
    w.index_select(&idx, w.rank() - 1)
}

/// The kept options' weights of each decision ([`kept_weights`]), made once per forward pass
/// and shared by every edge of that decision (the cells of a type share their decisions'
/// weights): one selection, and one in the backward, per decision instead of per edge and
/// cell. The values and gradients are the same (the shared tensor's gradient is the sum of its
/// edges', as the weights' own was). One per forward pass, over one set of weights: a
/// decision asked for other options than its first selection gets a selection of its own.
#[derive(Default)]
pub struct KeptWeights(std::cell::RefCell<std::collections::HashMap<usize, (Vec<u32>, Tensor)>>);

impl KeptWeights {
    /// [`kept_weights`] of `w` at `keep` for decision `d`, made on its first use in this pass.
    pub fn get(&self, d: usize, w: &Tensor, keep: &[u32]) -> candle_core::Result<Tensor> {
        if let Some((kept, t)) = self.0.borrow().get(&d) {
            if kept == keep {
                return Ok(t.clone());
            }
        }
        let wk = kept_weights(w, keep)?;
        self.0.borrow_mut().insert(d, (keep.to_vec(), wk.clone()));
        Ok(wk)
    }
}

/// The output of one decision under [`TensorDrive::Gated`]: `sum_k gates[k] * y_k` over
/// the options `k` of `active` for which `option(k)` returns an output (`None`: the option
/// outputs zeros, as DARTS' `none`, whose gate gradient `<g, 0>` is zero). Only those options
/// are run. `None` when no active option produced an output.
pub fn gated_sum(
    gates: &Tensor,
    active: &[usize],
    mut option: impl FnMut(usize) -> candle_core::Result<Option<Tensor>>,
) -> candle_core::Result<Option<Tensor>> {
    let mut keep: Vec<u32> = Vec::with_capacity(active.len());
    let mut ys = Vec::with_capacity(active.len());
    for &k in active {
        if let Some(y) = option(k)? {
            keep.push(k as u32);
            ys.push(y);
        }
    }
    if ys.is_empty() {
        return Ok(None);
    }
    let gk = kept_weights(gates, &keep)?;
    Ok(Some(nas_ops::weighted_sum(&ys, &gk)?))
}

/// The output of one decision under [`TensorDrive::SelectedPerSample`]: for every option
/// `k` with a non-empty group, `option(k, x[group])` runs on those examples only, is scaled
/// per example by `weights[group, k]` and lands back in its examples' rows; rows of examples
/// whose options give no output (`None`, DARTS' `none`) stay zero. `weights` is `[N, K]`,
/// `x` is `[N, ...]`. `None` when no option produced an output.
pub fn selected_per_sample_sum(
    weights: &Tensor,
    groups: &[Vec<u32>],
    x: &Tensor,
    mut option: impl FnMut(usize, &Tensor) -> candle_core::Result<Option<Tensor>>,
) -> candle_core::Result<Option<Tensor>> {
    let n = x.dim(0)?;
    if weights.dims() != [n, groups.len()] {
        candle_core::bail!(
            "per-example selected drive: weights {:?} for a batch of {n} and {} options",
            weights.dims(),
            groups.len()
        );
    }
    let mut out: Option<Tensor> = None;
    for (k, group) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let idx = Tensor::new(group.as_slice(), x.device())?;
        let xk = if group.len() == n {
            x.clone()
        } else {
            x.index_select(&idx, 0)?
        };
        let Some(yk) = option(k, &xk)? else {
            continue;
        };
        let wk = weights.index_select(&idx, 0)?.narrow(1, k, 1)?;
        let yk = nas_ops::weighted_sum(&[yk], &wk)?;
        if group.len() == n && out.is_none() {
            // The whole batch chose option k (GDAS: one sample per batch): its weighted output
            // is the sum, with no zero tensor and scatter (and no such nodes to backpropagate).
            out = Some(yk);
            continue;
        }
        let base = match out {
            Some(t) => t,
            None => {
                let mut dims = yk.dims().to_vec();
                dims[0] = n;
                Tensor::zeros(dims, yk.dtype(), yk.device())?
            }
        };
        out = Some(base.index_add(&idx, &yk, 0)?);
    }
    Ok(out)
}

/// Per decision, per option, the examples whose weight is non-zero: the groups of a
/// [`TensorDrive::SelectedPerSample`] built from `[example][decision][option]` weights
/// (the first `n` examples).
pub fn selection_groups(weights: &[MixingWeights], n: usize) -> Vec<Vec<Vec<u32>>> {
    let Some(first) = weights.first() else {
        return Vec::new();
    };
    let mut groups: Vec<Vec<Vec<u32>>> =
        first.0.iter().map(|w| vec![Vec::new(); w.len()]).collect();
    for (e, w) in weights.iter().take(n).enumerate() {
        for (d, per) in w.0.iter().enumerate() {
            for (k, &v) in per.iter().enumerate() {
                if v != 0.0 {
                    if let Some(g) = groups.get_mut(d).and_then(|g| g.get_mut(k)) {
                        g.push(e as u32);
                    }
                }
            }
        }
    }
    groups
}

/// A weight-sharing supernet.
///
/// Invariant: `forward` is a pure function of its inputs and the parameters, except for the
/// running statistics of batch norms in training mode.
pub trait Supernet: Send {
    /// Logits `[N, classes]` for input `x` `[N, C, H, W]`. `condition` is the normalised
    /// lambda for a conditioned head (ignored by spaces without one).
    fn forward(
        &self,
        x: &Tensor,
        drive: &TensorDrive,
        condition: Option<f32>,
        train: bool,
    ) -> candle_core::Result<Tensor>;
    /// Trainable weights.
    fn params(&self) -> &ParamStore;
    /// Every batch norm, in a fixed order (checkpoints, recalibration).
    fn batch_norms(&self) -> Vec<&BatchNorm2d>;
}

/// Settings of a standalone network (retraining).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Initial channels.
    pub channels: usize,
    /// Number of cells / layers.
    pub layers: usize,
    /// Whether to build the auxiliary head.
    pub auxiliary: bool,
}

/// A standalone network built from one architecture.
pub trait Network: Send {
    /// Logits and, when built with one and `train` is true, the auxiliary head's logits.
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<(Tensor, Option<Tensor>)>;
    /// Trainable weights (auxiliary head included).
    fn params(&self) -> &ParamStore;
    /// Every batch norm.
    fn batch_norms(&self) -> Vec<&BatchNorm2d>;
    /// Sets the drop-path probability (DARTS scales it linearly over epochs).
    fn set_drop_path(&self, p: f64);
    /// Restarts the drop-path random stream from `seed`. A retraining reseeds it at the start
    /// of every epoch (from the seed and the epoch), so that a retraining resumed from an
    /// epoch-boundary checkpoint draws the same masks as an uninterrupted one. Default: no
    /// drop path, nothing to do.
    fn reseed_drop_path(&self, _seed: u64) {}
    /// Parameters excluding any auxiliary head (as the DARTS reference counts them).
    fn param_count(&self) -> usize;
    /// Multiply-accumulates of one forward pass for one example.
    fn flops(&self) -> f64;
}

/// A search space, tensor side: the plain [`SpaceRules`] plus building networks.
///
/// Required: every method (and those of [`SpaceRules`]).
pub trait SearchSpace: SpaceRules {
    /// The data shape it was built for.
    fn data_shape(&self) -> DataShape;
    /// Builds the weight-sharing supernet with weights drawn from `rng`.
    fn build_supernet(
        &self,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Supernet>>;
    /// Builds the standalone network of `arch`.
    fn build_network(
        &self,
        arch: &Architecture,
        cfg: &NetworkConfig,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Network>>;
    /// Cost (params, FLOPs) of the standalone network of `arch` under `cfg`.
    fn network_cost(&self, arch: &Architecture, cfg: &NetworkConfig) -> Result<Cost>;
    /// The retraining configuration the space uses when none is given.
    fn default_network_config(&self) -> NetworkConfig;
    /// Times every option of every decision on `device` (inputs of `batch` examples, the
    /// median of `repeats` passes after a warm-up) and returns the latency table as JSON, in
    /// the form the space's `latency_table` parameter loads; `None` when the space has no
    /// per-option blocks to time (cell spaces, where an op's latency depends on the cell).
    fn measure_latency_table(
        &self,
        _device: &Device,
        _batch: usize,
        _repeats: usize,
    ) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn every_option_kept_is_the_weights_themselves_and_a_subset_is_gathered() {
        let w = Tensor::new(&[0.1f64, 0.2, 0.3, 0.4], &Device::Cpu).unwrap();
        assert_eq!(kept_weights(&w, &[0, 1, 2, 3]).unwrap().id(), w.id());
        let sub = kept_weights(&w, &[1, 3]).unwrap();
        assert_eq!(sub.to_vec1::<f64>().unwrap(), [0.2, 0.4]);
        // Every option but in another order is a gather, not the weights.
        let swapped = kept_weights(&w, &[1, 0, 2, 3]).unwrap();
        assert_eq!(swapped.to_vec1::<f64>().unwrap(), [0.2, 0.1, 0.3, 0.4]);
    }

    /// Two edges of one decision through the shared selection: one tensor, and the weights'
    /// gradient the sum of the edges' (worked by hand: d/dw of 2 w1 + 3 w1 + 5 w3 + 7 w3).
    #[test]
    fn a_decision_s_selection_is_made_once_and_its_gradient_sums_its_edges() {
        let w = Var::new(&[1.0f64, 2.0, 3.0, 4.0], &Device::Cpu).unwrap();
        let kept = KeptWeights::default();
        let a = kept.get(0, w.as_tensor(), &[1, 3]).unwrap();
        let b = kept.get(0, w.as_tensor(), &[1, 3]).unwrap();
        assert_eq!(a.id(), b.id(), "made once");
        let ca = Tensor::new(&[2.0f64, 5.0], &Device::Cpu).unwrap();
        let cb = Tensor::new(&[3.0f64, 7.0], &Device::Cpu).unwrap();
        let loss =
            ((a * ca).unwrap().sum_all().unwrap() + (b * cb).unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(w.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(g, [0.0, 5.0, 0.0, 12.0]);
        // Other options for the same decision: a selection of their own, not the first one.
        let same_length = kept.get(0, w.as_tensor(), &[0, 2]).unwrap();
        assert_eq!(same_length.to_vec1::<f64>().unwrap(), [1.0, 3.0]);
        let other = kept.get(1, w.as_tensor(), &[0]).unwrap();
        assert_eq!(
            other.to_vec1::<f64>().unwrap(),
            [1.0],
            "another decision, its own"
        );
    }
}
