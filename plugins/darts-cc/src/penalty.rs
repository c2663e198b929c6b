//! The complexity penalty of DARTS-CC (reference `hyperloss`):
//!
//! `penalty = lambda * sum_{cells} sum_{edges} sum_{ops} softmax(alpha(t))_op * |params(op)|`
//!
//! where `|params(op)|` counts the parameters of that op in that cell of the search network.
//! Cells of one type share their alphas, so the sum over cells is a sum over decisions of
//! `softmax(alpha_d) . c_d`, with `c_dk` the parameters of option `k` summed over every cell
//! of the decision's type: exactly what a space reports as `Decision::options[k].cost.params`
//! (the DARTS space counts the search network's affine-free ops in each cell; its tests
//! check those costs against the supernet's parameters). The softmax here has no
//! temperature and no Gumbel noise, as in the reference.
//!
//! The arithmetic is the shared cost term's (`nas_core::cost_term`, used by `darts`, `gdas`,
//! `snas` and `fbnet` too): this module only maps DARTS-CC's `cost` key onto it, so the
//! penalty here and the additive cost term there are one computation.
use nas_core::cost_term::{self, cost_logit_gradient, CostMetric};
use nas_core::math::softmax;
use nas_core::SpaceSpec;

/// Which per-option cost the penalty weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKind {
    /// Trainable parameters (the DARTS-CC paper).
    Params,
    /// Multiply-accumulates per example.
    Flops,
}

/// `c[d][k]`: the cost of option `k` of decision `d`.
pub fn option_costs(spec: &SpaceSpec, kind: CostKind) -> Vec<Vec<f64>> {
    let metric = match kind {
        CostKind::Params => CostMetric::Params,
        CostKind::Flops => CostMetric::Flops,
    };
    // Params and FLOPs are always present: only a latency metric can fail.
    cost_term::option_costs(spec, metric).unwrap_or_default()
}

/// Expected cost `sum_d softmax(logits_d) . c_d` and its gradient with respect to the
/// logits (`softmax_backward(p_d, c_d)` per decision). Multiply both by `lambda` for the
/// penalty.
pub fn expected_cost(logits: &[Vec<f64>], costs: &[Vec<f64>]) -> (f64, Vec<Vec<f64>>) {
    let p: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l)).collect();
    (
        cost_term::expected_cost(&p, costs),
        cost_logit_gradient(&p, costs, 1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_cost_matches_hand_values_and_central_differences() {
        // Two decisions; equal logits give the mean cost.
        let costs = vec![vec![0.0, 100.0, 300.0], vec![0.0, 50.0]];
        let (c, _) = expected_cost(&[vec![0.0; 3], vec![0.0; 2]], &costs);
        assert!((c - (400.0 / 3.0 + 25.0)).abs() < 1e-9);
        // Gradient against central differences.
        let logits = vec![vec![0.3, -0.2, 1.0], vec![-1.0, 0.5]];
        let (_, g) = expected_cost(&logits, &costs);
        let h = 1e-6;
        for d in 0..2 {
            for k in 0..logits[d].len() {
                let (mut p, mut m) = (logits.clone(), logits.clone());
                p[d][k] += h;
                m[d][k] -= h;
                let fd = (expected_cost(&p, &costs).0 - expected_cost(&m, &costs).0) / (2.0 * h);
                assert!(
                    (fd - g[d][k]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{fd} vs {}",
                    g[d][k]
                );
            }
        }
        // Raising a costly option's logit raises the cost; a free option's lowers it.
        assert!(g[0][2] > 0.0 && g[0][0] < 0.0);
    }
}
