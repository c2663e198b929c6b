//! The complexity parameter `lambda` and its normalised form `t`.
use nas_core::{NasError, Result};
use rand::Rng;

/// The range `[10^L_min, 10^L_max]` of `lambda`, and the map to `t` in `[0, 1]`:
/// `t = (log10 lambda - L_min) / (L_max - L_min)` (DARTS-CC, `norm_lam` of the reference).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LambdaRange {
    /// `L_min = log10` of the smallest `lambda`.
    pub log_min: f64,
    /// `L_max = log10` of the largest `lambda`.
    pub log_max: f64,
}

impl LambdaRange {
    /// A range; `L_max > L_min`, both finite.
    pub fn new(log_min: f64, log_max: f64) -> Result<Self> {
        if !(log_min.is_finite() && log_max.is_finite() && log_max > log_min) {
            return Err(NasError::InvalidParams {
                component: "strategy darts_cc".into(),
                path: "log_lambda_max".into(),
                message: format!(
                    "needs finite log_lambda_min < log_lambda_max, got [{log_min}, {log_max}]"
                ),
            });
        }
        Ok(LambdaRange { log_min, log_max })
    }

    /// `t` of `lambda` (not clamped).
    pub fn t_of(&self, lambda: f64) -> f64 {
        (lambda.log10() - self.log_min) / (self.log_max - self.log_min)
    }

    /// `lambda` of `t`: `10^(L_min + t (L_max - L_min))`.
    pub fn lambda_of(&self, t: f64) -> f64 {
        10f64.powf(self.log_min + t * (self.log_max - self.log_min))
    }

    /// One `lambda` drawn log-uniformly (`log10 lambda ~ U(L_min, L_max)`, as the
    /// reference's `10 ** np.random.uniform(L_min, L_max)`), with its `t`.
    pub fn sample(&self, rng: &mut impl Rng) -> (f64, f64) {
        let t: f64 = rng.random::<f64>();
        (self.lambda_of(t), t)
    }

    /// The reference's number of anchors: `int(L_max - L_min) + 1` (one per decade), at
    /// least 2.
    pub fn reference_anchors(&self) -> usize {
        ((self.log_max - self.log_min).floor() as usize + 1).max(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_and_lambda_are_inverse_and_hit_the_ends() {
        let r = LambdaRange::new(-10.0, -6.0).unwrap();
        assert!((r.t_of(1e-10) - 0.0).abs() < 1e-12);
        assert!((r.t_of(1e-6) - 1.0).abs() < 1e-12);
        assert!((r.t_of(1e-8) - 0.5).abs() < 1e-12);
        assert!((r.lambda_of(0.25) / 1e-9 - 1.0).abs() < 1e-12);
        assert_eq!(r.reference_anchors(), 5);
        assert_eq!(LambdaRange::new(-8.0, -4.0).unwrap().reference_anchors(), 5);
        assert_eq!(LambdaRange::new(-1.0, -0.5).unwrap().reference_anchors(), 2);
        assert!(LambdaRange::new(-6.0, -6.0).is_err());
        assert!(LambdaRange::new(f64::NAN, -6.0).is_err());
    }

    #[test]
    fn samples_are_log_uniform() {
        let r = LambdaRange::new(-10.0, -6.0).unwrap();
        let mut rng = nas_core::component_rng(1, "test");
        let n = 20000;
        let mut below = 0;
        for _ in 0..n {
            let (l, t) = r.sample(&mut rng);
            assert!((1e-10..=1e-6).contains(&l));
            assert!((r.t_of(l) - t).abs() < 1e-9);
            if l < 1e-9 {
                below += 1;
            }
        }
        // P(lambda < 1e-9) = 1/4 under a log-uniform law (it would be ~2.5e-4 uniform).
        let p = below as f64 / n as f64;
        assert!((p - 0.25).abs() < 0.02, "{p}");
    }
}
