//! The weight-sharing supernet trainer: its params, setup and state, batches and the
//! gradient plumbing here; the unrolled second-order gradient in [`second_order`], path
//! rewards, BN recalibration and evaluation in [`evaluation`], and the
//! `SupernetTrainer` implementation (the calls strategies make) in [`calls`].
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use nas_core::{
    ArchGradient, Drive, DriveKind, EvalStats, GradOrder, MixingWeights, NasError, Result,
    SpaceSpec, Split, StepStats, SupernetTrainer,
};
use nas_data::{Augment, Batch, Dataset, Loader};
use nas_model::{Supernet, TensorDrive};
use nas_optim::{Optimizer, Schedule};
use serde::{Deserialize, Serialize};

mod calls;
mod evaluation;
mod second_order;

use crate::bridge::{batch_tensors, loss_and_correct, scalar, set_vars, terr, to_f64_all};
use crate::device_optimizer::DeviceOptimizer;
use crate::weight_update::{grad_scale, update_weights, WeightGrads};

/// Params of the `supernet` trainer (`trainer.params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerParams {
    /// Recalibrate batch-norm statistics on training batches before scoring a single
    /// discrete path (SPOS, Guo et al. 2020, section 3.3).
    pub recalibrate_bn: bool,
    /// Training images the recalibration runs: the statistics are reset to mean 0 and
    /// variance 1, then updated with momentum 0.1 over this many shuffled training images
    /// in training-size batches (SPOS reference `Search/tester.py`: about 20,000 images),
    /// at most one pass over the training split.
    pub recalibrate_images: usize,
    /// When positive, the recalibration runs this many training batches instead of
    /// `recalibrate_images` (0: unset).
    pub recalibrate_batches: usize,
    /// A path drive (SPOS, FairNAS) leaves every parameter the sampled paths do not use
    /// untouched: no momentum step and no weight decay, as in the SPOS reference where
    /// their gradients are `None`. `false` steps every parameter (a zero gradient still
    /// moves a parameter by momentum and weight decay).
    pub skip_unused: bool,
    /// Augment the validation batches of the architecture step like the training batches
    /// (DARTS reference `train_search.py`: both queues read the training set with the
    /// training transform). `false`: plain validation batches.
    pub augment_valid: bool,
    /// What to do with a non-finite loss or gradient: `error` stops the run, `skip`
    /// drops the batch and goes on.
    pub on_non_finite: OnNonFinite,
    /// Second order: the weight-space step of the finite-difference Hessian-vector
    /// product, `eps = hessian_radius / ||dL_val/dw'||` (DARTS, Liu et al. 2019 section 2.3
    /// and `architect.py`: 0.01). Smaller values approximate the exact unrolled gradient
    /// more closely on networks whose loss is not smooth at that scale (ReLU kinks).
    pub hessian_radius: f64,
}

/// `trainer.params.on_non_finite`: what a non-finite loss or gradient does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop the run with an error; the last checkpoint stays (the default).
    #[default]
    Error,
    /// Drop the batch (no step) and go on.
    Skip,
}

impl Default for TrainerParams {
    fn default() -> Self {
        TrainerParams {
            recalibrate_bn: true,
            recalibrate_images: 20_000,
            recalibrate_batches: 0,
            skip_unused: true,
            augment_valid: true,
            on_non_finite: OnNonFinite::Error,
            hessian_radius: 0.01,
        }
    }
}

/// Everything the trainer is built from.
pub struct TrainerSetup {
    /// The space's plain-data description.
    pub spec: SpaceSpec,
    /// The supernet.
    pub net: Box<dyn Supernet>,
    /// Its device and dtype.
    pub device: Device,
    /// Its dtype.
    pub dtype: DType,
    /// The training data set (the search split is drawn from it).
    pub train_data: Arc<Dataset>,
    /// The test data set.
    pub test_data: Arc<Dataset>,
    /// Indices of the weight-training part.
    pub train_indices: Vec<usize>,
    /// Indices of the architecture (validation) part.
    pub valid_indices: Vec<usize>,
    /// Normalisation.
    pub mean: Vec<f32>,
    /// Normalisation.
    pub std: Vec<f32>,
    /// Batch size of both parts.
    pub batch_size: usize,
    /// Batch size of evaluation passes.
    pub eval_batch_size: usize,
    /// Augmentation of training batches.
    pub augment: Augment,
    /// The weight optimizer.
    pub optimizer: Box<dyn Optimizer>,
    /// Its schedule.
    pub schedule: Box<dyn Schedule>,
    /// Base learning rate.
    pub base_lr: f64,
    /// Gradient clipping by global norm.
    pub clip_grad_norm: Option<f64>,
    /// Total epochs (for the schedule).
    pub total_epochs: usize,
    /// Trainer params.
    pub params: TrainerParams,
    /// Seed of the data order.
    pub seed: u64,
    /// Optional limit of weight steps per epoch.
    pub steps_per_epoch: Option<usize>,
}

/// What [`WeightSharingTrainer::batch_gradients`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchGradients {
    /// Mean cross-entropy of the batch.
    pub loss: f64,
    /// Correct predictions.
    pub correct: usize,
    /// `dL/dw`, one flat buffer per parameter (creation order).
    pub weights: Vec<Vec<f64>>,
    /// `dL/d mixing weights`, one flat buffer per decision (`[K]`, or `[n * K]` for a
    /// per-example drive); empty for a path drive.
    pub mixing: Vec<Vec<f64>>,
}

/// Loss, correct predictions, flat weight gradients and mixing-weight gradients of a batch.
type LossGrads = (f64, usize, Vec<Option<Tensor>>, Vec<Tensor>);

/// Implements [`SupernetTrainer`] for any [`Supernet`].
pub struct WeightSharingTrainer {
    s: TrainerSetup,
    train: Loader,
    valid: Loader,
    shape: (usize, usize, usize),
    lr: f64,
    epoch: usize,
    step: usize,
    /// A training batch drawn by a second-order architecture step, reused by the next
    /// weight step (as the DARTS reference uses the same batch for both).
    pending_train: Option<Batch>,
}

/// The batch-norm momentum of SPOS's recalibration (reference: PyTorch's default 0.1).
pub const RECALIBRATION_MOMENTUM: f64 = 0.1;

fn loader(
    data: &Arc<Dataset>,
    idx: Vec<usize>,
    bs: usize,
    shuffle: bool,
    augment: Augment,
    s: &TrainerSetup,
    seed: u64,
) -> Result<Loader> {
    Loader::new(
        data.clone(),
        idx,
        bs,
        shuffle,
        augment,
        s.mean.clone(),
        s.std.clone(),
        seed,
    )
}

impl WeightSharingTrainer {
    /// A trainer over `setup`.
    pub fn new(setup: TrainerSetup) -> Result<Self> {
        let r = setup.params.hessian_radius;
        if !(r.is_finite() && r > 0.0) {
            return Err(NasError::InvalidParams {
                component: "trainer supernet".into(),
                path: "hessian_radius".into(),
                message: format!("must be a positive number, got {r}"),
            });
        }
        let d = &setup.train_data;
        let shape = (d.channels, d.height, d.width);
        let train = loader(
            &setup.train_data,
            setup.train_indices.clone(),
            setup.batch_size,
            true,
            setup.augment,
            &setup,
            nas_core::rng::component_seed(setup.seed, "data.train"),
        )?;
        let valid = loader(
            &setup.train_data,
            setup.valid_indices.clone(),
            setup.batch_size,
            true,
            if setup.params.augment_valid {
                setup.augment
            } else {
                Augment::default()
            },
            &setup,
            nas_core::rng::component_seed(setup.seed, "data.valid"),
        )?;
        let lr = setup.base_lr;
        Ok(WeightSharingTrainer {
            s: setup,
            train,
            valid,
            shape,
            lr,
            epoch: 0,
            step: 0,
            pending_train: None,
        })
    }

    /// The supernet.
    pub fn supernet(&self) -> &dyn Supernet {
        self.s.net.as_ref()
    }

    /// The weight optimizer (for checkpoints).
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.s.optimizer.as_ref()
    }

    /// The weight optimizer, mutable (for restoring checkpoints).
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.s.optimizer.as_mut()
    }

    /// Data-order state of both loaders (for checkpoints).
    pub fn loader_states(&self) -> (nas_data::LoaderState, nas_data::LoaderState) {
        (self.train.state(), self.valid.state())
    }

    /// Restores data-order state.
    pub fn restore_loaders(
        &mut self,
        train: &nas_data::LoaderState,
        valid: &nas_data::LoaderState,
    ) -> Result<()> {
        self.train.restore(train);
        self.valid.restore(valid);
        Ok(())
    }

    fn non_finite(&self, quantity: &str) -> NasError {
        NasError::NonFinite {
            quantity: quantity.into(),
            epoch: self.epoch,
            step: self.step,
        }
    }

    /// Builds the tensor drive; mixing weights become variables when `track` is set.
    fn tensor_drive(
        &self,
        drive: &Drive,
        n: usize,
        track: bool,
    ) -> Result<(TensorDrive, Vec<Var>)> {
        let dev = &self.s.device;
        let dt = self.s.dtype;
        let mk = |vals: Vec<f32>, shape: &[usize]| -> Result<Var> {
            let t = Tensor::from_vec(vals, shape, dev)
                .and_then(|t| t.to_dtype(dt))
                .map_err(terr)?;
            Var::from_tensor(&t).map_err(terr)
        };
        match &drive.kind {
            DriveKind::Mixed { weights } | DriveKind::SelectedOnly { weights } => {
                weights.check_shape(&self.s.spec)?;
                if !weights.is_finite() {
                    return Err(self.non_finite("mixing weights"));
                }
                let vars = weights
                    .0
                    .iter()
                    .map(|w| mk(w.clone(), &[w.len()]))
                    .collect::<Result<Vec<_>>>()?;
                let skip = matches!(drive.kind, DriveKind::SelectedOnly { .. });
                Ok((
                    TensorDrive::Mixed {
                        weights: vars.iter().map(|v| v.as_tensor().clone()).collect(),
                        skip_zero: skip,
                        values: Some(weights.clone()),
                    },
                    if track { vars } else { vec![] },
                ))
            }
            DriveKind::Gated { weights, active } => {
                weights.check_shape(&self.s.spec)?;
                nas_core::check_active(active, &self.s.spec)?;
                if !weights.is_finite() {
                    return Err(self.non_finite("gates"));
                }
                let vars = weights
                    .0
                    .iter()
                    .map(|w| mk(w.clone(), &[w.len()]))
                    .collect::<Result<Vec<_>>>()?;
                Ok((
                    TensorDrive::Gated {
                        gates: vars.iter().map(|v| v.as_tensor().clone()).collect(),
                        active: active.clone(),
                    },
                    if track { vars } else { vec![] },
                ))
            }
            DriveKind::MixedPerSample { weights } | DriveKind::SelectedPerSample { weights } => {
                // A strategy sizes its drive by `batch_size()`; the last batch of an epoch
                // may be shorter, and then only its first `n` weight sets are used.
                if weights.len() < n {
                    return Err(NasError::Strategy(format!(
                        "per-example drive has {} weight sets for a batch of {n}",
                        weights.len()
                    )));
                }
                let shape = self.s.spec.shape();
                let mut vars = Vec::with_capacity(shape.len());
                for (d, &k) in shape.iter().enumerate() {
                    let mut flat = Vec::with_capacity(n * k);
                    for w in &weights[..n] {
                        w.check_shape(&self.s.spec)?;
                        flat.extend_from_slice(&w.0[d]);
                    }
                    vars.push(mk(flat, &[n, k])?);
                }
                if weights[..n].iter().any(|w| !w.is_finite()) {
                    return Err(self.non_finite("mixing weights"));
                }
                let tensors = vars.iter().map(|v| v.as_tensor().clone()).collect();
                let td = if matches!(drive.kind, DriveKind::SelectedPerSample { .. }) {
                    TensorDrive::SelectedPerSample {
                        weights: tensors,
                        groups: nas_model::selection_groups(weights, n),
                    }
                } else {
                    TensorDrive::Mixed {
                        weights: tensors,
                        skip_zero: false,
                        values: None,
                    }
                };
                Ok((td, if track { vars } else { vec![] }))
            }
            DriveKind::Paths { archs } => {
                let a = archs
                    .first()
                    .ok_or_else(|| NasError::Strategy("a path drive with no path".into()))?;
                self.s.spec.check(a)?;
                Ok((
                    TensorDrive::Path {
                        choices: a.choices.clone(),
                    },
                    vec![],
                ))
            }
        }
    }

    /// Forward + backward of the loss on a batch; returns loss, correct count, the weight
    /// gradients (one per parameter, `None` where the loss does not depend on it; none at
    /// all unless `want_weights`) and the mixing-weight gradients.
    fn loss_grads(
        &self,
        batch: &Batch,
        drive: &Drive,
        want_weights: bool,
        want_arch: bool,
    ) -> Result<LossGrads> {
        Ok(self
            .loss_grads_active(batch, drive, want_weights, want_arch)?
            .0)
    }

    /// The training-mode forward pass of `batch` under `td` (batch-norm batch statistics,
    /// running statistics updated): the loss tensor, its value and the correct count. A
    /// non-finite loss is an error naming `what`.
    fn training_loss(
        &self,
        batch: &Batch,
        td: &TensorDrive,
        drive: &Drive,
        what: &str,
    ) -> Result<(Tensor, f64, usize)> {
        let _profile = nas_ops::profile::scope("phase: forward + loss");
        let (x, y) = batch_tensors(batch, self.shape, &self.s.device, self.s.dtype)?;
        let logits = self
            .s
            .net
            .forward(&x, td, drive.condition, true)
            .map_err(terr)?;
        let (loss, correct) = loss_and_correct(&logits, &y)?;
        let lv = scalar(&loss)?;
        if !lv.is_finite() {
            return Err(self.non_finite(what));
        }
        Ok((loss, lv, correct))
    }

    /// [`Self::loss_grads`], and per parameter whether the loss depends on it at all (it has
    /// a gradient: PyTorch's `.grad is not None`). A parameter of an option off a sampled
    /// path has none; its buffer in the weight gradients is zeros.
    fn loss_grads_active(
        &self,
        batch: &Batch,
        drive: &Drive,
        want_weights: bool,
        want_arch: bool,
    ) -> Result<(LossGrads, Vec<bool>)> {
        let (td, avars) = self.tensor_drive(drive, batch.n, want_arch)?;
        // Without weight gradients wanted (an architecture step), the fused ops skip theirs.
        let (loss, lv, correct) = if want_weights {
            self.training_loss(batch, &td, drive, "loss")?
        } else {
            nas_ops::with_frozen_weights(|| self.training_loss(batch, &td, drive, "loss"))?
        };
        let grads = {
            let _profile = nas_ops::profile::scope("phase: backward");
            loss.backward().map_err(terr)?
        };
        let mut wg = Vec::new();
        let mut active = Vec::new();
        if want_weights {
            for (_, v) in self.s.net.params().named() {
                let g = grads.get(v.as_tensor()).cloned();
                active.push(g.is_some());
                wg.push(g);
            }
        }
        let mut ag = Vec::new();
        for v in &avars {
            match grads.get(v.as_tensor()) {
                Some(g) => ag.push(g.clone()),
                None => ag.push(v.as_tensor().zeros_like().map_err(terr)?),
            }
        }
        Ok(((lv, correct, wg, ag), active))
    }

    /// Loss, correct count and gradients on a given batch under `drive` at the current
    /// weights, in training mode (batch-norm batch statistics, so the loss is a
    /// deterministic function of the weights and the mixing weights; running statistics are
    /// updated as a side effect but do not enter the loss). Nothing else changes: no
    /// optimizer step, no batch drawn. For tests and diagnostics (e.g. checking
    /// [`SupernetTrainer::arch_gradient`] against finite differences).
    pub fn batch_gradients(&self, batch: &Batch, drive: &Drive) -> Result<BatchGradients> {
        let (loss, correct, weights, g) = self.loss_grads(batch, drive, true, true)?;
        Ok(BatchGradients {
            loss,
            correct,
            weights: self.weight_grads_f64(weights)?,
            mixing: self.arch_grad_f64(&g)?,
        })
    }

    /// The supernet's weights as flat `f64` buffers, one per parameter in creation order.
    pub fn weight_values(&self) -> Result<Vec<Vec<f64>>> {
        self.weights_f64()
    }

    /// Overwrites the supernet's weights (the layout of [`WeightSharingTrainer::weight_values`]).
    pub fn set_weight_values(&self, w: &[Vec<f64>]) -> Result<()> {
        let n = self.s.net.params().named().len();
        if w.len() != n {
            return Err(NasError::Other(format!(
                "{} weight buffers given, the supernet has {n} parameters",
                w.len()
            )));
        }
        self.set_weights(w)
    }

    /// Weight gradients of [`Self::loss_grads`] as `f64` buffers (zeros where none).
    fn weight_grads_f64(&self, g: Vec<Option<Tensor>>) -> Result<Vec<Vec<f64>>> {
        let _profile = nas_ops::profile::scope("phase: gradients to f64");
        WeightGrads::Tensors(g).into_f64(self.s.net.params().named())
    }

    fn weights_f64(&self) -> Result<Vec<Vec<f64>>> {
        let named = self.s.net.params().named();
        to_f64_all(&named.iter().map(|(_, v)| v.as_tensor()).collect::<Vec<_>>())
    }

    fn set_weights(&self, w: &[Vec<f64>]) -> Result<()> {
        let named = self.s.net.params().named();
        set_vars(&named.iter().map(|(_, v)| v).collect::<Vec<_>>(), w)
    }

    fn arch_grads_to_plain(&self, drive: &Drive, g: &[Tensor]) -> Result<Vec<MixingWeights>> {
        Ok(self.plain_from_f64(drive, &self.arch_grad_f64(g)?))
    }

    /// Per-decision gradients (flat `[K]`, or `[n * K]` for a per-example drive on a batch of
    /// `n`) as plain mixing weights: one entry, or one per example of the drive. Entries
    /// beyond a short batch are zero.
    fn plain_from_f64(&self, drive: &Drive, g: &[Vec<f64>]) -> Vec<MixingWeights> {
        let shape = self.s.spec.shape();
        match &drive.kind {
            DriveKind::MixedPerSample { weights } | DriveKind::SelectedPerSample { weights } => (0
                ..weights.len())
                .map(|i| {
                    MixingWeights(
                        shape
                            .iter()
                            .zip(g)
                            .map(|(&k, per)| {
                                (0..k)
                                    .map(|j| per.get(i * k + j).map_or(0.0, |&v| v as f32))
                                    .collect()
                            })
                            .collect(),
                    )
                })
                .collect(),
            _ => vec![MixingWeights(
                g.iter()
                    .map(|v| v.iter().map(|&x| x as f32).collect())
                    .collect(),
            )],
        }
    }

    fn arch_grad_f64(&self, g: &[Tensor]) -> Result<Vec<Vec<f64>>> {
        to_f64_all(&g.iter().collect::<Vec<_>>())
    }
}
