//! Path sampling: uniform (SPOS) and strictly fair (FairNAS).
use nas_core::{Architecture, NasError, Result, SearchEnv, SpaceSpec};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::Constraint;

/// One path with every decision's option drawn independently and uniformly (SPOS,
/// Guo et al. 2020, eq. 5: `Gamma(A)` uniform).
pub fn uniform_path(spec: &SpaceSpec, rng: &mut impl Rng) -> Architecture {
    nas_strategy_discrete::random_architecture(spec, rng)
}

/// A uniform path that satisfies `constraint`, by rejection (at most `max_tries` draws;
/// SPOS samples "only architectures satisfying the constraint" during supernet training
/// when it is given one). Costs come from the environment.
pub fn constrained_path(
    env: &dyn SearchEnv,
    constraint: &Constraint,
    max_tries: usize,
    rng: &mut impl Rng,
) -> Result<Architecture> {
    let spec = env.spec();
    if constraint.is_empty() {
        return Ok(uniform_path(spec, rng));
    }
    for _ in 0..max_tries.max(1) {
        let a = uniform_path(spec, rng);
        if constraint.admits(&env.cost(&a)?)? {
            return Ok(a);
        }
    }
    Err(NasError::Strategy(format!(
        "no path within the constraint {constraint:?} in {max_tries} uniform draws; widen the range or raise max_tries"
    )))
}

/// A path drawn as the SPOS reference draws supernet-training paths under a FLOPs range
/// (`Supernet/train.py`, `get_uniform_sample_cand`): the range `[min_flops, max_flops]` is
/// cut into bins of width `bin` (the last one clipped to `max_flops`; bounds inclusive, as
/// the reference's `l <= flops <= r`), one bin is drawn uniformly, then uniform paths until
/// one lies in it (and within the constraint's other bounds), at most `max_tries` draws.
/// Every FLOPs bin is then trained about equally often, where plain rejection trains the
/// FLOPs the uniform distribution favours. Without both FLOPs bounds it is
/// [`constrained_path`].
///
/// Deviation: when the bin yields nothing in `max_tries` draws the reference returns an
/// unconstrained uniform path; here the path is drawn by rejection over the whole
/// constraint ([`constrained_path`], an error when that fails too), so a trained path is
/// always within the constraint.
pub fn binned_path(
    env: &dyn SearchEnv,
    constraint: &Constraint,
    bin: f64,
    max_tries: usize,
    rng: &mut impl Rng,
) -> Result<Architecture> {
    let (Some(lo), Some(hi)) = (constraint.min_flops, constraint.max_flops) else {
        return constrained_path(env, constraint, max_tries, rng);
    };
    let bins = (((hi - lo) / bin).ceil() as usize).max(1);
    let k = rng.random_range(0..bins);
    let in_bin = Constraint {
        min_flops: Some(lo + k as f64 * bin),
        max_flops: Some((lo + (k + 1) as f64 * bin).min(hi)),
        ..constraint.clone()
    };
    let spec = env.spec();
    for _ in 0..max_tries.max(1) {
        let a = uniform_path(spec, rng);
        if in_bin.admits(&env.cost(&a)?)? {
            return Ok(a);
        }
    }
    constrained_path(env, constraint, max_tries, rng)
}

/// FairNAS strict fairness (Chu et al., "FairNAS: Rethinking Evaluation Fairness of Weight
/// Sharing Neural Architecture Search", ICCV 2021, Algorithm 1): for every decision an
/// independent uniform random permutation of its options; path `i` takes the `i`-th entry
/// of every permutation. With `m` options per decision this gives `m` paths in which every
/// option of every decision appears exactly once.
///
/// When decisions have different numbers of options, `m` is the largest; a decision with
/// `n < m` options fills the remaining `m - n` slots with uniform draws (those options are
/// then trained more than once in the step; strict fairness needs equal option counts).
pub fn fair_paths(spec: &SpaceSpec, rng: &mut impl Rng) -> Vec<Architecture> {
    let m = spec
        .decisions
        .iter()
        .map(|d| d.options.len())
        .max()
        .unwrap_or(0);
    let columns: Vec<Vec<usize>> = spec
        .decisions
        .iter()
        .map(|d| {
            let n = d.options.len();
            let mut p: Vec<usize> = (0..n).collect();
            p.shuffle(rng);
            while p.len() < m {
                p.push(rng.random_range(0..n));
            }
            p
        })
        .collect();
    (0..m)
        .map(|i| Architecture::new(spec.space.clone(), columns.iter().map(|c| c[i]).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_core::{Cost, Decision, OptionSpec};

    pub(crate) fn spec(counts: &[usize]) -> SpaceSpec {
        SpaceSpec {
            space: "toy".into(),
            decisions: counts
                .iter()
                .enumerate()
                .map(|(i, &n)| Decision {
                    key: format!("l{i}"),
                    group: "g".into(),
                    node: None,
                    options: (0..n)
                        .map(|k| OptionSpec {
                            name: format!("op{k}"),
                            cost: Cost::default(),
                        })
                        .collect(),
                })
                .collect(),
            fixed_cost: Cost::default(),
        }
    }

    #[test]
    fn fair_paths_use_every_option_exactly_once() {
        let s = spec(&[4; 20]);
        let mut rng = nas_core::component_rng(3, "fair");
        let mut differ = false;
        for _ in 0..50 {
            let paths = fair_paths(&s, &mut rng);
            assert_eq!(paths.len(), 4);
            for d in 0..20 {
                let mut seen: Vec<usize> = paths.iter().map(|p| p.choices[d]).collect();
                seen.sort();
                assert_eq!(seen, vec![0, 1, 2, 3], "decision {d}");
            }
            differ |= paths[0].choices != paths[1].choices;
        }
        assert!(differ);
    }

    #[test]
    fn fair_permutations_are_uniform() {
        // Each option should lead path 0 about 1/4 of the time (chi-square-free check:
        // 4000 draws, every count within 4 standard deviations of 1000).
        let s = spec(&[4]);
        let mut rng = nas_core::component_rng(5, "fair");
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[fair_paths(&s, &mut rng)[0].choices[0]] += 1;
        }
        for c in counts {
            assert!(
                (c as f64 - 1000.0).abs() < 4.0 * (4000.0f64 * 0.25 * 0.75).sqrt(),
                "{counts:?}"
            );
        }
    }

    /// A search environment that only knows costs.
    struct CostEnv(SpaceSpec);

    impl SearchEnv for CostEnv {
        fn spec(&self) -> &SpaceSpec {
            &self.0
        }
        fn trainer(&mut self) -> Option<&mut dyn nas_core::SupernetTrainer> {
            None
        }
        fn estimator(&mut self) -> Option<&mut dyn nas_core::Estimator> {
            None
        }
        fn derive(&self, _: &nas_core::MixingWeights, _: &str) -> Result<Architecture> {
            Err(NasError::Strategy("no derive".into()))
        }
        fn cost(&self, a: &Architecture) -> Result<Cost> {
            self.0.cost_of(a)
        }
        fn describe(&self, a: &Architecture) -> String {
            format!("{:?}", a.choices)
        }
        fn epoch(&self) -> (usize, usize) {
            (0, 1)
        }
    }

    /// 10 decisions of two options costing 0 and 2 FLOPs: a uniform path's FLOPs are
    /// 2 x Binomial(10, 1/2). Range [1, 21] in bins of 4: [1,5] [5,9] [9,13] [13,17] [17,21],
    /// each holding exactly two totals ({2,4}, {6,8}, ...). By hand, plain rejection puts
    /// a bin-0 path in (C(10,1) + C(10,2)) / (2^10 - 1) = 55 / 1023 = 5.4% of the steps;
    /// the reference's binned sampler in 1/5 of them, and within a bin the totals keep
    /// their uniform-path odds (in bin 0: 2 FLOPs 10 : 4 FLOPs 45).
    #[test]
    fn binned_sampler_draws_every_flops_bin_equally_often() {
        let mut s = spec(&[2; 10]);
        for d in &mut s.decisions {
            d.options[1].cost.flops = 2.0;
        }
        let env = CostEnv(s);
        let c = Constraint {
            min_flops: Some(1.0),
            max_flops: Some(21.0),
            ..Default::default()
        };
        let total = |a: &Architecture| env.cost(a).unwrap().flops as usize;
        let n = 5000;
        let mut rng = nas_core::component_rng(11, "bins");
        let mut bins = [0usize; 5];
        let (mut two, mut four) = (0usize, 0usize);
        for _ in 0..n {
            let f = total(&binned_path(&env, &c, 4.0, 1000, &mut rng).unwrap());
            assert!((2..=20).contains(&f) && f % 2 == 0, "{f}");
            bins[(f - 1) / 4] += 1;
            two += (f == 2) as usize;
            four += (f == 4) as usize;
        }
        let sd = (n as f64 * 0.2 * 0.8).sqrt();
        for b in bins {
            assert!((b as f64 - n as f64 / 5.0).abs() < 4.0 * sd, "{bins:?}");
        }
        // Within bin 0: P(2 | bin 0) = 10/55.
        let p = two as f64 / (two + four) as f64;
        let sd0 = ((10.0 / 55.0) * (45.0 / 55.0) / (two + four) as f64).sqrt();
        assert!((p - 10.0 / 55.0).abs() < 4.0 * sd0, "{two} {four}");
        // Plain rejection, for contrast: bin 0 about 5.4% of the draws.
        let mut rng = nas_core::component_rng(12, "bins");
        let low = (0..n)
            .filter(|_| total(&constrained_path(&env, &c, 1000, &mut rng).unwrap()) <= 4)
            .count();
        let q = 55.0 / 1023.0;
        let sdq = (n as f64 * q * (1.0 - q)).sqrt();
        assert!((low as f64 - n as f64 * q).abs() < 4.0 * sdq, "{low}");
    }

    #[test]
    fn binned_sampler_without_both_flops_bounds_is_rejection() {
        let env = CostEnv(spec(&[3; 4]));
        let c = Constraint {
            max_flops: Some(5.0),
            ..Default::default()
        };
        let mut a = nas_core::component_rng(4, "x");
        let mut b = nas_core::component_rng(4, "x");
        for _ in 0..20 {
            assert_eq!(
                binned_path(&env, &c, 1.0, 10, &mut a).unwrap(),
                constrained_path(&env, &c, 10, &mut b).unwrap()
            );
        }
    }

    #[test]
    fn unequal_option_counts_cover_every_option_at_least_once() {
        let s = spec(&[6, 7, 6]);
        let mut rng = nas_core::component_rng(1, "fair");
        let paths = fair_paths(&s, &mut rng);
        assert_eq!(paths.len(), 7);
        for (d, n) in [(0, 6), (1, 7), (2, 6)] {
            for k in 0..n {
                assert!(paths.iter().any(|p| p.choices[d] == k));
            }
        }
    }
}
