//! The DARTS cells of a genotype as diagrams (Liu et al. 2019, figures 4 and 5): inputs
//! `c_{k-2}` and `c_{k-1}`, one node per intermediate node, the output `c_{k}`, one edge per
//! kept gene labelled with its operation and one unlabelled edge per concatenated node.
use nas_core::{CellDiagram, DiagramEdge, DiagramNode, NodeKind};

use crate::genotype::{Gene, Genotype};

/// One cell from its genotype part: `genes[i]` are the `(op, input)` pairs of intermediate
/// node `i` (input 0 = `c_{k-2}`, 1 = `c_{k-1}`, `2 + j` = node `j`), `concat` the nodes
/// concatenated into the output. `none` edges are left out.
pub fn cell_diagram(title: &str, stem: &str, genes: &[Vec<Gene>], concat: &[usize]) -> CellDiagram {
    let mut nodes = vec![
        DiagramNode::new("c_{k-2}", NodeKind::Input),
        DiagramNode::new("c_{k-1}", NodeKind::Input),
    ];
    nodes.extend((0..genes.len()).map(|i| DiagramNode::new(i.to_string(), NodeKind::Inner)));
    let out = nodes.len();
    nodes.push(DiagramNode::new("c_{k}", NodeKind::Output));
    let mut edges = Vec::new();
    for (i, node) in genes.iter().enumerate() {
        for (op, j) in node {
            if op != "none" && *j < 2 + i {
                edges.push(DiagramEdge {
                    from: *j,
                    to: 2 + i,
                    label: Some(op.clone()),
                });
            }
        }
    }
    edges.extend(concat.iter().filter(|&&c| c < out).map(|&c| DiagramEdge {
        from: c,
        to: out,
        label: None,
    }));
    CellDiagram {
        title: title.into(),
        stem: stem.into(),
        nodes,
        edges,
    }
}

/// The normal and reduction cells of `g`.
pub fn genotype_diagrams(g: &Genotype) -> Vec<CellDiagram> {
    vec![
        cell_diagram("normal cell", "cell_normal", &g.normal, &g.normal_concat),
        cell_diagram("reduction cell", "cell_reduce", &g.reduce, &g.reduce_concat),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genes(v: &[(&str, usize)]) -> Vec<Vec<Gene>> {
        v.chunks(2)
            .map(|c| c.iter().map(|(o, i)| (o.to_string(), *i)).collect())
            .collect()
    }

    #[test]
    fn a_darts_cell_has_its_kept_edges_and_the_concatenation() {
        // Node 0 <- (sep_conv_3x3, c_{k-2}), (none, c_{k-1}); node 1 <- (skip, 0), (max, node 0).
        let g = genes(&[
            ("sep_conv_3x3", 0),
            ("none", 1),
            ("skip_connect", 0),
            ("max_pool_3x3", 2),
        ]);
        let d = cell_diagram("normal", "cell_normal", &g, &[2, 3]);
        assert_eq!(d.nodes.len(), 5);
        assert_eq!(d.nodes[4].kind, NodeKind::Output);
        let labelled: Vec<(usize, usize, &str)> = d
            .edges
            .iter()
            .filter_map(|e| e.label.as_deref().map(|l| (e.from, e.to, l)))
            .collect();
        assert_eq!(
            labelled,
            vec![
                (0, 2, "sep_conv_3x3"),
                (0, 3, "skip_connect"),
                (2, 3, "max_pool_3x3")
            ]
        );
        assert_eq!(d.edges.iter().filter(|e| e.label.is_none()).count(), 2);
    }
}
