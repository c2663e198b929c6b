//! The calls strategies make: [`SupernetTrainer`] for [`WeightSharingTrainer`].
use super::*;

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
        let mut total: Option<WeightGrads> = None;
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
            // One path: the gradient tensors as they are. Several (FairNAS): summed in f64.
            total = Some(match total {
                None => WeightGrads::Tensors(g),
                Some(t) => {
                    let mut t = t.into_f64(self.s.net.params().named())?;
                    let g = WeightGrads::Tensors(g).into_f64(self.s.net.params().named())?;
                    for (a, b) in t.iter_mut().zip(&g) {
                        for (x, y) in a.iter_mut().zip(b) {
                            *x += y;
                        }
                    }
                    WeightGrads::Summed(t)
                }
            });
        }
        let on_device =
            DeviceOptimizer::prepare(&mut self.s.optimizer, self.s.net.params().named());
        let grads = total
            .unwrap_or(WeightGrads::Summed(Vec::new()))
            .for_update(self.s.net.params().named(), on_device)?;
        let norm = grads.norm()?;
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
        let _profile = nas_ops::profile::scope("phase: weight update");
        // A path drive leaves every parameter the sampled paths do not use as it is
        // (no momentum, no weight decay), as PyTorch skips a `None` gradient: SPOS's
        // unsampled options (Guo et al. 2020). FairNAS's paths cover every option.
        let skip_unused = self.s.params.skip_unused
            && matches!(drive.kind, DriveKind::Paths { .. })
            && active.iter().any(|a| !a);
        update_weights(
            self.s.optimizer.as_mut(),
            self.s.net.params().named(),
            grads,
            grad_scale(norm, self.s.clip_grad_norm),
            self.lr,
            skip_unused.then_some(active.as_slice()),
        )?;
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
        let (l, c, grads) = match order {
            GradOrder::First => {
                let (l, c, _, ag) = self.loss_grads(&vbatch, drive, false, true)?;
                (l, c, self.arch_grads_to_plain(drive, &ag)?)
            }
            GradOrder::Second { xi } => {
                let xi = xi.unwrap_or(self.lr);
                let (l, c, g) = self.second_order(drive, xi, &vbatch)?;
                (l, c, self.plain_from_f64(drive, &g))
            }
        };
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
        Ok(EvalStats::from_sums(loss, correct, n))
    }
}
