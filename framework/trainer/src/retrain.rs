//! Training a standalone network from scratch: the DARTS "augment" stage (Liu et al. 2019,
//! section 3.3; reference `cnn/train.py`): cross-entropy plus `auxiliary_weight` times the
//! auxiliary head's loss, drop-path probability growing linearly `drop_path * epoch /
//! epochs`, gradient clipping, evaluation on the test set.
use std::sync::Arc;

use candle_core::{DType, Device};
use nas_core::{NasError, Result};
use nas_data::{Augment, Dataset, Loader};
use nas_model::Network;
use nas_optim::{Optimizer, Schedule};
use serde::{Deserialize, Serialize};

use crate::bridge::{batch_tensors, loss_and_correct, scalar, terr};
use crate::device_optimizer::DeviceOptimizer;
use crate::weight_update::{grad_scale, update_weights, WeightGrads};

/// Settings of a retraining run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainSettings {
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Weight of the auxiliary loss (DARTS: 0.4).
    pub auxiliary_weight: f64,
    /// Final drop-path probability (DARTS: 0.2).
    pub drop_path: f64,
    /// Gradient clipping (DARTS: 5).
    pub clip_grad_norm: Option<f64>,
    /// Base learning rate (DARTS: 0.025).
    pub base_lr: f64,
    /// Training batches per epoch at most (tiny runs).
    pub limit_batches: Option<usize>,
    /// Evaluate every this many epochs (and at the end).
    pub eval_every: usize,
    /// Seed of the data order.
    pub seed: u64,
}

/// Per-epoch figures and the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainReport {
    /// `(epoch, train_loss, train_acc, test_loss, test_acc)` for every evaluated epoch.
    pub history: Vec<(usize, f64, f64, f64, f64)>,
    /// Final test accuracy in `[0, 1]`.
    pub test_acc: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Parameters excluding the auxiliary head.
    pub params: usize,
}

/// Trains one standalone network.
pub struct Retrainer {
    /// The network.
    pub net: Box<dyn Network>,
    /// Its device.
    pub device: Device,
    /// Its dtype.
    pub dtype: DType,
    /// Training set.
    pub train: Arc<Dataset>,
    /// Test set.
    pub test: Arc<Dataset>,
    /// Normalisation.
    pub mean: Vec<f32>,
    /// Normalisation.
    pub std: Vec<f32>,
    /// Training augmentation (DARTS: crop 4, flip, cutout 16).
    pub augment: Augment,
    /// Optimizer.
    pub optimizer: Box<dyn Optimizer>,
    /// Schedule.
    pub schedule: Box<dyn Schedule>,
    /// Settings.
    pub settings: RetrainSettings,
}

/// Where a retraining stands at an epoch boundary: what a checkpoint must hold besides the
/// weights, batch-norm statistics and optimizer state. Nothing else is needed: the data
/// order and the augmentation draws of an epoch are functions of `(seed, epoch)` (see
/// `nas_data::Loader`), and the drop-path stream is reseeded from `(seed, epoch)` at the
/// start of every epoch ([`nas_model::Network::reseed_drop_path`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainProgress {
    /// Epochs completed: the epoch a resumed retraining starts with.
    pub next_epoch: usize,
    /// The report so far.
    pub report: RetrainReport,
}

/// What the per-epoch callback of [`Retrainer::run_from`] sees.
pub struct EpochEnd<'a> {
    /// The epoch just completed (0-based).
    pub epoch: usize,
    /// Its figures when it was evaluated (`epoch`, `lr`, `train_loss`, `train_acc`,
    /// `test_loss`, `test_acc`).
    pub metrics: Option<serde_json::Value>,
    /// The progress after it (a checkpoint taken now resumes at `next_epoch`).
    pub progress: &'a RetrainProgress,
}

impl Retrainer {
    /// Runs the whole training; `on_epoch` receives each evaluated epoch's figures.
    pub fn run(
        &mut self,
        mut on_epoch: impl FnMut(usize, &serde_json::Value) -> Result<()>,
    ) -> Result<RetrainReport> {
        self.run_from(RetrainProgress::default(), |_, end| match &end.metrics {
            Some(m) => on_epoch(end.epoch, m),
            None => Ok(()),
        })
    }

    /// Trains from `start` (the default: from scratch; else the progress of a checkpoint
    /// whose weights, batch-norm statistics and optimizer state were loaded into `self`)
    /// to the last epoch. `on_epoch` runs after every epoch with the retrainer itself, so
    /// that it can write a checkpoint.
    pub fn run_from(
        &mut self,
        start: RetrainProgress,
        mut on_epoch: impl FnMut(&Retrainer, EpochEnd<'_>) -> Result<()>,
    ) -> Result<RetrainReport> {
        let st = self.settings.clone();
        let shape = (self.train.channels, self.train.height, self.train.width);
        let mut loader = Loader::new(
            self.train.clone(),
            (0..self.train.labels.len()).collect(),
            st.batch_size,
            true,
            self.augment,
            self.mean.clone(),
            self.std.clone(),
            nas_core::rng::component_seed(st.seed, "retrain.data"),
        )?;
        let mut progress = start;
        progress.report.params = self.net.param_count();
        for epoch in progress.next_epoch..st.epochs {
            let _epoch_span = tracing::debug_span!("retrain_epoch", n = epoch + 1).entered();
            let lr = self.schedule.lr(st.base_lr, epoch, st.epochs);
            self.net
                .set_drop_path(st.drop_path * epoch as f64 / st.epochs as f64);
            self.net.reseed_drop_path(nas_core::rng::component_seed(
                st.seed,
                &format!("retrain.drop_path.{epoch}"),
            ));
            loader.start_epoch(epoch);
            let nb = st.limit_batches.map_or(loader.batches_per_epoch(), |l| {
                l.min(loader.batches_per_epoch())
            });
            let (mut tl, mut tc, mut tn) = (0.0, 0usize, 0usize);
            for step in 0..nb {
                let b = loader.next_batch()?;
                let (lv, correct) = self.train_step(&b, shape, lr, epoch, step)?;
                tl += lv * b.n as f64;
                tc += correct;
                tn += b.n;
            }
            let last = epoch + 1 == st.epochs;
            let mut metrics = None;
            if last || (st.eval_every > 0 && (epoch + 1) % st.eval_every == 0) {
                let (el, ea) = self.evaluate(shape)?;
                let (trl, tra) = (tl / tn.max(1) as f64, tc as f64 / tn.max(1) as f64);
                let report = &mut progress.report;
                report.history.push((epoch, trl, tra, el, ea));
                report.test_acc = ea;
                report.test_loss = el;
                metrics = Some(
                    serde_json::json!({"epoch": epoch, "lr": lr, "train_loss": trl,
                    "train_acc": tra, "test_loss": el, "test_acc": ea}),
                );
            }
            progress.next_epoch = epoch + 1;
            on_epoch(
                self,
                EpochEnd {
                    epoch,
                    metrics,
                    progress: &progress,
                },
            )?;
        }
        Ok(progress.report)
    }

    /// One optimizer step on batch `b` (images `shape` = (C, H, W)) at learning rate `lr`;
    /// returns its loss and correct count. `epoch` and `step` only name a non-finite loss.
    /// Public for `nas bench --strategy retrain`.
    pub fn train_step(
        &mut self,
        b: &nas_data::Batch,
        shape: (usize, usize, usize),
        lr: f64,
        epoch: usize,
        step: usize,
    ) -> Result<(f64, usize)> {
        let st = &self.settings;
        let (x, y) = batch_tensors(b, shape, &self.device, self.dtype)?;
        let (logits, aux) = self.net.forward(&x, true).map_err(terr)?;
        let (mut loss, correct) = loss_and_correct(&logits, &y)?;
        if let (Some(a), true) = (aux, st.auxiliary_weight > 0.0) {
            let (al, _) = loss_and_correct(&a, &y)?;
            loss = (loss + (al * st.auxiliary_weight).map_err(terr)?).map_err(terr)?;
        }
        let lv = scalar(&loss)?;
        if !lv.is_finite() {
            return Err(NasError::NonFinite {
                quantity: "retraining loss".into(),
                epoch,
                step,
            });
        }
        let grads = loss.backward().map_err(terr)?;
        let named = self.net.params().named();
        let on_device = DeviceOptimizer::prepare(&mut self.optimizer, named);
        let grads = WeightGrads::Tensors(
            named
                .iter()
                .map(|(_, v)| grads.get(v.as_tensor()).cloned())
                .collect(),
        )
        .for_update(named, on_device)?;
        let scale = match st.clip_grad_norm {
            Some(m) => grad_scale(grads.norm()?, Some(m)),
            None => 1.0,
        };
        update_weights(self.optimizer.as_mut(), named, grads, scale, lr, None)?;
        Ok((lv, correct))
    }

    /// Loss and accuracy on the test set.
    pub fn evaluate(&self, shape: (usize, usize, usize)) -> Result<(f64, f64)> {
        let mut l = Loader::new(
            self.test.clone(),
            (0..self.test.labels.len()).collect(),
            self.settings.batch_size.max(1),
            false,
            Augment::default(),
            self.mean.clone(),
            self.std.clone(),
            0,
        )?;
        let (mut loss, mut correct, mut n) = (0.0, 0usize, 0usize);
        for _ in 0..l.batches_per_epoch() {
            let b = l.next_batch()?;
            let (x, y) = batch_tensors(&b, shape, &self.device, self.dtype)?;
            let (logits, _) = self.net.forward(&x, false).map_err(terr)?;
            let (lo, c) = loss_and_correct(&logits, &y)?;
            loss += scalar(&lo)? * b.n as f64;
            correct += c;
            n += b.n;
        }
        Ok((loss / n.max(1) as f64, correct as f64 / n.max(1) as f64))
    }
}
