//! The architecture loss and its exact gradient with respect to the logits.
//!
//! The trainer reports the validation cross-entropy `CE` and `dCE/dw` for the weights `w` it
//! was driven with (one entry, or one per example). With `y` the Gumbel-softmax sample that
//! produced `w` and `p = softmax(alpha)`:
//!
//! `dCE/dalpha = sum_samples softmax_backward(y, dCE/dw) / tau` (straight-through for a hard
//! sample), and with the cost term `L = combine(CE, C(p))`:
//! `dL/dalpha = dL/dCE * dCE/dalpha + dL/dC * softmax_backward(p, c)`: the product rule for
//! FBNet's `CE * a * ln(C)^b`, the sum rule for the additive form.
use nas_core::cost_term::{cost_logit_gradient, expected_cost, CostTerm};
use nas_core::math::softmax;
use nas_core::{MixingWeights, Result};

use crate::sample::{backward, Sample};

/// The architecture loss of one step and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchLoss {
    /// The trainer's cross-entropy.
    pub ce: f64,
    /// The expected cost `C(p)`, when a cost term is set.
    pub cost: Option<f64>,
    /// The total loss (`CE` without a cost term).
    pub loss: f64,
    /// `dL/dalpha`, `[decision][option]`.
    pub grad: Vec<Vec<f64>>,
}

/// Computes [`ArchLoss`] from the samples sent (`samples[i]` drove entry `i` of `grads`),
/// the trainer's `ce` and `grads`, the temperature, and the optional cost term with its
/// per-option costs.
pub fn arch_loss(
    alphas: &[Vec<f64>],
    samples: &[Vec<Sample>],
    grads: &[MixingWeights],
    ce: f64,
    tau: f64,
    cost: Option<(&CostTerm, &[Vec<f64>])>,
) -> Result<ArchLoss> {
    let mut grad: Vec<Vec<f64>> = alphas.iter().map(|a| vec![0.0; a.len()]).collect();
    for (s, g) in samples.iter().zip(grads) {
        for (acc, d) in grad.iter_mut().zip(backward(s, &g.0, tau)) {
            for (a, v) in acc.iter_mut().zip(d) {
                *a += v;
            }
        }
    }
    let Some((term, costs)) = cost else {
        return Ok(ArchLoss {
            ce,
            cost: None,
            loss: ce,
            grad,
        });
    };
    let p: Vec<Vec<f64>> = alphas.iter().map(|a| softmax(a)).collect();
    let c = expected_cost(&p, costs);
    let comb = term.combine(ce, c)?;
    let gc = cost_logit_gradient(&p, costs, comb.d_cost);
    for (acc, d) in grad.iter_mut().zip(gc) {
        for (a, v) in acc.iter_mut().zip(d) {
            *a = comb.d_ce * *a + v;
        }
    }
    Ok(ArchLoss {
        ce,
        cost: Some(c),
        loss: comb.loss,
        grad,
    })
}
