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
