//! The path-level sampling and gradient estimate of ProxylessNAS (Cai et al. 2019, section
//! 3.2, eq. 4; reference code mit-han-lab/proxylessnas `search/modules/mix_op.py`,
//! `MixedEdge.binarize`, `set_arch_param_grad` and `rescale_updated_arch_param` in the
//! `two` mode). Pure functions over plain numbers, so tests check them without a network.
use nas_core::math::softmax;
use rand::Rng;

/// Draws one index from the categorical distribution `p` (weights need not sum to 1).
pub fn sample_categorical(p: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (k, &w) in p.iter().enumerate() {
        if u < w {
            return k;
        }
        u -= w;
    }
    // Rounding: the last option with a positive weight.
    p.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Draws `n` distinct indices from `p` without replacement, one after the other, each from
/// the remaining weights (as `torch.multinomial(p, n, replacement=False)` does). Returns
/// fewer when `p` has fewer than `n` options.
pub fn sample_without_replacement(p: &[f64], n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut w = p.to_vec();
    let mut out = Vec::with_capacity(n.min(p.len()));
    for _ in 0..n.min(p.len()) {
        let k = sample_categorical(&w, rng);
        out.push(k);
        w[k] = 0.0;
        if w.iter().all(|&v| v <= 0.0) {
            // Only zero weights left (p had zeros): take the first unused index.
            if out.len() < n.min(p.len()) {
                if let Some(j) = (0..p.len()).find(|j| !out.contains(j)) {
                    w[j] = 1.0;
                }
            }
        }
    }
    out
}

/// The options of one decision involved in one architecture step.
#[derive(Debug, Clone, PartialEq)]
pub struct Involved {
    /// The option whose gate is 1 (its output is the decision's output).
    pub active: usize,
    /// The other sampled option: computed (its gate gets a gradient), gate 0. `None` for
    /// a decision with a single option.
    pub other: Option<usize>,
}

impl Involved {
    /// `[active, other]` (the reference's `active_index + inactive_index`).
    pub fn indices(&self) -> Vec<usize> {
        let mut v = vec![self.active];
        v.extend(self.other);
        v
    }

    /// The computed options, increasing (the drive's active set).
    pub fn sorted(&self) -> Vec<usize> {
        let mut v = self.indices();
        v.sort_unstable();
        v
    }
}

/// `softmax` of the logits `alpha[i]` over the indices `idx` only (the reference's
/// `probs_slice`).
pub fn restricted_softmax(alpha: &[f64], idx: &[usize]) -> Vec<f64> {
    softmax(&idx.iter().map(|&i| alpha[i]).collect::<Vec<_>>())
}

/// The `two` mode's sampling for one decision (`MixedEdge.binarize`): two options drawn
/// without replacement from `p = softmax(alpha)`, then the active one of the two drawn
/// from `softmax(alpha)` restricted to them.
pub fn sample_two(alpha: &[f64], rng: &mut impl Rng) -> Involved {
    let p = softmax(alpha);
    let pair = sample_without_replacement(&p, 2, rng);
    if pair.len() < 2 {
        return Involved {
            active: pair.first().copied().unwrap_or(0),
            other: None,
        };
    }
    let q = restricted_softmax(alpha, &pair);
    let c = sample_categorical(&q, rng);
    Involved {
        active: pair[c],
        other: Some(pair[1 - c]),
    }
}

/// The path-level (BinaryConnect) estimate of eq. 4 over the involved options:
/// `dL/d alpha_i = sum_j dL/dg_j * q_j * (delta_ij - q_i)` for `i, j` in `idx`, with
/// `q = softmax(alpha[idx])`; zero for every other option. `gate_grad` is `dL/dg` over all
/// options of the decision.
pub fn binary_connect_grad(alpha: &[f64], idx: &[usize], gate_grad: &[f64]) -> Vec<f64> {
    let q = restricted_softmax(alpha, idx);
    let mut g = vec![0.0; alpha.len()];
    for (i, &oi) in idx.iter().enumerate() {
        for (j, &oj) in idx.iter().enumerate() {
            let delta = if i == j { 1.0 } else { 0.0 };
            g[oi] += gate_grad[oj] * q[j] * (delta - q[i]);
        }
    }
    g
}

/// After an optimizer step on the involved logits, shifts them by a common offset so that
/// `sum exp(alpha[idx])` is what it was before the step (`rescale_updated_arch_param`): the
/// probabilities of the options that were not sampled do not change.
pub fn rescale(alpha: &mut [f64], old: &[f64], idx: &[usize]) {
    let lse = |a: &[f64]| {
        let m = idx.iter().map(|&i| a[i]).fold(f64::NEG_INFINITY, f64::max);
        m + idx.iter().map(|&i| (a[i] - m).exp()).sum::<f64>().ln()
    };
    let offset = lse(alpha) - lse(old);
    for &i in idx {
        alpha[i] -= offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rescale_keeps_the_other_probabilities() {
        let old = vec![0.3, -0.2, 1.0, 0.1];
        let mut a = old.clone();
        a[1] += 0.7;
        a[3] -= 0.4;
        rescale(&mut a, &old, &[1, 3]);
        let (p0, p1) = (softmax(&old), softmax(&a));
        assert!((p0[0] - p1[0]).abs() < 1e-12 && (p0[2] - p1[2]).abs() < 1e-12);
        // The pair keeps its total but moves toward option 1.
        assert!((p0[1] + p0[3] - p1[1] - p1[3]).abs() < 1e-12);
        assert!(p1[1] > p0[1]);
    }

    #[test]
    fn without_replacement_draws_distinct_indices() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let s = sample_without_replacement(&[0.5, 0.0, 0.25, 0.25], 2, &mut rng);
            assert_eq!(s.len(), 2);
            assert_ne!(s[0], s[1]);
            assert!(!s.contains(&1), "a zero-probability option drawn: {s:?}");
        }
        assert_eq!(sample_without_replacement(&[1.0], 2, &mut rng), vec![0]);
    }
}
