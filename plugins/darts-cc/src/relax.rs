//! The relaxation from logits to mixing weights, and its chain rule (DARTS-CC reference:
//! `F.softmax(alpha(lam) / t)` or `RelaxedOneHotCategorical(t, logits=alpha(lam))
//! .rsample([batch])`, with the temperature `t = tau0 + delta * epoch`).
use nas_core::math::{softmax, softmax_backward};
use nas_core::{Drive, DriveKind, MixingWeights};
use rand::Rng;

/// The temperature of `epoch`: `tau0 + step * epoch` (reference defaults 1.0 and -0.016),
/// never below `tau_min` (ours: the reference does not guard it; a long run would reach
/// zero and then negative temperatures).
pub fn temperature(tau0: f64, step: f64, tau_min: f64, epoch: usize) -> f64 {
    (tau0 + step * epoch as f64).max(tau_min)
}

/// `softmax(logits / tau)`.
pub fn softmax_t(logits: &[f64], tau: f64) -> Vec<f64> {
    let s: Vec<f64> = logits.iter().map(|l| l / tau).collect();
    softmax(&s)
}

/// A Gumbel-softmax sample `softmax((logits + G) / tau)` with `G_k = -ln(-ln u_k)`,
/// `u_k ~ U(0, 1)` (Jang et al. 2017; what `RelaxedOneHotCategorical.rsample` computes).
pub fn gumbel_softmax(logits: &[f64], tau: f64, rng: &mut impl Rng) -> Vec<f64> {
    let noisy: Vec<f64> = logits
        .iter()
        .map(|l| {
            // Keep u inside (0, 1) like torch's clamp_probs.
            let u = rng.random::<f64>().clamp(1e-12, 1.0 - 1e-12);
            l - (-u.ln()).ln()
        })
        .collect();
    softmax_t(&noisy, tau)
}

/// Chain rule through `w = softmax((logits + noise) / tau)` for any fixed noise:
/// `dL/d logits = softmax_backward(w, dL/dw) / tau`.
pub fn backward(w: &[f64], g: &[f64], tau: f64) -> Vec<f64> {
    softmax_backward(w, g)
        .into_iter()
        .map(|v| v / tau)
        .collect()
}

/// The relaxed mixing weights of one step, kept in `f64` for the chain rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Relaxed {
    /// `softmax(alpha / tau)`, shared by the batch: `[decision][option]`.
    Shared(Vec<Vec<f64>>),
    /// One Gumbel-softmax sample per example: `[example][decision][option]`.
    PerSample(Vec<Vec<Vec<f64>>>),
}

impl Relaxed {
    /// The drive the trainer gets, conditioned on `t`.
    pub fn drive(&self, t: f64) -> Drive {
        let kind = match self {
            Relaxed::Shared(w) => DriveKind::Mixed {
                weights: probs_to_weights(w),
            },
            Relaxed::PerSample(ws) => DriveKind::MixedPerSample {
                weights: ws.iter().map(|w| probs_to_weights(w)).collect(),
            },
        };
        Drive {
            kind,
            condition: Some(t as f32),
        }
    }
}

/// `f64` probabilities as plain `f32` mixing weights.
pub fn probs_to_weights(p: &[Vec<f64>]) -> MixingWeights {
    MixingWeights(
        p.iter()
            .map(|r| r.iter().map(|&v| v as f32).collect())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_decays_linearly_and_is_floored() {
        assert_eq!(temperature(1.0, -0.016, 0.05, 0), 1.0);
        assert!((temperature(1.0, -0.016, 0.05, 10) - 0.84).abs() < 1e-12);
        assert_eq!(temperature(1.0, -0.016, 0.05, 100), 0.05);
    }

    #[test]
    fn tempered_softmax_chain_rule_matches_central_differences() {
        let a = [0.2, -0.4, 1.1];
        let g = [0.5, -2.0, 0.3];
        let tau = 0.7;
        let f = |a: &[f64]| -> f64 { softmax_t(a, tau).iter().zip(&g).map(|(p, g)| p * g).sum() };
        let an = backward(&softmax_t(&a, tau), &g, tau);
        for k in 0..3 {
            let (mut p, mut m) = (a, a);
            p[k] += 1e-6;
            m[k] -= 1e-6;
            let fd = (f(&p) - f(&m)) / 2e-6;
            assert!((fd - an[k]).abs() < 1e-9, "{fd} vs {}", an[k]);
        }
    }

    #[test]
    fn gumbel_samples_follow_the_softmax_at_low_temperature() {
        // At a low temperature a sample is nearly one-hot, and the one is drawn with
        // probability softmax(logits) (the Gumbel-max trick).
        let logits = [0.0, (2.0f64).ln(), (5.0f64).ln()];
        let mut rng = nas_core::component_rng(3, "test");
        let mut counts = [0usize; 3];
        let n = 20000;
        for _ in 0..n {
            let w = gumbel_softmax(&logits, 0.01, &mut rng);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let k = (0..3).max_by(|&i, &j| w[i].total_cmp(&w[j])).unwrap();
            counts[k] += 1;
        }
        for (c, p) in counts.iter().zip([0.125, 0.25, 0.625]) {
            let f = *c as f64 / n as f64;
            assert!((f - p).abs() < 0.015, "{counts:?}");
        }
    }
}
