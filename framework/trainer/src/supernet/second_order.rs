//! DARTS' unrolled second-order architecture gradient (Liu et al. 2019, eq. 7-8).
use super::*;

impl WeightSharingTrainer {
    /// DARTS' unrolled architecture gradient (Liu et al. 2019, eq. 7-8; reference
    /// `architect.py`): `w' = w - xi * (momentum*buf + dL_train/dw + wd*w)`,
    /// `g = dL_val(w', a)/da - xi * (dL_train(w+, a)/da - dL_train(w-, a)/da) / (2 eps)`
    /// with `w± = w ± eps * dL_val(w', a)/dw'` and `eps = 0.01 / ||dL_val(w', a)/dw'||`
    /// (0.01 is [`TrainerParams::hessian_radius`]).
    /// (pt.darts and NNI multiply by eps/2 instead of dividing by 2*eps; we follow the
    /// formula of the paper and of quark0/darts.)
    pub(super) fn second_order(
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
        let gtrain = self.weight_grads_f64(gtrain)?;
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
        let dw = match self.weight_grads_f64(dw) {
            Ok(dw) => dw,
            Err(e) => {
                self.set_weights(&w0)?;
                return Err(e);
            }
        };
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
}
