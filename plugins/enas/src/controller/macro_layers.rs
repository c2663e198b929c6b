//! The ENAS macro controller's layers (Pham et al. 2018, section 2.4; melodyguan/enas
//! `general_controller.py`, `_build_sampler` with `search_whole_channels`).
//!
//! Per layer `l`: one LSTM step and the op head `h W_soft` (no bias, as the reference),
//! divided by the temperature and squashed by `tanh_constant * tanh` (not reduced: the
//! reference's macro controller has no `op_tanh_reduce`); the op's embedding is the next
//! input. A second LSTM step gives the layer's anchor `h_l`; for `l >= 1` the skip
//! attention `q_i = v^T tanh(W_1 h_i + W_2 h_l)` over the anchors of the earlier layers
//! `i < l` gives the two logits `[-q_i, q_i]` of skip bit `i` (same temperature and
//! squashing), one bit sampled per earlier layer; the skip penalty of the layer is
//! `sum_i sum_{b in 0,1} s_ib ln(s_ib / t_b)` with `s_i = sigmoid(logits_i)` and
//! `t = [1 - skip_target, skip_target]` (the reference applies the sigmoid to each of the
//! two logits, not the softmax); the next input is the mean of the chosen anchors,
//! `sum_{i chosen} h_i / (1 + #chosen)`, or `g_emb` for layer 0.
use candle_core::{Device, Result as CResult, Tensor};

use super::{Acc, Controller, Pick, G_EMB, V_ATTN, W_ATTN_1, W_ATTN_2};
use crate::plan::MacroLayerPlan;

fn sigmoid(t: &Tensor) -> CResult<Tensor> {
    t.neg()?.exp()?.affine(1.0, 1.0)?.recip()
}

impl Controller {
    /// Samples (or scores) the macro layers `layers` from LSTM state `(c, h)`; returns the
    /// LSTM state after them.
    pub(super) fn macro_layers(
        &self,
        layers: &[MacroLayerPlan],
        (mut c, mut h): (Tensor, Tensor),
        pick: &mut Pick,
        acc: &mut Acc,
    ) -> CResult<(Tensor, Tensor)> {
        let tc = self.cfg.tanh_constant;
        let t = self.cfg.skip_target;
        let target = Tensor::from_slice(&[1.0 - t, t], (1, 2), &Device::Cpu)?;
        let mut input = self.t(G_EMB).clone();
        let mut anchors: Vec<Tensor> = Vec::new();
        let mut anchors_w1: Vec<Tensor> = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let (d, head) = layer.op;
            (c, h) = self.lstm(&input, &c, &h)?;
            let hv = self.heads[head];
            let logits = self.squash(h.matmul(self.t(hv.w))?, tc)?;
            let (k, lp, e) = Self::choose(&logits, pick, d)?;
            acc.add(d, k, lp, e)?;
            input = self.t(hv.emb).narrow(0, k, 1)?;
            (c, h) = self.lstm(&input, &c, &h)?;
            if l > 0 {
                let q = Tensor::cat(&anchors_w1, 0)?
                    .broadcast_add(&h.matmul(self.t(W_ATTN_2))?)?
                    .tanh()?
                    .matmul(self.t(V_ATTN))?;
                let logits = self.squash(Tensor::cat(&[q.neg()?, q], 1)?, tc)?;
                let s = sigmoid(&logits)?;
                let kl = (&s * s.broadcast_div(&target)?.log()?)?.sum_all()?;
                acc.penalties.push(kl);
                let mut chosen = Vec::new();
                for (i, &sd) in layer.skips.iter().enumerate() {
                    let (b, lp, e) = Self::choose(&logits.narrow(0, i, 1)?, pick, sd)?;
                    acc.add(sd, b, lp, e)?;
                    if b == 1 {
                        chosen.push(anchors[i].clone());
                    }
                }
                acc.skip_count += chosen.len();
                let n = chosen.len() as f64;
                input = if chosen.is_empty() {
                    anchors[0].zeros_like()?
                } else {
                    Tensor::cat(&chosen, 0)?.sum_keepdim(0)?
                }
                .affine(1.0 / (1.0 + n), 0.0)?;
            } else {
                input = self.t(G_EMB).clone();
            }
            anchors.push(h.clone());
            anchors_w1.push(h.matmul(self.t(W_ATTN_1))?);
        }
        Ok((c, h))
    }
}
