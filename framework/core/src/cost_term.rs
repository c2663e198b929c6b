//! The hardware / size cost term shared by every differentiable strategy (`darts`, `gdas`,
//! `snas`, `fbnet`; `darts_cc`'s penalty uses [`expected_cost`]).
//!
//! One YAML block, `strategy.params.cost`, with the same shape for every strategy:
//!
//! ```yaml
//! cost: {metric: latency, form: mul_log, a: 0.2, b: 0.6}      # FBNet
//! cost: {metric: flops, form: add, weight: 0.1, target: 2.0e5} # additive, relative to a target
//! cost: {metric: latency, form: mul_log, a: 0.2, b: 0.3, fixed: true, scale: 1000} # ProxylessNAS
//! ```
//!
//! `scale` multiplies `C` and the target before they are combined (units), `fixed` adds the
//! space's unsearched cost to `C` (ProxylessNAS's whole-network expected latency).
//!
//! The expected cost under the current probabilities `p = softmax(alpha)` is
//! `C = sum_d sum_k p_dk * c_dk` (the searched decisions only; the fixed stem/head cost is a
//! constant and left out, as FBNet's `LAT(a) = sum_l LAT(b_l)` sums the searched layers).
//! With `CE` the validation cross-entropy the trainer reports, the loss is:
//!
//! * `add`: `CE + weight * C`, or `CE + weight * (C / target - 1)` when a target is given
//!   (the target makes `weight` unit-free: one unit of weight per 100 % over the target).
//! * `mul_log`: `CE * a * ln(C)^b` (FBNet, Wu et al. 2019, eq. 6, paper `a = 0.2`,
//!   `b = 0.6`), or `CE * a * (ln C / ln target)^b` with a target (ProxylessNAS's
//!   `mul#log` form, Cai et al. 2019, normalised by a reference latency). `C` must exceed 1
//!   (and the target too) so that the logarithm is positive.
//!
//! The plain math lives here: [`CostTerm::combine`] gives the value and the partial
//! derivatives with respect to `CE` and `C`; `dC/dp_dk = c_dk`; the strategy applies its own
//! chain rule from `p` to its logits. Nothing here knows about tensors.
use serde::{Deserialize, Serialize};

use crate::params::ensure;
use crate::{NasError, Result, SpaceSpec};

/// Which per-option cost the term weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostMetric {
    /// Measured latency in ms (`OptionSpec.cost.latency_ms`; needs a loaded latency table).
    Latency,
    /// Multiply-accumulates per example.
    Flops,
    /// Trainable parameters.
    Params,
}

/// How the expected cost enters the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostForm {
    /// `CE + weight * C` (or `CE + weight * (C / target - 1)`).
    Add,
    /// `CE * a * ln(C)^b` (or `CE * a * (ln C / ln target)^b`), FBNet's form.
    MulLog,
}

/// `strategy.params.cost`: the cost block every differentiable strategy accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostTerm {
    /// `latency` | `flops` | `params`.
    pub metric: CostMetric,
    /// `add` | `mul_log`.
    pub form: CostForm,
    /// Weight of the additive form (ignored by `mul_log`, whose knobs are `a` and `b`).
    pub weight: f64,
    /// Optional target (same unit as the metric).
    pub target: Option<f64>,
    /// `mul_log`: the factor `a` (FBNet paper: 0.2).
    pub a: f64,
    /// `mul_log`: the exponent `b` (FBNet paper: 0.6).
    pub b: f64,
    /// Unit factor: `C` and the target are multiplied by it before they are combined
    /// (e.g. 1000 to read milliseconds as microseconds, so that `mul_log`'s logarithms are
    /// positive). 1 by default.
    pub scale: f64,
    /// Whether `C` includes the space's fixed (unsearched) cost, as ProxylessNAS's expected
    /// latency of the whole network does (reference `expected_latency`). False by default
    /// (FBNet's `LAT(a)` sums the searched layers only).
    pub fixed: bool,
}

impl Default for CostTerm {
    /// Latency, FBNet's multiplicative form with the paper's `a = 0.2`, `b = 0.6`.
    fn default() -> Self {
        CostTerm {
            metric: CostMetric::Latency,
            form: CostForm::MulLog,
            weight: 0.0,
            target: None,
            a: 0.2,
            b: 0.6,
            scale: 1.0,
            fixed: false,
        }
    }
}

/// The loss and its partial derivatives, from [`CostTerm::combine`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combined {
    /// The total loss.
    pub loss: f64,
    /// `d loss / d CE`.
    pub d_ce: f64,
    /// `d loss / d C`.
    pub d_cost: f64,
}

impl CostTerm {
    /// Checks the numbers (`component` names the strategy, for the error's key path
    /// `cost.*`).
    pub fn check(&self, component: &str) -> Result<()> {
        ensure(
            self.weight.is_finite() && self.weight >= 0.0,
            component,
            "cost.weight",
            format!("must be a finite number >= 0, got {}", self.weight),
        )?;
        ensure(
            self.a.is_finite() && self.a > 0.0,
            component,
            "cost.a",
            format!("must be > 0, got {}", self.a),
        )?;
        ensure(
            self.b.is_finite() && self.b >= 0.0,
            component,
            "cost.b",
            format!("must be >= 0, got {}", self.b),
        )?;
        ensure(
            self.scale.is_finite() && self.scale > 0.0,
            component,
            "cost.scale",
            format!("must be a finite number > 0, got {}", self.scale),
        )?;
        if let Some(t) = self.target {
            let t = t * self.scale;
            let min = if self.form == CostForm::MulLog {
                1.0
            } else {
                0.0
            };
            ensure(
                t.is_finite() && t > min,
                component,
                "cost.target",
                format!("must be a number > {min} for form {:?}, got {t}", self.form),
            )?;
        }
        Ok(())
    }

    /// `c[d][k]` of `spec` for this term's metric. `latency` without a loaded latency
    /// table is an error that says how to get one (or to switch to `flops`).
    ///
    /// With [`CostTerm::fixed`], the space's fixed cost is added to every option of the
    /// first decision: under any probabilities that sum to one this adds it once to the
    /// expected cost `C` and leaves `dC/dalpha` unchanged, so every strategy's expected-cost
    /// code includes it without knowing about it.
    pub fn option_costs(&self, spec: &SpaceSpec) -> Result<Vec<Vec<f64>>> {
        let mut costs = option_costs(spec, self.metric)?;
        if self.fixed {
            let f = &spec.fixed_cost;
            let fixed = match self.metric {
                CostMetric::Params => f.params,
                CostMetric::Flops => f.flops,
                // A table that covers only the options counts the fixed part as zero.
                CostMetric::Latency => f.latency_ms.unwrap_or(0.0),
            };
            if let Some(first) = costs.first_mut() {
                first.iter_mut().for_each(|c| *c += fixed);
            }
        }
        Ok(costs)
    }

    /// Combines the cross-entropy `ce` and the expected cost `cost` into the loss (after
    /// multiplying `cost` and the target by [`CostTerm::scale`]); `d_cost` is with respect to
    /// the unscaled `cost`.
    pub fn combine(&self, ce: f64, cost: f64) -> Result<Combined> {
        let mut c =
            self.combine_scaled(ce, cost * self.scale, self.target.map(|t| t * self.scale))?;
        c.d_cost *= self.scale;
        Ok(c)
    }

    fn combine_scaled(&self, ce: f64, cost: f64, target: Option<f64>) -> Result<Combined> {
        match self.form {
            CostForm::Add => {
                let (scale, offset) = match target {
                    Some(t) => (self.weight / t, -self.weight),
                    None => (self.weight, 0.0),
                };
                Ok(Combined {
                    loss: ce + scale * cost + offset,
                    d_ce: 1.0,
                    d_cost: scale,
                })
            }
            CostForm::MulLog => {
                if cost.is_nan() || cost <= 1.0 {
                    return Err(NasError::Strategy(format!(
                        "the multiplicative cost form needs an expected cost above 1 (ln C > 0), \
                         got C = {cost} (after cost.scale); use `cost.form: add`, a larger `cost.scale` or a metric in larger units"
                    )));
                }
                let norm = target.map_or(1.0, f64::ln);
                let l = cost.ln() / norm;
                let f = self.a * l.powf(self.b);
                // d f / dC = a * b * l^(b-1) / (norm * C)
                let df = if self.b == 0.0 {
                    0.0
                } else {
                    self.a * self.b * l.powf(self.b - 1.0) / (norm * cost)
                };
                Ok(Combined {
                    loss: ce * f,
                    d_ce: f,
                    d_cost: ce * df,
                })
            }
        }
    }
}

/// `c[d][k]`: the cost of option `k` of decision `d` under `metric`.
pub fn option_costs(spec: &SpaceSpec, metric: CostMetric) -> Result<Vec<Vec<f64>>> {
    spec.decisions
        .iter()
        .map(|d| {
            d.options
                .iter()
                .map(|o| match metric {
                    CostMetric::Params => Ok(o.cost.params),
                    CostMetric::Flops => Ok(o.cost.flops),
                    CostMetric::Latency => o.cost.latency_ms.ok_or_else(|| {
                        NasError::Strategy(format!(
                            "cost.metric is `latency` but option `{}` of decision `{}` in space \
                             `{}` has no latency: load a latency table (space.params.latency_table, \
                             measured with `nas latency`) or set strategy.params.cost.metric: flops",
                            o.name, d.key, spec.space
                        ))
                    }),
                })
                .collect()
        })
        .collect()
}

/// Expected cost `sum_d p_d . c_d` of probabilities `p[d][k]`; its gradient with respect to
/// `p` is `c` itself.
pub fn expected_cost(probs: &[Vec<f64>], costs: &[Vec<f64>]) -> f64 {
    probs
        .iter()
        .zip(costs)
        .map(|(p, c)| p.iter().zip(c).map(|(p, c)| p * c).sum::<f64>())
        .sum()
}

/// `dL/dalpha` of the cost part for softmax probabilities: `d_cost * softmax_backward(p, c)`
/// per decision.
pub fn cost_logit_gradient(probs: &[Vec<f64>], costs: &[Vec<f64>], d_cost: f64) -> Vec<Vec<f64>> {
    probs
        .iter()
        .zip(costs)
        .map(|(p, c)| {
            crate::math::softmax_backward(p, c)
                .into_iter()
                .map(|g| d_cost * g)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::softmax;

    /// L(alpha) = combine(ce(p), C(p)) with a made-up linear CE(p) = sum g.p; the analytic
    /// gradient d_ce * softmax_backward(p, g) + cost_logit_gradient must match central
    /// differences of L, for both forms, with and without a target.
    #[test]
    fn combined_gradient_matches_central_differences() {
        let costs = vec![vec![3.0, 10.0, 25.0], vec![2.0, 8.0]];
        let g = vec![vec![0.5, -0.2, 0.1], vec![0.3, 1.1]];
        let alpha = vec![vec![0.2, -0.4, 0.9], vec![-0.3, 0.6]];
        let terms = [
            CostTerm {
                form: CostForm::Add,
                weight: 0.3,
                ..CostTerm::default()
            },
            CostTerm {
                form: CostForm::Add,
                weight: 0.3,
                target: Some(12.0),
                ..CostTerm::default()
            },
            CostTerm::default(),
            CostTerm {
                target: Some(15.0),
                ..CostTerm::default()
            },
        ];
        let loss = |t: &CostTerm, a: &[Vec<f64>]| -> f64 {
            let p: Vec<Vec<f64>> = a.iter().map(|v| softmax(v)).collect();
            let ce = 2.0 + expected_cost(&p, &g);
            t.combine(ce, expected_cost(&p, &costs)).unwrap().loss
        };
        for t in &terms {
            t.check("test").unwrap();
            let p: Vec<Vec<f64>> = alpha.iter().map(|v| softmax(v)).collect();
            let ce = 2.0 + expected_cost(&p, &g);
            let c = t.combine(ce, expected_cost(&p, &costs)).unwrap();
            let gc = cost_logit_gradient(&p, &costs, c.d_cost);
            for d in 0..alpha.len() {
                let ge = crate::math::softmax_backward(&p[d], &g[d]);
                for k in 0..alpha[d].len() {
                    let an = c.d_ce * ge[k] + gc[d][k];
                    let h = 1e-6;
                    let (mut ap, mut am) = (alpha.clone(), alpha.clone());
                    ap[d][k] += h;
                    am[d][k] -= h;
                    let fd = (loss(t, &ap) - loss(t, &am)) / (2.0 * h);
                    assert!((fd - an).abs() < 1e-7, "{t:?} d{d} k{k}: fd {fd} vs {an}");
                }
            }
        }
    }

    #[test]
    fn hand_values_of_both_forms() {
        // FBNet: CE 2, C = e^2: 2 * 0.2 * 2^0.6.
        let c = CostTerm::default()
            .combine(2.0, std::f64::consts::E.powi(2))
            .unwrap();
        assert!((c.loss - 0.4 * 2f64.powf(0.6)).abs() < 1e-12);
        // Additive with a target: 1 + 0.5 * (30/20 - 1) = 1.25.
        let t = CostTerm {
            form: CostForm::Add,
            weight: 0.5,
            target: Some(20.0),
            ..CostTerm::default()
        };
        assert!((t.combine(1.0, 30.0).unwrap().loss - 1.25).abs() < 1e-12);
        // ln C <= 0 is an error, not a NaN.
        assert!(CostTerm::default().combine(1.0, 0.5).is_err());
        assert!(CostTerm {
            a: 0.0,
            ..CostTerm::default()
        }
        .check("s")
        .is_err());
    }

    #[test]
    fn scale_and_fixed_change_units_and_add_the_fixed_part_once() {
        // Scale: the loss of (C, target) at scale s is the unscaled loss of (s C, s target),
        // and d_cost follows the chain rule (central difference).
        let t = CostTerm {
            form: CostForm::MulLog,
            target: Some(3.0),
            b: 0.3,
            scale: 1000.0,
            ..CostTerm::default()
        };
        let scaled = CostTerm {
            target: Some(3000.0),
            scale: 1.0,
            ..t.clone()
        };
        let c = t.combine(2.0, 1.7).unwrap();
        let d = scaled.combine(2.0, 1700.0).unwrap();
        assert!((c.loss - d.loss).abs() < 1e-12);
        let h = 1e-6;
        let fd = (t.combine(2.0, 1.7 + h).unwrap().loss - t.combine(2.0, 1.7 - h).unwrap().loss)
            / (2.0 * h);
        assert!(
            (c.d_cost - fd).abs() < 1e-6 * (1.0 + fd.abs()),
            "{} vs {fd}",
            c.d_cost
        );
        // Below 1 without the scale, mul_log refuses.
        assert!(CostTerm {
            scale: 1.0,
            target: None,
            ..t.clone()
        }
        .combine(2.0, 0.5)
        .is_err());
        assert!(CostTerm {
            scale: 0.0,
            ..t.clone()
        }
        .check("s")
        .is_err());
        // Fixed: the expected cost grows by exactly the fixed part under any probabilities.
        let spec = spec_with_fixed(40.0);
        let plain = CostTerm {
            metric: CostMetric::Params,
            ..CostTerm::default()
        };
        let with = CostTerm {
            fixed: true,
            ..plain.clone()
        };
        let (a, b) = (
            plain.option_costs(&spec).unwrap(),
            with.option_costs(&spec).unwrap(),
        );
        for p in [
            vec![vec![0.2, 0.8], vec![0.5, 0.25, 0.25]],
            vec![vec![1.0, 0.0], vec![0.0, 0.0, 1.0]],
        ] {
            let diff = expected_cost(&p, &b) - expected_cost(&p, &a);
            assert!((diff - 40.0).abs() < 1e-9, "{diff}");
        }
    }

    fn spec_with_fixed(params: f64) -> SpaceSpec {
        let opt = |name: &str, p: f64| crate::OptionSpec {
            name: name.into(),
            cost: crate::Cost {
                params: p,
                flops: 10.0 * p,
                latency_ms: None,
            },
        };
        SpaceSpec {
            space: "toy".into(),
            decisions: vec![
                crate::Decision {
                    key: "a".into(),
                    group: "g".into(),
                    node: None,
                    options: vec![opt("x", 1.0), opt("y", 2.0)],
                },
                crate::Decision {
                    key: "b".into(),
                    group: "g".into(),
                    node: None,
                    options: vec![opt("x", 3.0), opt("y", 4.0), opt("z", 5.0)],
                },
            ],
            fixed_cost: crate::Cost {
                params,
                flops: 0.0,
                latency_ms: None,
            },
        }
    }
}
