//! Path rewards (ENAS), batch-norm recalibration (SPOS) and evaluation passes.
use super::*;

impl WeightSharingTrainer {
    /// [`SupernetTrainer::arch_gradient`] of a single discrete path: the ENAS reward
    /// (Pham et al. 2018, section 2.2; melodyguan/enas `micro_child.py` `build_valid_rl`,
    /// which scores the sampled child on the next batch of a shuffled validation stream with
    /// `is_training=True`). Draws the next validation batch (the same shuffled stream the
    /// architecture gradients use), runs the path in training mode (batch statistics; no
    /// recalibration, no backward pass) and returns its loss and accuracy with no gradient
    /// (`grads` is empty: a path has no mixing weights). As in the reference, the forward
    /// pass updates the running batch-norm statistics it touches.
    pub(super) fn path_reward(
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
        let (td, _) = self.tensor_drive(drive, vbatch.n, false)?;
        let (_, lv, correct) = self.training_loss(&vbatch, &td, drive, "reward loss")?;
        Ok(ArchGradient {
            loss: lv,
            accuracy: correct as f64 / vbatch.n as f64,
            grads: vec![],
            condition_grad: None,
        })
    }

    pub(super) fn eval_loader(&self, split: Split) -> Result<Loader> {
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
    pub(super) fn recalibrate(
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
        Ok(EvalStats::from_sums(loss, correct, n))
    }
}
