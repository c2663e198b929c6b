//! The expected cost of ProxylessNAS (Cai et al. 2019, section 3.3; reference code
//! mit-han-lab/proxylessnas `SuperProxylessNASNets.expected_latency`) under the sampled
//! pair's renormalised probabilities, with its exact gradient. The losses themselves
//! (`mul#log` = `form: mul_log` with a target, `add#linear` = `form: add` with a target,
//! reference `GradientArchSearchConfig.add_regularization_loss`) are the shared
//! `nas_core::cost_term::CostTerm::combine`. Plain numbers only.
use nas_core::cost_term::CostTerm;
use nas_core::{Result, SpaceSpec};

use crate::estimator::restricted_softmax;

/// The per-option cost table of one metric and the fixed part, read from a space spec.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    /// `[decision][option]` costs.
    pub options: Vec<Vec<f64>>,
    /// Cost of everything that is not searched.
    pub fixed: f64,
}

impl CostTable {
    /// The per-option costs of `term` in `spec` (its fixed part included when
    /// `term.fixed`, see `CostTerm::option_costs`); an error that says how to load a latency
    /// table when the metric is `latency` and the space has none.
    pub fn from_term(term: &CostTerm, spec: &SpaceSpec) -> Result<Self> {
        Ok(CostTable {
            options: term.option_costs(spec)?,
            fixed: 0.0,
        })
    }

    /// The smallest expected value any probabilities can give (fixed part plus the
    /// cheapest option of every decision).
    pub fn min_total(&self) -> f64 {
        self.fixed
            + self
                .options
                .iter()
                .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
                .filter(|v| v.is_finite())
                .sum::<f64>()
    }

    /// The expected value under uniform probabilities.
    pub fn uniform_total(&self) -> f64 {
        self.fixed
            + self
                .options
                .iter()
                .map(|r| r.iter().sum::<f64>() / r.len().max(1) as f64)
                .sum::<f64>()
    }

    /// The expected value `E = fixed + sum_d sum_{j in idx_d} q_dj * cost_dj`, with
    /// `q_d = softmax(alpha_d)` restricted to the options `idx_d` (all options: the paper's
    /// eq. 5 under `p`; the two sampled ones: the reference's `current_prob_over_ops` in the
    /// `two` mode), and its exact gradient `dE/dalpha`
    /// (`q_i * (cost_i - sum_j q_j cost_j)` on the involved options, zero elsewhere).
    pub fn expected(&self, alphas: &[Vec<f64>], idx: &[Vec<usize>]) -> (f64, Vec<Vec<f64>>) {
        let mut total = self.fixed;
        let mut grad = Vec::with_capacity(alphas.len());
        for ((a, set), costs) in alphas.iter().zip(idx).zip(&self.options) {
            let q = restricted_softmax(a, set);
            let mean: f64 = set.iter().zip(&q).map(|(&j, qj)| qj * costs[j]).sum();
            total += mean;
            let mut g = vec![0.0; a.len()];
            for (&i, qi) in set.iter().zip(&q) {
                g[i] = qi * (costs[i] - mean);
            }
            grad.push(g);
        }
        (total, grad)
    }
}
