//! Small numeric helpers every strategy needs: softmax and its chain rule.

/// Numerically stable softmax of logits.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&l| (l - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Chain rule through softmax: given `p = softmax(a)` and `g = dL/dp`, returns
/// `dL/da_k = p_k * (g_k - sum_j p_j g_j)`.
pub fn softmax_backward(p: &[f64], g: &[f64]) -> Vec<f64> {
    let dot: f64 = p.iter().zip(g).map(|(p, g)| p * g).sum();
    p.iter().zip(g).map(|(p, g)| p * (g - dot)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_chain_rule_matches_finite_differences() {
        let a = [0.3, -1.2, 2.0, 0.0];
        let g = [1.5, -0.5, 0.25, 2.0];
        // L(a) = sum_k g_k * softmax(a)_k
        let l = |a: &[f64]| -> f64 { softmax(a).iter().zip(&g).map(|(p, g)| p * g).sum() };
        let analytic = softmax_backward(&softmax(&a), &g);
        for k in 0..a.len() {
            let h = 1e-6;
            let (mut ap, mut am) = (a, a);
            ap[k] += h;
            am[k] -= h;
            let fd = (l(&ap) - l(&am)) / (2.0 * h);
            assert!(
                (fd - analytic[k]).abs() < 1e-8,
                "k={k}: fd {fd} vs {}",
                analytic[k]
            );
        }
        let p = softmax(&[1000.0, 1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-12, "stable for large logits");
    }
}
