//! A resource constraint on architectures: ranges of FLOPs (multiply-accumulates),
//! parameters and, when the space has a latency table, latency.
use nas_core::{Cost, NasError, Result};
use serde::{Deserialize, Serialize};

/// Bounds an architecture's cost must respect; every bound is optional (none: no
/// constraint). SPOS (Guo et al. 2020, section 4) searches under `max_flops` (its
/// reference `search.py`: 330e6) and trains with optional rejection outside a range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Constraint {
    /// Lowest FLOPs (multiply-accumulates per example).
    pub min_flops: Option<f64>,
    /// Highest FLOPs.
    pub max_flops: Option<f64>,
    /// Fewest parameters.
    pub min_params: Option<f64>,
    /// Most parameters.
    pub max_params: Option<f64>,
    /// Highest latency in milliseconds (needs a latency table in the space).
    pub max_latency_ms: Option<f64>,
}

impl Constraint {
    /// True when no bound is set.
    pub fn is_empty(&self) -> bool {
        *self == Constraint::default()
    }

    /// Checks the bounds themselves (`component` and `path` name them in errors).
    pub fn check(&self, component: &str, path: &str) -> Result<()> {
        let bad = |m: &str| NasError::InvalidParams {
            component: component.into(),
            path: path.into(),
            message: m.into(),
        };
        let all = [
            self.min_flops,
            self.max_flops,
            self.min_params,
            self.max_params,
            self.max_latency_ms,
        ];
        if all.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(bad("bounds must be finite and non-negative"));
        }
        if matches!((self.min_flops, self.max_flops), (Some(a), Some(b)) if a > b)
            || matches!((self.min_params, self.max_params), (Some(a), Some(b)) if a > b)
        {
            return Err(bad("a minimum is above its maximum"));
        }
        Ok(())
    }

    /// Whether `cost` satisfies every bound; a latency bound without a measured latency is
    /// an error.
    pub fn admits(&self, cost: &Cost) -> Result<bool> {
        let within = |v: f64, lo: Option<f64>, hi: Option<f64>| {
            lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v <= h)
        };
        let lat_ok = match self.max_latency_ms {
            None => true,
            Some(h) => {
                let l = cost.latency_ms.ok_or_else(|| {
                    NasError::Strategy(
                        "a latency constraint needs a latency table in the space (`latency_table`)"
                            .into(),
                    )
                })?;
                l <= h
            }
        };
        Ok(lat_ok
            && within(cost.flops, self.min_flops, self.max_flops)
            && within(cost.params, self.min_params, self.max_params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(flops: f64, params: f64, lat: Option<f64>) -> Cost {
        Cost {
            params,
            flops,
            latency_ms: lat,
        }
    }

    #[test]
    fn bounds_are_inclusive_and_optional() {
        let c = Constraint {
            max_flops: Some(330e6),
            min_params: Some(1e6),
            ..Default::default()
        };
        assert!(c.admits(&cost(330e6, 1e6, None)).unwrap());
        assert!(!c.admits(&cost(330.1e6, 2e6, None)).unwrap());
        assert!(!c.admits(&cost(300e6, 0.9e6, None)).unwrap());
        assert!(Constraint::default()
            .admits(&cost(1e12, 0.0, None))
            .unwrap());
        let l = Constraint {
            max_latency_ms: Some(2.0),
            ..Default::default()
        };
        assert!(l.admits(&cost(0.0, 0.0, Some(1.5))).unwrap());
        assert!(!l.admits(&cost(0.0, 0.0, Some(2.5))).unwrap());
        assert!(l.admits(&cost(0.0, 0.0, None)).is_err());
    }

    #[test]
    fn inverted_or_negative_bounds_are_rejected() {
        let c = Constraint {
            min_flops: Some(2.0),
            max_flops: Some(1.0),
            ..Default::default()
        };
        assert!(c.check("strategy spos", "constraint").is_err());
        let n = Constraint {
            max_params: Some(-1.0),
            ..Default::default()
        };
        assert!(n.check("strategy spos", "constraint").is_err());
    }
}
