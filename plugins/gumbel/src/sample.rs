//! Gumbel-softmax samples and their chain rule, in plain Rust.
//!
//! For logits `alpha` of one decision, Gumbel noise `g_k = -ln(-ln u_k)`, `u_k ~ U(0,1)`,
//! and temperature `tau`:
//!
//! * soft sample `y = softmax((alpha + g) / tau)` (Jang et al. 2017; Maddison et al. 2017);
//! * hard sample `h = one_hot(argmax y)` (= `argmax(alpha + g)`, the Gumbel-max trick), sent
//!   to the trainer with the value exactly 1.0, as GDAS's `hardwts = one_h - probs.detach() +
//!   probs` evaluates to one in the forward pass; its gradient flows into `y`
//!   (straight-through: `dL/dy := dL/dh`).
//!
//! In both cases `dL/dalpha = softmax_backward(y, dL/dy) / tau`.
use nas_core::math::{softmax, softmax_backward};
use rand::Rng;

/// One decision's sample: the noise that made it, the soft sample and the hard choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The soft sample `softmax((alpha + g) / tau)`.
    pub soft: Vec<f64>,
    /// `argmax` of the soft sample.
    pub index: usize,
}

/// Draws Gumbel(0, 1) noise for `n` options. `u` is kept inside `(0, 1)` so that the noise
/// is always finite (the GDAS reference resamples when it meets an inf or NaN instead).
pub fn gumbel_noise(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let u = rng.random::<f64>().clamp(1e-20, 1.0 - 1e-16);
            -(-u.ln()).ln()
        })
        .collect()
}

/// The soft and hard sample of `alpha` under noise `g` at temperature `tau`.
pub fn sample_with(alpha: &[f64], g: &[f64], tau: f64) -> Sample {
    let z: Vec<f64> = alpha.iter().zip(g).map(|(a, g)| (a + g) / tau).collect();
    let soft = softmax(&z);
    let mut index = 0;
    for (k, &v) in soft.iter().enumerate() {
        if v > soft[index] {
            index = k;
        }
    }
    Sample { soft, index }
}

/// Draws a sample of every decision.
pub fn sample_all(alphas: &[Vec<f64>], tau: f64, rng: &mut impl Rng) -> Vec<Sample> {
    alphas
        .iter()
        .map(|a| sample_with(a, &gumbel_noise(a.len(), rng), tau))
        .collect()
}

/// The weights sent to the trainer: the soft sample, or the one-hot hard sample.
pub fn drive_weights(samples: &[Sample], hard: bool) -> Vec<Vec<f32>> {
    samples
        .iter()
        .map(|s| {
            if hard {
                let mut v = vec![0.0f32; s.soft.len()];
                v[s.index] = 1.0;
                v
            } else {
                s.soft.iter().map(|&v| v as f32).collect()
            }
        })
        .collect()
}

/// `dL/dalpha` of one sample from `dL/d(weights sent)`: `softmax_backward(y, g) / tau`,
/// soft or straight-through alike (for a hard sample the trainer returns a zero gradient for
/// the options it did not compute, so only the selected option's gradient enters).
pub fn backward(samples: &[Sample], grads: &[Vec<f32>], tau: f64) -> Vec<Vec<f64>> {
    samples
        .iter()
        .zip(grads)
        .map(|(s, g)| {
            let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            softmax_backward(&s.soft, &g)
                .into_iter()
                .map(|v| v / tau)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straight-through gradient with the trainer's answer `dL/dh = c * e_sel` (only the
    /// selected option computed) equals the derivative of the soft relaxation of the
    /// selected weight, `alpha -> c * y_sel(alpha, g)`, at fixed noise: checked against
    /// central differences of an independent implementation of the Gumbel-softmax.
    #[test]
    fn straight_through_gradient_matches_finite_differences_of_the_relaxation() {
        let alpha = vec![0.4, -0.3, 1.1, 0.05];
        let g = vec![0.7, 2.1, -0.4, 0.3];
        let tau = 0.7;
        let c = 1.9; // dL/d h_sel, as a trainer would report it
        let s = sample_with(&alpha, &g, tau);
        let sel = s.index;
        // argmax(alpha + g) by hand: 0.4+0.7=1.1, -0.3+2.1=1.8, 1.1-0.4=0.7, 0.35 -> 1.
        assert_eq!(sel, 1);
        let mut dh = vec![0.0f32; 4];
        dh[sel] = c as f32;
        let st = backward(&[s], &[dh], tau);
        let y_sel = |a: &[f64]| -> f64 {
            let e: Vec<f64> = a
                .iter()
                .zip(&g)
                .map(|(a, g)| ((a + g) / tau).exp())
                .collect();
            e[sel] / e.iter().sum::<f64>()
        };
        for k in 0..4 {
            let h = 1e-6;
            let (mut ap, mut am) = (alpha.clone(), alpha.clone());
            ap[k] += h;
            am[k] -= h;
            let fd = c * (y_sel(&ap) - y_sel(&am)) / (2.0 * h);
            assert!(
                (fd - st[0][k]).abs() < 1e-6 * (1.0 + fd.abs()),
                "k={k}: fd {fd} vs {}",
                st[0][k]
            );
        }
        // And the hard weights sent are exactly one-hot with 1.0.
        let w = drive_weights(&[sample_with(&alpha, &g, tau)], true);
        assert_eq!(w[0], vec![0.0, 1.0, 0.0, 0.0]);
    }

    /// Gumbel-max: `P(argmax(alpha + g) = k) = softmax(alpha)_k` exactly; the sampler's
    /// frequencies over 40k draws agree within 4 standard errors.
    #[test]
    fn hard_samples_follow_softmax_probabilities() {
        let alpha = vec![1.0, 0.0, -0.5];
        let p = softmax(&alpha);
        let mut rng = nas_core::component_rng(7, "test");
        let n = 40_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let s = sample_with(&alpha, &gumbel_noise(3, &mut rng), 1.0);
            counts[s.index] += 1;
        }
        for k in 0..3 {
            let f = counts[k] as f64 / n as f64;
            let se = (p[k] * (1.0 - p[k]) / n as f64).sqrt();
            assert!((f - p[k]).abs() < 4.0 * se, "k={k}: {f} vs {}", p[k]);
        }
    }
}
