//! The pieces of REINFORCE as plain functions: a factorised categorical policy (one
//! softmax per decision), its log-probability and gradient, the moving-average baseline,
//! and the optimizer of the logits.
use serde::{Deserialize, Serialize};

/// Numerically stable softmax.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// `log pi(actions) = sum_d log softmax(logits[d])[actions[d]]`.
pub fn log_prob(logits: &[Vec<f64>], actions: &[usize]) -> f64 {
    logits
        .iter()
        .zip(actions)
        .map(|(l, &a)| {
            let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
            l[a] - lse
        })
        .sum()
}

/// `d log pi(actions) / d logits[d][k] = [k == actions[d]] - softmax(logits[d])[k]`.
pub fn grad_log_prob(logits: &[Vec<f64>], actions: &[usize]) -> Vec<Vec<f64>> {
    logits
        .iter()
        .zip(actions)
        .map(|(l, &a)| {
            let mut g: Vec<f64> = softmax(l).into_iter().map(|p| -p).collect();
            g[a] += 1.0;
            g
        })
        .collect()
}

/// Exponential moving average with bias correction, the REINFORCE baseline of NB201's
/// reference code (`ExponentialMovingAverage` in `exps/NAS-Bench-201-algos/reinforce.py`):
/// `num = m*num + (1-m)*x`, `den = m*den + (1-m)`, value `num/den`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Weighted sum of the rewards.
    pub numerator: f64,
    /// Sum of the weights.
    pub denominator: f64,
}

impl Baseline {
    /// Adds `x` with momentum `m`.
    pub fn update(&mut self, x: f64, m: f64) {
        self.numerator = m * self.numerator + (1.0 - m) * x;
        self.denominator = m * self.denominator + (1.0 - m);
    }

    /// The current average (0 before the first update).
    pub fn value(&self) -> f64 {
        if self.denominator > 0.0 {
            self.numerator / self.denominator
        } else {
            0.0
        }
    }
}

/// The optimizer of the policy logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOptimizer {
    /// Adam (Kingma & Ba 2015), as NB201's reference code (`torch.optim.Adam`).
    #[default]
    Adam,
    /// Plain gradient descent.
    Sgd,
}

/// Adam's moment estimates for a flat parameter vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// Steps taken.
    pub t: u64,
    /// First moments.
    pub m: Vec<f64>,
    /// Second moments.
    pub v: Vec<f64>,
}

impl AdamState {
    /// One Adam step *descending* `grad` (PyTorch's formula: bias-corrected moments,
    /// `eps` added to the corrected root).
    pub fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64, betas: [f64; 2], eps: f64) {
        if self.m.len() != params.len() {
            self.m = vec![0.0; params.len()];
            self.v = vec![0.0; params.len()];
        }
        self.t += 1;
        let [b1, b2] = betas;
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for i in 0..params.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * grad[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * grad[i] * grad[i];
            let m_hat = self.m[i] / c1;
            let v_hat = self.v[i] / c2;
            params[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_of_log_prob_matches_finite_differences() {
        let logits = vec![
            vec![0.3, -1.2, 2.0, 0.0],
            vec![1.5, 1.4],
            vec![-0.7, 0.2, 0.9],
        ];
        let actions = [2, 0, 1];
        let g = grad_log_prob(&logits, &actions);
        let h = 1e-5;
        for d in 0..logits.len() {
            for k in 0..logits[d].len() {
                let mut up = logits.clone();
                up[d][k] += h;
                let mut down = logits.clone();
                down[d][k] -= h;
                let fd = (log_prob(&up, &actions) - log_prob(&down, &actions)) / (2.0 * h);
                assert!(
                    (fd - g[d][k]).abs() < 1e-8,
                    "d{d} k{k}: fd {fd} vs {}",
                    g[d][k]
                );
            }
        }
    }

    #[test]
    fn log_prob_of_uniform_logits() {
        // Hand value: three decisions of 5, 4, 2 equal options.
        let logits = vec![vec![0.0; 5], vec![7.0; 4], vec![-3.0; 2]];
        let want = -(5.0f64.ln() + 4.0f64.ln() + 2.0f64.ln());
        assert!((log_prob(&logits, &[0, 3, 1]) - want).abs() < 1e-12);
    }

    #[test]
    fn baseline_is_bias_corrected() {
        let mut b = Baseline::default();
        b.update(10.0, 0.9);
        assert!((b.value() - 10.0).abs() < 1e-12);
        b.update(20.0, 0.9);
        // (0.9*0.1*10 + 0.1*20) / (0.9*0.1 + 0.1) = 2.9 / 0.19
        assert!((b.value() - 2.9 / 0.19).abs() < 1e-12);
    }

    #[test]
    fn adam_first_step_moves_each_parameter_by_lr() {
        // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
        let mut p = vec![1.0, 1.0, 1.0];
        let mut a = AdamState::default();
        a.step(&mut p, &[0.5, -2.0, 0.0], 0.1, [0.9, 0.999], 1e-8);
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6 && p[2] == 1.0);
    }
}
