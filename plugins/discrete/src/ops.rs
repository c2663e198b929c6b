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
/// uniformly among the others (REA's mutation in Real et al. 2019's terms). NB201's
/// `mutate_arch_func` draws differently: see [`mutate_by_node`]. `None` when no decision
/// has a second option.
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

/// NAS-Bench-201's mutation (AutoDL-Projects `exps/NAS-Bench-201-algos/R_EA.py`,
/// `mutate_arch_func`): a node drawn uniformly, then one of its incoming edges uniformly,
/// then a different operation uniformly (the reference redraws until it differs). In the
/// NB201 cell node 1 has one edge, node 2 two and node 3 three, so an edge into node 1 is
/// mutated with probability 1/3, each edge into node 2 with 1/6 and each into node 3 with
/// 1/9 (not 1/6 each, as [`mutate`] gives). Decisions are grouped by [`nas_core::Decision`]
/// `node`; decisions without a node (single-path spaces) form one group each, so a space
/// without nodes mutates as [`mutate`] does. `None` when no decision has a second option.
pub fn mutate_by_node(
    spec: &SpaceSpec,
    parent: &Architecture,
    rng: &mut impl Rng,
) -> Option<Architecture> {
    // Mutable decisions grouped by node, groups in order of first appearance.
    let mut groups: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
    for (i, d) in spec.decisions.iter().enumerate() {
        if d.options.len() < 2 {
            continue;
        }
        match (
            d.node,
            groups.iter_mut().find(|(n, _)| n.is_some() && *n == d.node),
        ) {
            (Some(_), Some((_, g))) => g.push(i),
            _ => groups.push((d.node, vec![i])),
        }
    }
    if groups.is_empty() {
        return None;
    }
    let g = &groups[rng.random_range(0..groups.len())].1;
    let d = g[rng.random_range(0..g.len())];
    let n = spec.decisions[d].options.len();
    let mut child = parent.clone();
    let mut c = rng.random_range(0..n - 1);
    if c >= parent.choices[d] {
        c += 1;
    }
    child.choices[d] = c;
    Some(child)
}
