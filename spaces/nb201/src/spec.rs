//! The NAS-Bench-201 cell space as plain data: its edges, its operations and their costs.
//!
//! Source: Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
//! Architecture Search", ICLR 2020, section 2.1; operation order as the list
//! `NAS_BENCH_201` in the benchmark's reference code (AutoDL-Projects,
//! `xautodl/models/cell_operations.py`), edge order as its cell structures enumerate them
//! (node by node, inputs in increasing order), which is also the order of the arch string.
use std::sync::OnceLock;

use nas_core::{Architecture, Cost, Decision, OptionSpec, Result, SpaceSpec};

use crate::cost::{fixed_cost, op_cost};

/// Registered name of the space.
pub const SPACE_NAME: &str = "nb201";

/// Nodes of the cell: node 0 is the cell input, node 3 its output.
pub const NUM_NODES: usize = 4;

/// The five operations, in the benchmark's order (index = option index).
pub const OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

/// The six edges `(to, from)`, in the benchmark's order: `1<-0, 2<-0, 2<-1, 3<-0, 3<-1,
/// 3<-2` (index = decision index).
pub const EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];

/// Number of architectures in the space (5^6).
pub const NUM_ARCHITECTURES: usize = 15_625;

/// Decision key of edge `to<-from` (`e1<-0`, ...).
pub fn edge_key(to: usize, from: usize) -> String {
    format!("e{to}<-{from}")
}

/// The NAS-Bench-201 space: 6 decisions (edges, group `cell`, `node: Some(to)`), each with
/// the 5 operations of [`OPS`]. Option costs are what that operation on that edge adds to
/// the benchmark's CIFAR-10 network summed over its 15 cells; the fixed cost is the rest
/// (see [`crate::cost`]).
pub fn nb201_spec() -> SpaceSpec {
    let decisions = EDGES
        .iter()
        .map(|&(to, from)| Decision {
            key: edge_key(to, from),
            group: "cell".into(),
            node: Some(to),
            options: OPS
                .iter()
                .map(|&op| OptionSpec {
                    name: op.into(),
                    cost: op_cost(op),
                })
                .collect(),
        })
        .collect();
    SpaceSpec {
        space: SPACE_NAME.into(),
        decisions,
        fixed_cost: fixed_cost(),
    }
}

/// A shared copy of [`nb201_spec`], built once.
pub fn nb201_spec_ref() -> &'static SpaceSpec {
    static SPEC: OnceLock<SpaceSpec> = OnceLock::new();
    SPEC.get_or_init(nb201_spec)
}

/// Every architecture of the space in odometer order (the last edge changes fastest).
/// This is *not* the benchmark's index order, which is a shuffled list; use
/// [`crate::Nb201Table::index_of`] for that.
pub fn all_architectures() -> impl Iterator<Item = Architecture> {
    (0..NUM_ARCHITECTURES).map(|mut code| {
        let mut choices = vec![0; EDGES.len()];
        for c in choices.iter_mut().rev() {
            *c = code % OPS.len();
            code /= OPS.len();
        }
        Architecture::new(SPACE_NAME, choices)
    })
}

/// Total cost of `arch` (checks that it belongs to the space).
pub fn nb201_cost(arch: &Architecture) -> Result<Cost> {
    nb201_spec_ref().cost_of(arch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn spec_has_benchmark_order() {
        let s = nb201_spec();
        let keys: Vec<_> = s.decisions.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["e1<-0", "e2<-0", "e2<-1", "e3<-0", "e3<-1", "e3<-2"]);
        let nodes: Vec<_> = s.decisions.iter().map(|d| d.node).collect();
        assert_eq!(
            nodes,
            [Some(1), Some(2), Some(2), Some(3), Some(3), Some(3)]
        );
        assert!(s.decisions.iter().all(|d| d.group == "cell"));
        assert_eq!(s.shape(), vec![5; 6]);
        assert_eq!(s.option_index(2, "nor_conv_3x3"), Some(3));
        assert_eq!(s.option_index(0, "avg_pool_3x3"), Some(4));
    }

    #[test]
    fn enumeration_is_complete_and_distinct() {
        let all: Vec<_> = all_architectures().collect();
        assert_eq!(all.len(), NUM_ARCHITECTURES);
        let set: HashSet<_> = all.iter().map(|a| a.choices.clone()).collect();
        assert_eq!(set.len(), NUM_ARCHITECTURES);
        assert_eq!(all[0].choices, vec![0; 6]);
        assert_eq!(all[1].choices, vec![0, 0, 0, 0, 0, 1]);
        assert_eq!(all[NUM_ARCHITECTURES - 1].choices, vec![4; 6]);
    }
}
