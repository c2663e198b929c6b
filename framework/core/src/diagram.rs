//! Cell diagrams as plain data: what a space returns from
//! [`crate::SpaceRules::cell_diagrams`] and a report draws (like the DARTS paper's figures 4
//! and 5, Liu et al. 2019). The space knows its cells' nodes and edges; the drawing (layout,
//! colours, file formats) belongs to the report, which knows no space.

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A cell input (`c_{k-2}`, `c_{k-1}`; NB201's node 0).
    Input,
    /// An intermediate node.
    Inner,
    /// The cell output.
    Output,
}

/// A node of a cell diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagramNode {
    /// Text inside the node.
    pub label: String,
    /// Its kind (colour and column).
    pub kind: NodeKind,
}

/// A directed edge, optionally labelled with its operation.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagramEdge {
    /// Source node index.
    pub from: usize,
    /// Target node index.
    pub to: usize,
    /// The operation (`None`: a plain connection, e.g. concatenation into the output).
    pub label: Option<String>,
}

/// One cell as a graph. Node indices are topologically ordered (edges go from lower to
/// higher indices).
#[derive(Debug, Clone, PartialEq)]
pub struct CellDiagram {
    /// Title above the diagram (`normal cell`).
    pub title: String,
    /// File stem of the drawing (`cell_normal`).
    pub stem: String,
    /// The nodes.
    pub nodes: Vec<DiagramNode>,
    /// The edges.
    pub edges: Vec<DiagramEdge>,
}

impl DiagramNode {
    /// A node labelled `label` of kind `kind`.
    pub fn new(label: impl Into<String>, kind: NodeKind) -> Self {
        DiagramNode {
            label: label.into(),
            kind,
        }
    }
}
