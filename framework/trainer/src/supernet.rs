//! The weight-sharing supernet trainer.
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use nas_core::{
    ArchGradient, Drive, DriveKind, EvalStats, GradOrder, MixingWeights, NasError, Result,
    SpaceSpec, Split, StepStats, SupernetTrainer,
};
use nas_data::{Augment, Batch, Dataset, Loader};
use nas_model::{Supernet, TensorDrive};
use nas_optim::{clip_grad_norm, Optimizer, Schedule};
use serde::{Deserialize, Serialize};

use crate::bridge::{batch_tensors, loss_and_correct, scalar, set_var, terr, to_f64};

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
type LossGrads = (f64, usize, Vec<Vec<f64>>, Vec<Tensor>);

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
    /// gradients (flat f64, one per parameter) and the mixing-weight gradients.
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
        let (x, y) = batch_tensors(batch, self.shape, &self.s.device, self.s.dtype)?;
        let (td, avars) = self.tensor_drive(drive, batch.n, want_arch)?;
        let logits = self
            .s
            .net
            .forward(&x, &td, drive.condition, true)
            .map_err(terr)?;
        let (loss, correct) = loss_and_correct(&logits, &y)?;
        let lv = scalar(&loss)?;
        if !lv.is_finite() {
            return Err(self.non_finite("loss"));
        }
        let grads = loss.backward().map_err(terr)?;
        let mut wg = Vec::new();
        let mut active = Vec::new();
        if want_weights {
            for (_, v) in self.s.net.params().named() {
                let g = grads.get(v.as_tensor());
                active.push(g.is_some());
                match g {
                    Some(g) => wg.push(to_f64(g)?),
                    None => wg.push(vec![0.0; v.elem_count()]),
                }
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
            weights,
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

    fn weights_f64(&self) -> Result<Vec<Vec<f64>>> {
        self.s
            .net
            .params()
            .named()
            .iter()
            .map(|(_, v)| to_f64(v.as_tensor()))
            .collect()
    }

    fn set_weights(&self, w: &[Vec<f64>]) -> Result<()> {
        for ((_, v), vals) in self.s.net.params().named().iter().zip(w) {
            set_var(v, vals.clone())?;
        }
        Ok(())
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
        g.iter().map(to_f64).collect()
    }

    /// DARTS' unrolled architecture gradient (Liu et al. 2019, eq. 7-8; reference
    /// `architect.py`): `w' = w - xi * (momentum*buf + dL_train/dw + wd*w)`,
    /// `g = dL_val(w', a)/da - xi * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps)`
    /// with `w± = w ± eps * dL_val(w', a)/dw'` and `eps = 0.01 / ||dL_val(w', a)/dw'||`
    /// (0.01 is [`TrainerParams::hessian_radius`]).
    /// (pt.darts and NNI multiply by eps/2 instead of dividing by 2*eps; we follow the
    /// formula of the paper and of quark0/darts.)
    fn second_order(
        &mut self,
        drive: &Drive,
        xi: f64,
        vbatch: &Batch,
    ) -> Result<(f64, usize, Vec<Vec<f64>>)> {
        let tbatch = match self.pending_train.take() {
            Some(b) => b,
            None => self.train.next_batch()?,
        };
        let w0 = self.weights_f64()?;
        // 1. virtual step.
        let (_, _, gtrain, _) = self.loss_grads(&tbatch, drive, true, false)?;
        let unrolled: Vec<Vec<f64>> = w0
            .iter()
            .zip(&gtrain)
            .enumerate()
            .map(|(i, (w, g))| {
                let d = self.s.optimizer.lookahead_direction(i, w, g);
                w.iter().zip(&d).map(|(w, d)| w - xi * d).collect()
            })
            .collect();
        self.set_weights(&unrolled)?;
        // 2. validation loss at w'.
        let res = self.loss_grads(vbatch, drive, true, true);
        let (lv, correct, dw, da) = match res {
            Ok(r) => r,
            Err(e) => {
                self.set_weights(&w0)?;
                return Err(e);
            }
        };
        let dalpha = self.arch_grad_f64(&da)?;
        // 3. finite-difference Hessian-vector product around w.
        let norm = dw.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let hv = if norm > 0.0 {
            let eps = self.s.params.hessian_radius / norm;
            let shifted = |sign: f64| -> Vec<Vec<f64>> {
                w0.iter()
                    .zip(&dw)
                    .map(|(w, v)| w.iter().zip(v).map(|(w, v)| w + sign * eps * v).collect())
                    .collect()
            };
            self.set_weights(&shifted(1.0))?;
            let plus = self.loss_grads(&tbatch, drive, false, true);
            self.set_weights(&shifted(-1.0))?;
            let minus = self.loss_grads(&tbatch, drive, false, true);
            self.set_weights(&w0)?;
            let gp = self.arch_grad_f64(&plus?.3)?;
            let gm = self.arch_grad_f64(&minus?.3)?;
            gp.iter()
                .zip(&gm)
                .map(|(p, m)| {
                    p.iter()
                        .zip(m)
                        .map(|(p, m)| (p - m) / (2.0 * eps))
                        .collect()
                })
                .collect::<Vec<Vec<f64>>>()
        } else {
            self.set_weights(&w0)?;
            dalpha.iter().map(|v| vec![0.0; v.len()]).collect()
        };
        self.pending_train = Some(tbatch);
        // Per-example drives: the training and validation batches may differ in length
        // (a short last batch); an entry missing from one side contributes zero.
        let g = dalpha
            .iter()
            .zip(&hv)
            .map(|(a, h)| {
                (0..a.len().max(h.len()))
                    .map(|j| {
                        a.get(j).copied().unwrap_or(0.0) - xi * h.get(j).copied().unwrap_or(0.0)
                    })
                    .collect()
            })
            .collect();
        Ok((lv, correct, g))
    }

    /// [`SupernetTrainer::arch_gradient`] of a single discrete path: the ENAS reward
    /// (Pham et al. 2018, section 2.2; melodyguan/enas `micro_child.py` `build_valid_rl`,
    /// which scores the sampled child on the next batch of a shuffled validation stream with
    /// `is_training=True`). Draws the next validation batch (the same shuffled stream the
    /// architecture gradients use), runs the path in training mode (batch statistics; no
    /// recalibration, no backward pass) and returns its loss and accuracy with no gradient
    /// (`grads` is empty: a path has no mixing weights). As in the reference, the forward
    /// pass updates the running batch-norm statistics it touches.
    fn path_reward(
        &mut self,
        drive: &Drive,
        paths: usize,
        order: GradOrder,
    ) -> Result<ArchGradient> {
        if paths != 1 || order != GradOrder::First {
            return Err(NasError::Strategy(
                "an architecture gradient needs mixing weights; for a discrete path it is the \
                 reward of exactly one path with `GradOrder::First` (no gradient)"
                    .into(),
            ));
        }
        let vbatch = self.valid.next_batch()?;
        let (x, y) = batch_tensors(&vbatch, self.shape, &self.s.device, self.s.dtype)?;
        let (td, _) = self.tensor_drive(drive, vbatch.n, false)?;
        let logits = self
            .s
            .net
            .forward(&x, &td, drive.condition, true)
            .map_err(terr)?;
        let (loss, correct) = loss_and_correct(&logits, &y)?;
        let lv = scalar(&loss)?;
        if !lv.is_finite() {
            return Err(self.non_finite("reward loss"));
        }
        Ok(ArchGradient {
            loss: lv,
            accuracy: correct as f64 / vbatch.n as f64,
            grads: vec![],
            condition_grad: None,
        })
    }

    fn eval_loader(&self, split: Split) -> Result<Loader> {
        let (data, idx) = match split {
            Split::Train => (&self.s.train_data, self.s.train_indices.clone()),
            Split::Valid => (&self.s.train_data, self.s.valid_indices.clone()),
            Split::Test => (
                &self.s.test_data,
                (0..self.s.test_data.labels.len()).collect(),
            ),
        };
        loader(
            data,
            idx,
            self.s.eval_batch_size,
            false,
            Augment::default(),
            &self.s,
            0,
        )
    }

    /// The batches a recalibration runs: `recalibrate_batches` when set, else
    /// `ceil(recalibrate_images / batch_size)`; at most one pass over the training split.
    pub fn recalibration_batches(&self) -> usize {
        let per_epoch = self.train.batches_per_epoch();
        let p = &self.s.params;
        let n = if p.recalibrate_batches > 0 {
            p.recalibrate_batches
        } else {
            p.recalibrate_images.div_ceil(self.s.batch_size.max(1))
        };
        n.min(per_epoch)
    }

    /// Recalibrates batch-norm statistics for `drive` as the SPOS reference does
    /// (`Search/tester.py`: running statistics reset to mean 0, variance 1, then forward
    /// passes in training mode over shuffled, augmented training batches with PyTorch's
    /// momentum 0.1). The images are the same for every path (a fixed shuffle of the run's
    /// seed), where the reference's data provider moves on; see docs/single-path.md. The
    /// recalibrated statistics stay in place: [`SupernetTrainer::evaluate`] restores the
    /// training ones after scoring. Public for tests and diagnostics.
    pub fn recalibrate_bn(&mut self, drive: &Drive) -> Result<()> {
        let (td, _) = self.tensor_drive(drive, self.s.batch_size, false)?;
        self.recalibrate(&td, drive.condition).map(|_| ())
    }

    /// [`Self::recalibrate_bn`] with the tensor drive built; returns the statistics it
    /// replaced.
    fn recalibrate(
        &mut self,
        td: &TensorDrive,
        cond: Option<f32>,
    ) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
        let net = self.s.net.as_ref();
        let saved: Vec<_> = net
            .batch_norms()
            .iter()
            .map(|b| b.running_stats())
            .collect();
        self.recalibrate_with(&net.batch_norms(), |x| {
            net.forward(x, td, cond, true).map(|_| ())
        })?;
        Ok(saved)
    }

    /// SPOS's batch-norm recalibration (Guo et al. 2020, section 3.3; reference
    /// `recalc_bn`: statistics reset, momentum 0.1, about 20,000 shuffled training images)
    /// of `bns`, whose running statistics `forward` (a training-mode forward of some
    /// network) updates: the same batches, in the same order, as this trainer's own
    /// recalibration of a path (so a standalone network that computes what a path of the
    /// supernet computes gets the same statistics, `nas export --inherit`).
    ///
    /// Batch `i` (from 1) enters with the factor `max(0.1, 1/i)`: a cumulative average over
    /// the first ten batches, momentum 0.1 after. Over the reference's hundreds of batches
    /// this is its momentum-0.1 average but for a weight of `0.9^n` the reference leaves on
    /// the reset values (mean 0, variance 1); with a few batches (4 in the digits configs)
    /// momentum 0.1 from a reset would keep 66 % of the reset values and score every path
    /// near chance.
    pub fn recalibrate_with(
        &self,
        bns: &[&nas_ops::BatchNorm2d],
        mut forward: impl FnMut(&Tensor) -> candle_core::Result<()>,
    ) -> Result<()> {
        for b in bns {
            b.reset_running_stats();
        }
        let nb = self.recalibration_batches();
        let mut l = loader(
            &self.s.train_data,
            self.s.train_indices.clone(),
            self.s.batch_size,
            true,
            self.s.augment,
            &self.s,
            nas_core::rng::component_seed(self.s.seed, "bn.recalibrate"),
        )?;
        l.start_epoch(0);
        for i in 1..=nb {
            let factor = (1.0 / i as f64).max(RECALIBRATION_MOMENTUM);
            for b in bns {
                b.set_momentum(Some(factor));
            }
            let b = l.next_batch()?;
            let (x, _) = batch_tensors(&b, self.shape, &self.s.device, self.s.dtype)?;
            forward(&x).map_err(terr)?;
        }
        Ok(())
    }

    /// Loss and accuracy of any network `forward` (evaluation mode) on `split`, batch by
    /// batch in the order [`SupernetTrainer::evaluate`] uses (for comparing a standalone
    /// network with the supernet path it came from).
    pub fn evaluate_with(
        &self,
        split: Split,
        mut forward: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<EvalStats> {
        let mut l = self.eval_loader(split)?;
        let (mut loss, mut correct, mut n) = (0.0, 0usize, 0usize);
        for _ in 0..l.batches_per_epoch() {
            let b = l.next_batch()?;
            let (x, y) = batch_tensors(&b, self.shape, &self.s.device, self.s.dtype)?;
            let logits = forward(&x).map_err(terr)?;
            let (lo, c) = loss_and_correct(&logits, &y)?;
            loss += scalar(&lo)? * b.n as f64;
            correct += c;
            n += b.n;
        }
        Ok(EvalStats {
            loss: if n > 0 { loss / n as f64 } else { 0.0 },
            accuracy: if n > 0 {
                correct as f64 / n as f64
            } else {
                0.0
            },
            samples: n,
        })
    }
}

impl SupernetTrainer for WeightSharingTrainer {
    fn spec(&self) -> &SpaceSpec {
        &self.s.spec
    }

    fn steps_per_epoch(&self) -> usize {
        let n = self.train.batches_per_epoch();
        self.s.steps_per_epoch.map_or(n, |s| s.min(n).max(1))
    }

    fn batch_size(&self) -> usize {
        self.s.batch_size
    }

    fn begin_epoch(&mut self, epoch: usize) -> Result<()> {
        self.epoch = epoch;
        self.step = 0;
        self.lr = self
            .s
            .schedule
            .lr(self.s.base_lr, epoch, self.s.total_epochs);
        self.train.start_epoch(epoch);
        self.valid.start_epoch(epoch);
        self.pending_train = None;
        Ok(())
    }

    fn weight_lr(&self) -> f64 {
        self.lr
    }

    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        let batch = match self.pending_train.take() {
            Some(b) => b,
            None => self.train.next_batch()?,
        };
        // FairNAS: several paths on the same batch, gradients accumulated.
        let drives: Vec<Drive> = match &drive.kind {
            DriveKind::Paths { archs } if archs.len() > 1 => archs
                .iter()
                .map(|a| Drive {
                    kind: DriveKind::Paths {
                        archs: vec![a.clone()],
                    },
                    condition: drive.condition,
                })
                .collect(),
            _ => vec![drive.clone()],
        };
        let mut total: Option<Vec<Vec<f64>>> = None;
        let mut active: Vec<bool> = Vec::new();
        let (mut loss, mut correct) = (0.0, 0);
        for d in &drives {
            let r = self.loss_grads_active(&batch, d, true, false);
            let ((l, c, g, _), a) = match r {
                Err(NasError::NonFinite { .. })
                    if self.s.params.on_non_finite == OnNonFinite::Skip =>
                {
                    tracing::warn!(
                        epoch = self.epoch,
                        step = self.step,
                        "non-finite loss: batch skipped"
                    );
                    self.step += 1;
                    return Ok(StepStats {
                        loss: f64::NAN,
                        accuracy: 0.0,
                        grad_norm: f64::NAN,
                        lr: self.lr,
                    });
                }
                r => r?,
            };
            loss += l / drives.len() as f64;
            correct += c;
            if active.is_empty() {
                active = a;
            } else {
                active.iter_mut().zip(a).for_each(|(x, y)| *x |= y);
            }
            total = Some(match total {
                None => g,
                Some(mut t) => {
                    for (a, b) in t.iter_mut().zip(&g) {
                        for (x, y) in a.iter_mut().zip(b) {
                            *x += y;
                        }
                    }
                    t
                }
            });
        }
        let mut grads = total.unwrap_or_default();
        let mut gref: Vec<&mut [f64]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
        let norm = match self.s.clip_grad_norm {
            Some(m) => clip_grad_norm(&mut gref, m),
            None => gref
                .iter()
                .flat_map(|g| g.iter())
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt(),
        };
        if !norm.is_finite() {
            if self.s.params.on_non_finite == OnNonFinite::Skip {
                self.step += 1;
                return Ok(StepStats {
                    loss,
                    accuracy: 0.0,
                    grad_norm: norm,
                    lr: self.lr,
                });
            }
            return Err(self.non_finite("weight gradient"));
        }
        let mut w = self.weights_f64()?;
        {
            let mut wref: Vec<&mut [f64]> = w.iter_mut().map(|g| g.as_mut_slice()).collect();
            let gref: Vec<&[f64]> = grads.iter().map(|g| g.as_slice()).collect();
            // A path drive leaves every parameter the sampled paths do not use as it is
            // (no momentum, no weight decay), as PyTorch skips a `None` gradient: SPOS's
            // unsampled options (Guo et al. 2020). FairNAS's paths cover every option.
            let skip_unused = self.s.params.skip_unused
                && matches!(drive.kind, DriveKind::Paths { .. })
                && active.iter().any(|a| !a);
            if skip_unused {
                self.s
                    .optimizer
                    .step_active(&mut wref, &gref, self.lr, &active)?;
            } else {
                self.s.optimizer.step(&mut wref, &gref, self.lr)?;
            }
        }
        self.set_weights(&w)?;
        self.step += 1;
        Ok(StepStats {
            loss,
            accuracy: correct as f64 / (batch.n * drives.len()) as f64,
            grad_norm: norm,
            lr: self.lr,
        })
    }

    fn arch_gradient(&mut self, drive: &Drive, order: GradOrder) -> Result<ArchGradient> {
        if let DriveKind::Paths { archs } = &drive.kind {
            return self.path_reward(drive, archs.len(), order);
        }
        let vbatch = self.valid.next_batch()?;
        match order {
            GradOrder::First => {
                let (l, c, _, ag) = self.loss_grads(&vbatch, drive, false, true)?;
                let grads = self.arch_grads_to_plain(drive, &ag)?;
                if grads.iter().any(|g| !g.is_finite()) {
                    return Err(self.non_finite("architecture gradient"));
                }
                Ok(ArchGradient {
                    loss: l,
                    accuracy: c as f64 / vbatch.n as f64,
                    grads,
                    condition_grad: None,
                })
            }
            GradOrder::Second { xi } => {
                let xi = xi.unwrap_or(self.lr);
                let (l, c, g) = self.second_order(drive, xi, &vbatch)?;
                let grads = self.plain_from_f64(drive, &g);
                if grads.iter().any(|g| !g.is_finite()) {
                    return Err(self.non_finite("architecture gradient"));
                }
                Ok(ArchGradient {
                    loss: l,
                    accuracy: c as f64 / vbatch.n as f64,
                    grads,
                    condition_grad: None,
                })
            }
        }
    }

    fn evaluate(
        &mut self,
        drive: &Drive,
        split: Split,
        max_batches: Option<usize>,
    ) -> Result<EvalStats> {
        let n0 = self.s.eval_batch_size;
        let (td, _) = self.tensor_drive(drive, n0, false)?;
        let single_path = matches!(&drive.kind, DriveKind::Paths { archs } if archs.len() == 1);
        let saved = if single_path && self.s.params.recalibrate_bn {
            Some(self.recalibrate(&td, drive.condition)?)
        } else {
            None
        };
        let mut l = self.eval_loader(split)?;
        let nb = max_batches.map_or(l.batches_per_epoch(), |m| m.min(l.batches_per_epoch()));
        let (mut loss, mut correct, mut n) = (0.0, 0usize, 0usize);
        let mut result = Ok(());
        for _ in 0..nb {
            let b = l.next_batch()?;
            let r = (|| -> Result<(f64, usize)> {
                let (x, y) = batch_tensors(&b, self.shape, &self.s.device, self.s.dtype)?;
                let td_b = self.tensor_drive(drive, b.n, false)?.0;
                let logits = self
                    .s
                    .net
                    .forward(&x, &td_b, drive.condition, false)
                    .map_err(terr)?;
                let (lo, c) = loss_and_correct(&logits, &y)?;
                Ok((scalar(&lo)? * b.n as f64, c))
            })();
            match r {
                Ok((lo, c)) => {
                    loss += lo;
                    correct += c;
                    n += b.n;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Some(saved) = saved {
            for (b, (m, v)) in self.s.net.batch_norms().iter().zip(saved) {
                b.set_running_stats(&m, &v);
            }
        }
        result?;
        Ok(EvalStats {
            loss: if n > 0 { loss / n as f64 } else { 0.0 },
            accuracy: if n > 0 {
                correct as f64 / n as f64
            } else {
                0.0
            },
            samples: n,
        })
    }
}
