//! Sampling and mutating architectures of any [`SpaceSpec`].
use nas_core::{Architecture, SpaceSpec};
use rand::Rng;

/// A uniformly random architecture: each decision's option drawn independently and
/// uniformly (the NB201 paper's random search and REA initialisation).
pub fn random_architecture(spec: &SpaceSpec, rng: &mut impl Rng) -> Architecture {
    Architecture::new(
        spec.space.clone(),
        spec.decisions
            .iter()
            .map(|d| rng.random_range(0..d.options.len()))
            .collect(),
    )
}

/// The child of `parent` with exactly one decision changed to a different option: the
/// decision is drawn uniformly among those with at least two options, the new option
/// uniformly among the others (REA's mutation, Real et al. 2019; NB201's
/// `mutate_arch_func` does the same by rejection). `None` when no decision has a second
/// option.
pub fn mutate(spec: &SpaceSpec, parent: &Architecture, rng: &mut impl Rng) -> Option<Architecture> {
    let mutable: Vec<usize> = spec
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.options.len() >= 2)
        .map(|(i, _)| i)
        .collect();
    if mutable.is_empty() {
        return None;
    }
    let d = mutable[rng.random_range(0..mutable.len())];
    let n = spec.decisions[d].options.len();
    let mut child = parent.clone();
    // Draw among the n - 1 other options: skip over the current one.
    let mut c = rng.random_range(0..n - 1);
    if c >= parent.choices[d] {
        c += 1;
    }
    child.choices[d] = c;
    Some(child)
}
