//! Summary statistics over the seeds of a group, and best-so-far curves averaged over runs.

/// Mean, standard deviation, minimum and maximum of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor `n - 1`, Bessel's correction); `NaN` when `n < 2`.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of the finite values of `xs`; `None` when there is none.
    pub fn of(xs: &[f64]) -> Option<Stats> {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n < 2 {
            f64::NAN
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Some(Stats {
            n,
            mean,
            std,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One point of a curve averaged over runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandPoint {
    /// Position on the x axis.
    pub x: f64,
    /// Mean over the runs that have reached `x`.
    pub mean: f64,
    /// Sample standard deviation over them (0 when only one run has reached `x`).
    pub std: f64,
    /// How many runs have reached `x`.
    pub n: usize,
}

/// Averages step curves: each run is a list of `(x, y)` points, read as a step function
/// (`y` holds from its `x` until the run's next point, and after its last point for good:
/// a best-so-far value does not change once a search stops). At every `x` at which some run
/// has a point, the mean and standard deviation over the runs that have started (have a
/// point at or before `x`) are returned, in increasing `x`.
pub fn band(runs: &[Vec<(f64, f64)>]) -> Vec<BandPoint> {
    let mut runs: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let mut r: Vec<(f64, f64)> = r
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            r
        })
        .collect();
    runs.retain(|r| !r.is_empty());
    let mut xs: Vec<f64> = runs.iter().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .map(|x| {
            let ys: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().take_while(|p| p.0 <= x).last().map(|p| p.1))
                .collect();
            let s = Stats::of(&ys);
            BandPoint {
                x,
                mean: s.map_or(f64::NAN, |s| s.mean),
                std: s.map_or(0.0, |s| if s.std.is_finite() { s.std } else { 0.0 }),
                n: ys.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        // mean 5, squared deviations 9+1+1+9 = 20, sample variance 20/3.
        let s = Stats::of(&[2.0, 4.0, 6.0, 8.0, f64::NAN]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - (20.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (2.0, 8.0));
        let one = Stats::of(&[3.0]).unwrap();
        assert!(one.std.is_nan());
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn band_holds_values_between_and_after_points() {
        // Run a: 1 -> 10, 3 -> 20. Run b starts at 2 with 30 and ends there.
        let b = band(&[vec![(1.0, 10.0), (3.0, 20.0)], vec![(2.0, 30.0)]]);
        let xs: Vec<f64> = b.iter().map(|p| p.x).collect();
        assert_eq!(xs, vec![1.0, 2.0, 3.0]);
        // x=1: only a (10). x=2: a holds 10, b 30 -> mean 20, std sqrt(200).
        // x=3: a 20, b still 30 -> mean 25, std sqrt(50).
        assert_eq!((b[0].mean, b[0].std, b[0].n), (10.0, 0.0, 1));
        assert_eq!((b[1].mean, b[1].n), (20.0, 2));
        assert!((b[1].std - 200f64.sqrt()).abs() < 1e-12);
        assert_eq!(b[2].mean, 25.0);
        assert!((b[2].std - 50f64.sqrt()).abs() < 1e-12);
    }
}
