//! The micro space's decisions and the network layout (melodyguan/enas `micro_child.py`).
use nas_core::{Cost, Decision, OptionSpec, SpaceSpec};
use serde::{Deserialize, Serialize};

/// Registered name.
pub const SPACE: &str = "enas-micro";

/// The five ops, in the reference's index order (`_enas_cell`: sep conv 3x3, sep conv 5x5,
/// avg pool 3x3, max pool 3x3, identity).
pub const OPS: [&str; 5] = [
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "identity",
];

/// Nodes per cell (`child_num_cells`, B = 5 in the paper).
pub const NODES: usize = 5;

/// The two cell types, in decision order.
pub const CELLS: [&str; 2] = ["normal", "reduce"];

/// The four decisions of a node, in the reference's arc order `[x_id, x_op, y_id, y_op]`.
pub const NODE_KEYS: [&str; 4] = ["input_a", "op_a", "input_b", "op_b"];

/// Params of the `enas-micro` space (`space.params`): the search network. Defaults are the
/// reference micro search script's (`cifar10_micro_search.sh`: `child_num_layers=6`,
/// `child_out_filters=20`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnasSpaceParams {
    /// Output channels of the first layers (`out_filters`); the stem has 3x as many and
    /// each reduction doubles them.
    pub channels: usize,
    /// Normal layers (`num_layers`); two reduction layers are added, at
    /// `num_layers / 3` and `2 * (num_layers / 3) + 1` (`pool_layers`).
    pub layers: usize,
    /// Retraining defaults (`nas train` without `train:`): the reference's final network
    /// (`cifar10_micro_final.sh`: 36 channels, 15 layers, auxiliary head).
    pub retrain_channels: usize,
    /// See [`EnasSpaceParams::retrain_channels`].
    pub retrain_layers: usize,
}

impl Default for EnasSpaceParams {
    fn default() -> Self {
        EnasSpaceParams {
            channels: 20,
            layers: 6,
            retrain_channels: 36,
            retrain_layers: 15,
        }
    }
}

/// Indices of the reduction layers among `layers + 2` (`pool_layers` of the reference).
pub fn pool_layers(layers: usize) -> [usize; 2] {
    let d = layers / 3;
    [d, 2 * d + 1]
}

/// Decision index of `(cell, node, slot)` (slot in [`NODE_KEYS`] order).
pub fn decision_index(cell: usize, node: usize, slot: usize) -> usize {
    cell * NODES * 4 + node * 4 + slot
}

/// The decisions: per cell type, per node, `input_a` (options `0..node+2`: `0`, `1` the cell
/// inputs, `j >= 2` node `j - 2`), `op_a`, `input_b`, `op_b`. Op options carry `op_costs`
/// (per cell type), inputs cost nothing.
pub fn spec(op_costs: &[[Cost; 5]; 2], fixed: Cost) -> SpaceSpec {
    let mut decisions = Vec::new();
    for (ci, cell) in CELLS.iter().enumerate() {
        for node in 0..NODES {
            for key in NODE_KEYS {
                let options = if key.starts_with("input") {
                    (0..node + 2)
                        .map(|j| OptionSpec {
                            name: j.to_string(),
                            cost: Cost::default(),
                        })
                        .collect()
                } else {
                    OPS.iter()
                        .zip(&op_costs[ci])
                        .map(|(o, c)| OptionSpec {
                            name: (*o).into(),
                            cost: *c,
                        })
                        .collect()
                };
                decisions.push(Decision {
                    key: format!("{cell}.n{node}.{key}"),
                    group: (*cell).into(),
                    node: Some(node),
                    options,
                });
            }
        }
    }
    SpaceSpec {
        space: SPACE.into(),
        decisions,
        fixed_cost: fixed,
    }
}

/// The inputs (0-based, `0`/`1` the cell inputs) no node uses: the cell's output is their
/// concatenation (`_enas_layer` / `_fixed_combine`).
pub fn unused(arc: &[usize]) -> Vec<usize> {
    let mut used = [false; NODES + 2];
    for node in 0..NODES {
        used[arc[4 * node]] = true;
        used[arc[4 * node + 2]] = true;
    }
    (0..NODES + 2).filter(|&j| !used[j]).collect()
}
