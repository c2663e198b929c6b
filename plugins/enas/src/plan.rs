//! The order in which the controller samples a space's decisions.
//!
//! Any [`SpaceSpec`] is sampled decision by decision. A group whose decisions mark node
//! inputs (key ending in `.input_*`, `node` set, option `j` = the `j`-th input of the cell:
//! `0`, `1` the two cell inputs, `j >= 2` intermediate node `j - 2`) is sampled as the ENAS
//! micro controller samples a cell (Pham et al. 2018, section 2.3; melodyguan/enas
//! `micro_controller.py`): two LSTM steps make the anchors of the cell inputs, then per node
//! its input decisions (chosen by attention over the anchors), then its op decisions, then
//! one more LSTM step whose output is the node's anchor. Every other decision is sampled
//! from a softmax head; decisions with the same option names share one head (its softmax
//! weights and its option embeddings), as every op decision of the ENAS micro space does.
//!
//! A group whose decisions mark skip connections (key ending in `.skip{i}`, `node` set, two
//! options), or whose op options are the ENAS macro ops, is sampled as the ENAS macro
//! controller samples its layers (`general_controller.py` with `search_whole_channels`):
//! per layer (node) its one op decision, then its skip decisions, one per earlier layer.
use nas_core::{NasError, Result, SpaceSpec};

/// One unit of the sampling order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// One decision sampled from a softmax head.
    Single {
        /// Decision index.
        decision: usize,
        /// Head index.
        head: usize,
    },
    /// A cell with node-input decisions (ENAS micro).
    Cell {
        /// The cell's nodes in order.
        nodes: Vec<NodePlan>,
        /// Whether the group is the normal cell (the reference adds a fixed bias to the
        /// normal cell's op logits, `b_soft_no_learn`).
        normal: bool,
    },
    /// The layers of an ENAS macro network (skip attention and the skip penalty).
    Macro {
        /// The layers in order.
        layers: Vec<MacroLayerPlan>,
    },
}

/// The decisions of one macro layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroLayerPlan {
    /// The op decision and its head.
    pub op: (usize, usize),
    /// Skip decisions (option 1 = connect earlier output `i`), one per earlier layer.
    pub skips: Vec<usize>,
}

/// The op names of the ENAS macro space, in the reference's order (`general_child.py`).
pub const ENAS_MACRO_OPS: [&str; 6] = [
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
];

/// True when decision key `key` marks a skip connection (`...skip0`, `...skip1`, ...).
pub fn is_skip_key(key: &str) -> bool {
    key.rsplit('.').next().is_some_and(|s| {
        s.strip_prefix("skip")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn macro_layers(
    d: &[nas_core::Decision],
    range: std::ops::Range<usize>,
    head_of: &mut dyn FnMut(Vec<String>) -> usize,
) -> Result<Vec<MacroLayerPlan>> {
    let mut layers: Vec<(usize, MacroLayerPlan)> = Vec::new();
    for k in range {
        let x = &d[k];
        let bad = |m: String| NasError::Strategy(format!("enas: macro decision `{}`: {m}", x.key));
        let node = x.node.ok_or_else(|| bad("has no node (layer)".into()))?;
        if is_skip_key(&x.key) {
            let pos = layers.len();
            let (n, l) = layers
                .last_mut()
                .ok_or_else(|| bad("a skip before any op decision".into()))?;
            if *n != node {
                return Err(bad(format!(
                    "follows the op of layer {n}, not of its layer {node}"
                )));
            }
            if x.options.len() != 2 {
                return Err(bad(format!(
                    "has {} options, a skip needs 2",
                    x.options.len()
                )));
            }
            if l.skips.len() + 1 >= pos {
                return Err(bad(format!(
                    "layer {} of its group has only {} earlier layers",
                    pos - 1,
                    pos - 1
                )));
            }
            l.skips.push(k);
        } else {
            if layers.iter().any(|(n, _)| *n == node) {
                return Err(bad(format!("layer {node} has a second op decision")));
            }
            let names = x.options.iter().map(|o| o.name.clone()).collect();
            layers.push((
                node,
                MacroLayerPlan {
                    op: (k, head_of(names)),
                    skips: vec![],
                },
            ));
        }
    }
    for (pos, (n, l)) in layers.iter().enumerate() {
        if l.skips.len() != pos {
            return Err(NasError::Strategy(format!(
                "enas: macro layer {n} has {} skip decisions, its position {pos} needs {pos}",
                l.skips.len()
            )));
        }
    }
    Ok(layers.into_iter().map(|(_, l)| l).collect())
}

/// The decisions of one node of a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Input decisions (option `j` = anchor `j`), in decision order.
    pub inputs: Vec<usize>,
    /// Op decisions with their heads, in decision order.
    pub ops: Vec<(usize, usize)>,
}

/// The sampling order of a space and its softmax heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Blocks in sampling order (every decision appears exactly once).
    pub blocks: Vec<Block>,
    /// Option names of each head.
    pub heads: Vec<Vec<String>>,
    /// Number of decisions.
    pub decisions: usize,
}

/// True when decision key `key` marks a node input (`...input_a`, `...input_b`).
pub fn is_input_key(key: &str) -> bool {
    key.rsplit('.')
        .next()
        .is_some_and(|s| s.starts_with("input"))
}

impl Plan {
    /// The plan of `spec`; an error when a cell group is malformed.
    pub fn new(spec: &SpaceSpec) -> Result<Plan> {
        let mut heads: Vec<Vec<String>> = Vec::new();
        let mut head_of = |names: Vec<String>| -> usize {
            match heads.iter().position(|h| *h == names) {
                Some(i) => i,
                None => {
                    heads.push(names);
                    heads.len() - 1
                }
            }
        };
        let d = &spec.decisions;
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < d.len() {
            let group = &d[i].group;
            let mut j = i;
            while j < d.len() && d[j].group == *group {
                j += 1;
            }
            let cell = d[i..j].iter().any(|x| is_input_key(&x.key));
            let is_macro = d[i..j].iter().any(|x| {
                is_skip_key(&x.key) || x.options.iter().map(|o| o.name.as_str()).eq(ENAS_MACRO_OPS)
            });
            if is_macro && !cell {
                blocks.push(Block::Macro {
                    layers: macro_layers(d, i..j, &mut head_of)?,
                });
            } else if !cell {
                for (k, x) in d.iter().enumerate().take(j).skip(i) {
                    let names = x.options.iter().map(|o| o.name.clone()).collect();
                    blocks.push(Block::Single {
                        decision: k,
                        head: head_of(names),
                    });
                }
            } else {
                let mut nodes: Vec<(usize, NodePlan)> = Vec::new();
                for (k, x) in d.iter().enumerate().take(j).skip(i) {
                    let node = x.node.ok_or_else(|| {
                        NasError::Strategy(format!(
                            "enas: decision `{}` is in a cell group but has no node",
                            x.key
                        ))
                    })?;
                    if nodes.last().is_none_or(|(n, _)| *n != node) {
                        if nodes.iter().any(|(n, _)| *n == node) {
                            return Err(NasError::Strategy(format!(
                                "enas: the decisions of node {node} in group `{group}` are not contiguous"
                            )));
                        }
                        nodes.push((
                            node,
                            NodePlan {
                                inputs: vec![],
                                ops: vec![],
                            },
                        ));
                    }
                    let pos = nodes.len() - 1;
                    if is_input_key(&x.key) {
                        if x.options.len() != pos + 2 {
                            return Err(NasError::Strategy(format!(
                                "enas: input decision `{}` has {} options, node {pos} of its cell needs {}",
                                x.key,
                                x.options.len(),
                                pos + 2
                            )));
                        }
                        nodes[pos].1.inputs.push(k);
                    } else {
                        let names = x.options.iter().map(|o| o.name.clone()).collect();
                        nodes[pos].1.ops.push((k, head_of(names)));
                    }
                }
                blocks.push(Block::Cell {
                    nodes: nodes.into_iter().map(|(_, n)| n).collect(),
                    normal: group == "normal",
                });
            }
            i = j;
        }
        Ok(Plan {
            blocks,
            heads,
            decisions: d.len(),
        })
    }

    /// True when some group is sampled as a cell (input attention).
    pub fn has_cells(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Cell { .. }))
    }

    /// True when some group is sampled as macro layers (skip attention and penalty).
    pub fn has_macro(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Macro { .. }))
    }
}
