//! The shape of the DARTS space: which decision is which edge, how many channels each cell
//! has, where the reduction cells are (quark0/darts `cnn/model_search.py`, `Network`).
use serde::{Deserialize, Serialize};

use crate::ops::PRIMITIVES;

/// Hyper-parameters of the DARTS space (defaults: the DARTS CIFAR-10 search network,
/// Liu et al. 2019 section 3.1: 8 cells, 16 initial channels, 4 nodes, 8 operations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DartsSpaceParams {
    /// Initial channels `C` of the search network.
    pub channels: usize,
    /// Cells of the search network; reduction cells at `layers/3` and `2*layers/3`.
    pub layers: usize,
    /// Intermediate nodes per cell.
    pub nodes: usize,
    /// Nodes concatenated into the cell output (the last `multiplier` nodes).
    pub multiplier: usize,
    /// Stem output channels = `stem_multiplier * channels`.
    pub stem_multiplier: usize,
    /// Candidate operations, `none` first as in the reference.
    pub ops: Vec<String>,
    /// Retraining defaults (DARTS evaluation: 36 channels, 20 cells, auxiliary head).
    pub retrain_channels: usize,
    /// See `retrain_channels`.
    pub retrain_layers: usize,
    /// See `retrain_channels`.
    pub retrain_auxiliary: bool,
    /// Anchors of a lambda-conditioned classifier in the search network (DARTS-CC's
    /// `PWLinear`, Yakovlev et al.): 0 = one plain linear classifier; `K >= 2` = `K` anchor
    /// classifiers interpolated piecewise-linearly by the drive's condition `t` over evenly
    /// spaced pivots, trained with the weights. Standalone networks are not affected.
    pub head_anchors: usize,
}

impl Default for DartsSpaceParams {
    fn default() -> Self {
        DartsSpaceParams {
            channels: 16,
            layers: 8,
            nodes: 4,
            multiplier: 4,
            stem_multiplier: 3,
            ops: PRIMITIVES.iter().map(|s| s.to_string()).collect(),
            retrain_channels: 36,
            retrain_layers: 20,
            retrain_auxiliary: true,
            head_anchors: 0,
        }
    }
}

/// The two cell types; alphas are shared by all cells of a type (DARTS).
pub const CELL_TYPES: [&str; 2] = ["normal", "reduce"];

/// Decision index arithmetic for the DARTS space.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Intermediate nodes per cell.
    pub nodes: usize,
}

impl Layout {
    /// Edges per cell: node `i` (0-based intermediate) has `i + 2` inputs.
    pub fn edges_per_cell(&self) -> usize {
        (0..self.nodes).map(|i| i + 2).sum()
    }

    /// First edge index of intermediate node `i` within a cell.
    pub fn node_offset(&self, i: usize) -> usize {
        (0..i).map(|k| k + 2).sum()
    }

    /// Decision index of the edge from input `j` into node `i` of cell type `t`
    /// (0 normal, 1 reduce).
    pub fn decision(&self, t: usize, i: usize, j: usize) -> usize {
        t * self.edges_per_cell() + self.node_offset(i) + j
    }

    /// Total decisions (two cell types).
    pub fn decisions(&self) -> usize {
        2 * self.edges_per_cell()
    }
}

/// Whether cell `i` of `layers` is a reduction cell (`i in [layers//3, 2*layers//3]`, as in
/// the reference code, so 3 cells are normal, reduce, reduce).
pub fn is_reduction(i: usize, layers: usize) -> bool {
    i == layers / 3 || i == 2 * layers / 3
}

/// Per-cell channel plan: `(c_prev_prev, c_prev, c, reduction, reduction_prev)`.
pub fn cell_plan(
    channels: usize,
    layers: usize,
    multiplier: usize,
    stem_multiplier: usize,
) -> Vec<(usize, usize, usize, bool, bool)> {
    let c_stem = stem_multiplier * channels;
    let (mut cpp, mut cp, mut c) = (c_stem, c_stem, channels);
    let mut plan = Vec::with_capacity(layers);
    let mut red_prev = false;
    for i in 0..layers {
        let red = is_reduction(i, layers);
        if red {
            c *= 2;
        }
        plan.push((cpp, cp, c, red, red_prev));
        red_prev = red;
        cpp = cp;
        cp = multiplier * c;
    }
    plan
}
