//! The macro space's decisions, params and notation (melodyguan/enas `general_child.py` with
//! `whole_channels`, `general_controller.py` with `search_whole_channels`).
use nas_core::{Cost, Decision, NasError, OptionSpec, Result, SpaceSpec};
use serde::{Deserialize, Serialize};

/// Registered name.
pub const MACRO_SPACE: &str = "enas-macro";

/// The six ops, in the reference's branch order (`_enas_layer` with `whole_channels`:
/// `branch_0` conv 3x3, `branch_1` sep conv 3x3, `branch_2` conv 5x5, `branch_3` sep conv
/// 5x5, `branch_4` avg pool 3x3, `branch_5` max pool 3x3).
pub const MACRO_OPS: [&str; 6] = [
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
];

/// Options of a skip decision: `0` no connection, `1` connection (the reference's bit).
pub const SKIP_OPTIONS: [&str; 2] = ["none", "skip"];

/// The decision group of every macro decision.
pub const MACRO_GROUP: &str = "macro";

/// Params of the `enas-macro` space (`space.params`). Defaults are the reference macro
/// search script's (`scripts/cifar10_macro_search.sh`: `child_num_layers=12`,
/// `child_out_filters=36`) and final script's (`scripts/cifar10_macro_final.sh`:
/// `child_out_filters=96`; its published arc has 24 layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MacroSpaceParams {
    /// Layers (`num_layers`; reference search 12). Reductions follow layers
    /// `layers/3 - 1` and `2*(layers/3) - 1` (`pool_layers`; none below 3 layers).
    pub layers: usize,
    /// Channels of the search network (`out_filters`, constant through the reductions in
    /// the search network; reference search 36).
    pub channels: usize,
    /// Channels of the standalone network before the first reduction (doubled at each;
    /// reference final 96).
    pub retrain_channels: usize,
    /// Build the standalone network's separable ops (1, 3) as plain convolutions, as the
    /// reference's `_fixed_layer` does (it reads only the kernel size `[3, 3, 5, 5][op]`);
    /// `true` reproduces the reference's final network and its parameter count.
    pub retrain_sep_as_conv: bool,
}

impl Default for MacroSpaceParams {
    fn default() -> Self {
        MacroSpaceParams {
            layers: 12,
            channels: 36,
            retrain_channels: 96,
            retrain_sep_as_conv: false,
        }
    }
}

impl MacroSpaceParams {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        let bad = |path: &str, message: String| NasError::InvalidParams {
            component: "space enas-macro".into(),
            path: path.into(),
            message,
        };
        if self.layers == 0 {
            return Err(bad("layers", "must be >= 1".into()));
        }
        for (k, c) in [
            ("channels", self.channels),
            ("retrain_channels", self.retrain_channels),
        ] {
            if c == 0 || !c.is_multiple_of(2) {
                return Err(bad(
                    k,
                    format!("must be even and > 0 (the factorized reduction halves it), got {c}"),
                ));
            }
        }
        Ok(())
    }
}

/// The layers after which every earlier output is reduced (`pool_layers`: `[d - 1,
/// 2d - 1]` with `d = layers / 3`; none when `d = 0`).
pub fn pool_layers(layers: usize) -> Vec<usize> {
    let d = layers / 3;
    if d == 0 {
        vec![]
    } else {
        vec![d - 1, 2 * d - 1]
    }
}

/// Index of layer `l`'s op decision (`l + l (l - 1) / 2`); its skips follow it.
pub fn op_index(l: usize) -> usize {
    l + l * l.saturating_sub(1) / 2
}

/// Number of decisions of `layers` layers.
pub fn decision_count(layers: usize) -> usize {
    op_index(layers)
}

/// The layer count whose decisions number `n`, if any.
pub fn layers_of(n: usize) -> Option<usize> {
    (0..=n).find(|&l| decision_count(l) == n)
}

/// Layer `l`'s op and skip bits (`skips[i] == 1`: the output `i` is added, `0` the stem,
/// `i >= 1` layer `i - 1`).
pub fn layer_choices(arc: &[usize], l: usize) -> (usize, &[usize]) {
    let s = op_index(l);
    (arc[s], &arc[s + 1..s + 1 + l])
}

/// The decisions in the reference's arc order: per layer `layer{l}.op` (six options, with
/// `op_costs[l]`), then `layer{l}.skip{i}` for `i < l` (options `none`, `skip`; the skip
/// costs `skip_costs[l]`). Every decision has group `macro` and `node = l`.
pub fn spec(layers: usize, op_costs: &[[Cost; 6]], skip_costs: &[Cost], fixed: Cost) -> SpaceSpec {
    let mut decisions = Vec::new();
    for l in 0..layers {
        decisions.push(Decision {
            key: format!("layer{l}.op"),
            group: MACRO_GROUP.into(),
            node: Some(l),
            options: MACRO_OPS
                .iter()
                .zip(&op_costs[l])
                .map(|(o, c)| OptionSpec {
                    name: (*o).into(),
                    cost: *c,
                })
                .collect(),
        });
        for i in 0..l {
            decisions.push(Decision {
                key: format!("layer{l}.skip{i}"),
                group: MACRO_GROUP.into(),
                node: Some(l),
                options: vec![
                    OptionSpec {
                        name: SKIP_OPTIONS[0].into(),
                        cost: Cost::default(),
                    },
                    OptionSpec {
                        name: SKIP_OPTIONS[1].into(),
                        cost: skip_costs[l],
                    },
                ],
            });
        }
    }
    SpaceSpec {
        space: MACRO_SPACE.into(),
        decisions,
        fixed_cost: fixed,
    }
}

/// The reference's notation: one line per layer, `op skip_0 ... skip_{l-1}`, joined by
/// ` | ` (the reference's `fixed_arc` is the same integers separated by spaces).
pub fn format_macro_arc(arc: &[usize], layers: usize) -> String {
    (0..layers)
        .map(|l| {
            let s = op_index(l);
            arc[s..(s + 1 + l).min(arc.len())]
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parses [`format_macro_arc`]'s notation or the reference's bare `fixed_arc` integers
/// for `layers` layers.
pub fn parse_macro_arc(text: &str, layers: usize) -> Result<Vec<usize>> {
    let cleaned = text.replace(['|', ';', ','], " ");
    let v = cleaned
        .split_whitespace()
        .map(|t| {
            t.parse::<usize>().map_err(|_| {
                NasError::Architecture(format!(
                    "enas-macro arc: `{t}` is not a non-negative integer (expected per layer \
                     `op skip_0 .. skip_(l-1)`)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = decision_count(layers);
    if v.len() != n {
        return Err(NasError::Architecture(format!(
            "enas-macro arc has {} integers, {layers} layers need {n} (per layer `op` then \
             one skip bit per earlier output)",
            v.len()
        )));
    }
    Ok(v)
}
