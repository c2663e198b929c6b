//! Extraction of the architecture family `t -> arch(t)` after a search, and the DARTS-CC
//! JSON form of an architecture.
//!
//! The DARTS-CC reference (`genotype(lam, mode)`, and the one-hot model that loads its
//! output) writes a cell pair as `[reduce, normal]`, each a list over intermediate nodes of
//! the op index of every incoming edge, in its primitive order
//! `max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3,
//! dil_conv_5x5, none` (so 7 = none, also for edges the "DARTS" mode drops).
use nas_core::{Architecture, MixingWeights, NasError, Result, SpaceRules, SpaceSpec};

use crate::strategy::SavedHypernet;

/// The reference's primitive order (`get_primitives`, `DARTS`): `none` is last.
pub const REFERENCE_PRIMITIVES: [&str; 8] = [
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "none",
];

/// One architecture of the family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyMember {
    /// Normalised complexity `t`.
    pub t: f64,
    /// `lambda = 10^(L_min + t (L_max - L_min))`.
    pub lambda: f64,
    /// The derived architecture.
    pub arch: Architecture,
    /// `softmax(alpha(t))` it was derived from.
    pub weights: MixingWeights,
}

/// Derives the architecture at every `t` by the space's rule `mode` (DARTS space: `darts`,
/// top-2 non-none edges per node; `simple`, argmax over all ops including none).
pub fn family(
    saved: &SavedHypernet,
    ts: &[f64],
    rules: &dyn SpaceRules,
    mode: &str,
) -> Result<Vec<FamilyMember>> {
    if saved.hypernets.shape != rules.spec().shape() {
        return Err(NasError::Strategy(format!(
            "the saved hypernetworks have shape {:?}, the space has {:?}",
            saved.hypernets.shape,
            rules.spec().shape()
        )));
    }
    let range = saved.range()?;
    ts.iter()
        .map(|&t| {
            if !(0.0..=1.0).contains(&t) {
                return Err(NasError::Strategy(format!("t = {t} is outside [0, 1]")));
            }
            let weights = saved.weights(t)?;
            let arch = rules.derive(&weights, mode)?;
            Ok(FamilyMember {
                t,
                lambda: range.lambda_of(t),
                arch,
                weights,
            })
        })
        .collect()
}

/// The decisions of `group`, by node (in node order), each node's edges in decision order.
fn nodes_of(spec: &SpaceSpec, group: &str) -> Result<Vec<Vec<usize>>> {
    let mut nodes: Vec<(usize, Vec<usize>)> = Vec::new();
    for (d, dec) in spec.decisions.iter().enumerate() {
        if dec.group != group {
            continue;
        }
        let n = dec.node.ok_or_else(|| {
            NasError::Architecture(format!(
                "decision `{}` has no node: not a cell space",
                dec.key
            ))
        })?;
        match nodes.iter_mut().find(|(m, _)| *m == n) {
            Some((_, v)) => v.push(d),
            None => nodes.push((n, vec![d])),
        }
    }
    if nodes.is_empty() {
        return Err(NasError::Architecture(format!(
            "space `{}` has no `{group}` cell",
            spec.space
        )));
    }
    nodes.sort_by_key(|(n, _)| *n);
    Ok(nodes.into_iter().map(|(_, v)| v).collect())
}

/// The DARTS-CC JSON form `[reduce, normal]` of a cell architecture (see the module doc).
pub fn darts_cc_json(spec: &SpaceSpec, arch: &Architecture) -> Result<serde_json::Value> {
    spec.check(arch)?;
    let mut cells = Vec::with_capacity(2);
    for group in ["reduce", "normal"] {
        let mut nodes = Vec::new();
        for edges in nodes_of(spec, group)? {
            let mut ops = Vec::with_capacity(edges.len());
            for d in edges {
                let name = &spec.decisions[d].options[arch.choices[d]].name;
                let k = REFERENCE_PRIMITIVES
                    .iter()
                    .position(|p| p == name)
                    .ok_or_else(|| {
                        NasError::Architecture(format!(
                            "operation `{name}` has no index in the DARTS-CC primitives"
                        ))
                    })?;
                ops.push(k);
            }
            nodes.push(ops);
        }
        cells.push(nodes);
    }
    Ok(serde_json::json!(cells))
}

/// Reads the DARTS-CC JSON form back into an architecture of `spec`.
pub fn parse_darts_cc_json(spec: &SpaceSpec, v: &serde_json::Value) -> Result<Architecture> {
    let bad = |m: String| NasError::Architecture(format!("DARTS-CC JSON: {m}"));
    let cells: Vec<Vec<Vec<usize>>> = serde_json::from_value(v.clone()).map_err(|e| {
        bad(format!(
            "expected [reduce, normal] lists of op indices: {e}"
        ))
    })?;
    if cells.len() != 2 {
        return Err(bad(format!(
            "{} cells, expected 2 ([reduce, normal])",
            cells.len()
        )));
    }
    let mut choices = vec![usize::MAX; spec.decisions.len()];
    for (group, cell) in ["reduce", "normal"].into_iter().zip(&cells) {
        let nodes = nodes_of(spec, group)?;
        if nodes.len() != cell.len() {
            return Err(bad(format!(
                "the {group} cell has {} nodes, the space {}",
                cell.len(),
                nodes.len()
            )));
        }
        for (i, (edges, ops)) in nodes.iter().zip(cell).enumerate() {
            if edges.len() != ops.len() {
                return Err(bad(format!(
                    "{group} node {i} has {} edges, the space {}",
                    ops.len(),
                    edges.len()
                )));
            }
            for (&d, &k) in edges.iter().zip(ops) {
                let name = REFERENCE_PRIMITIVES
                    .get(k)
                    .ok_or_else(|| bad(format!("op index {k} is out of range 0..=7")))?;
                choices[d] = spec.option_index(d, name).ok_or_else(|| {
                    bad(format!(
                        "`{name}` is not an option of `{}`",
                        spec.decisions[d].key
                    ))
                })?;
            }
        }
    }
    if choices.contains(&usize::MAX) {
        return Err(bad("some decisions are in neither cell".into()));
    }
    Ok(Architecture::new(spec.space.clone(), choices))
}
