//! The hardware-aware losses of ProxylessNAS (Cai et al. 2019, section 3.3; reference code
//! mit-han-lab/proxylessnas `search/nas_manager.py`, `GradientArchSearchConfig.
//! add_regularization_loss`, and `SuperProxylessNASNets.expected_latency`), with their exact
//! gradients. Plain numbers only: the trainer returns the cross-entropy and `dCE/dgates`,
//! the rest of the chain rule is here.
use nas_core::{NasError, Result, SpaceSpec};

use crate::estimator::restricted_softmax;

/// Which figure of the space's cost tables the loss uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `Cost.latency_ms` (a latency table must be loaded into the space).
    Latency,
    /// `Cost.flops` (multiply-accumulates per example).
    Flops,
    /// `Cost.params`.
    Params,
}

impl Metric {
    /// Parses `latency`, `flops` or `params`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "latency" => Some(Metric::Latency),
            "flops" => Some(Metric::Flops),
            "params" => Some(Metric::Params),
            _ => None,
        }
    }
}

/// The per-option cost table of one metric and the fixed part, read from a space spec.
#[derive(Debug, Clone, PartialEq)]
pub struct CostTable {
    /// `[decision][option]` costs.
    pub options: Vec<Vec<f64>>,
    /// Cost of everything that is not searched.
    pub fixed: f64,
}

impl CostTable {
    /// Reads `metric` from `spec`; an error when a latency is missing (no table loaded).
    pub fn from_spec(spec: &SpaceSpec, metric: Metric) -> Result<Self> {
        let pick = |c: &nas_core::Cost| -> Option<f64> {
            match metric {
                Metric::Latency => c.latency_ms,
                Metric::Flops => Some(c.flops),
                Metric::Params => Some(c.params),
            }
        };
        let missing = || {
            NasError::Strategy(format!(
                "proxylessnas: the latency loss needs per-option latencies, and space `{}` has \
                 none; load a latency table (`space.params.latency_table`, written by `nas \
                 latency`) or set `strategy.params.cost.metric` to flops or params",
                spec.space
            ))
        };
        let mut options = Vec::with_capacity(spec.decisions.len());
        for d in &spec.decisions {
            options.push(
                d.options
                    .iter()
                    .map(|o| pick(&o.cost).ok_or_else(missing))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let fixed = match metric {
            // A table that covers only the options counts the fixed part as zero.
            Metric::Latency => spec.fixed_cost.latency_ms.unwrap_or(0.0),
            _ => pick(&spec.fixed_cost).unwrap_or(0.0),
        };
        Ok(CostTable { options, fixed })
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

/// The loss that combines the cross-entropy with the expected cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegLoss {
    /// The cross-entropy alone.
    None,
    /// `mul#log`: `alpha * CE * (log(E) / log(REF))^beta`.
    MulLog {
        /// Weight `alpha` (reference `imagenet_arch_search.py`: 0.2).
        alpha: f64,
        /// Exponent `beta` (reference `imagenet_arch_search.py`: 0.3).
        beta: f64,
    },
    /// `add#linear`: `CE + lambda * (E - REF) / REF`.
    AddLinear {
        /// Weight `lambda` (reference `imagenet_arch_search.py`: 0.1).
        lambda: f64,
    },
}

/// A loss value and its partial derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParts {
    /// The loss.
    pub loss: f64,
    /// `dLoss/dCE`: the factor on the trainer's `dCE/dgates`.
    pub d_ce: f64,
    /// `dLoss/dE`: the factor on `dE/dalpha`.
    pub d_value: f64,
}

impl RegLoss {
    /// The loss at cross-entropy `ce` and expected cost `e` with reference `reference`
    /// (both in the same unit), and its partial derivatives.
    pub fn eval(&self, ce: f64, e: f64, reference: f64) -> LossParts {
        match *self {
            RegLoss::None => LossParts {
                loss: ce,
                d_ce: 1.0,
                d_value: 0.0,
            },
            RegLoss::MulLog { alpha, beta } => {
                let lr = reference.ln();
                let ratio = e.ln() / lr;
                let reg = ratio.powf(beta);
                LossParts {
                    loss: alpha * ce * reg,
                    d_ce: alpha * reg,
                    d_value: alpha * ce * beta * ratio.powf(beta - 1.0) / (e * lr),
                }
            }
            RegLoss::AddLinear { lambda } => LossParts {
                loss: ce + lambda * (e - reference) / reference,
                d_ce: 1.0,
                d_value: lambda / reference,
            },
        }
    }
}
