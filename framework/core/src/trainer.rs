//! The trainer, as the decision side sees it.
use serde::{Deserialize, Serialize};

use crate::{ArchGradient, Drive, GradOrder, Result, SpaceSpec};

/// Which part of the data a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The weight-training part of the search split.
    Train,
    /// The architecture (validation) part of the search split.
    Valid,
    /// The held-out test set.
    Test,
}

/// Statistics of one weight step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Training loss of the batch.
    pub loss: f64,
    /// Training accuracy of the batch, in `[0, 1]`.
    pub accuracy: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Statistics of an evaluation pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalStats {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy in `[0, 1]`.
    pub accuracy: f64,
    /// Number of examples seen.
    pub samples: usize,
}

impl EvalStats {
    /// Mean loss and accuracy from per-example sums over `samples` examples (zeros when
    /// there were none).
    pub fn from_sums(loss_sum: f64, correct: usize, samples: usize) -> Self {
        if samples == 0 {
            return EvalStats::default();
        }
        EvalStats {
            loss: loss_sum / samples as f64,
            accuracy: correct as f64 / samples as f64,
            samples,
        }
    }
}

/// The supernet trainer seen through plain data (DESIGN.md section 2).
///
/// It owns the supernet weights, their optimizer and the data; a strategy drives it with
/// [`Drive`]s and receives losses, accuracies and gradients with respect to the mixing
/// weights. No tensor crosses this interface, so a strategy in a dynamic plugin can call it.
///
/// Required behaviour:
/// * [`SupernetTrainer::train_weights`] takes the next training batch, never touches
///   architecture parameters (it has none) and steps the weight optimizer once.
/// * [`SupernetTrainer::arch_gradient`] takes the next validation batch and never changes
///   the weights (the second-order virtual step is undone before it returns).
pub trait SupernetTrainer {
    /// The space the supernet was built from.
    fn spec(&self) -> &SpaceSpec;
    /// Weight steps in one epoch (batches of the training split).
    fn steps_per_epoch(&self) -> usize;
    /// Examples per batch (needed for per-example drives).
    fn batch_size(&self) -> usize;
    /// Starts an epoch: sets the scheduled learning rate and reshuffles the data.
    fn begin_epoch(&mut self, epoch: usize) -> Result<()>;
    /// Current weight learning rate.
    fn weight_lr(&self) -> f64;
    /// One weight step on the next training batch under `drive`.
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats>;
    /// Loss and gradient with respect to the mixing weights on the next validation batch.
    /// For a drive of exactly one discrete path (and [`GradOrder::First`]) it is the ENAS
    /// reward: loss and accuracy of that path on the next (shuffled) validation batch in
    /// training mode, without batch-norm recalibration, with `grads` empty.
    fn arch_gradient(&mut self, drive: &Drive, order: GradOrder) -> Result<ArchGradient>;
    /// Evaluates under `drive` on `split` (all of it, or the first `max_batches`). For a
    /// single discrete path the batch-norm statistics are recalibrated on training batches
    /// first when the trainer is configured to do so.
    fn evaluate(
        &mut self,
        drive: &Drive,
        split: Split,
        max_batches: Option<usize>,
    ) -> Result<EvalStats>;
}
