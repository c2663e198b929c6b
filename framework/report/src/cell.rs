//! Diagrams of derived cells, like the DARTS paper's figures (Liu et al. 2019, figures 4
//! and 5): the cell inputs on the left, the intermediate nodes in the middle, the output on
//! the right, and one arrow per kept edge labelled with its operation. The layout is ours
//! (no external graph-layout program): each node sits in the column of its longest path from
//! an input, nodes of a column are spread evenly, and an edge that skips columns is bent so
//! that it passes beside the nodes in between.
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::plot::{DrawResult, Figure, FAMILY};

pub use nas_core::diagram::{DiagramEdge as CellEdge, DiagramNode as CellNode, NodeKind};
use nas_core::CellDiagram;

/// A cell as a graph. Node indices are topologically ordered (edges go from lower to
/// higher indices), as in both the DARTS genotype and the NB201 cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellGraph {
    /// Title above the diagram.
    pub title: String,
    /// The nodes.
    pub nodes: Vec<CellNode>,
    /// The edges.
    pub edges: Vec<CellEdge>,
}

impl CellGraph {
    /// The graph of a space's cell diagram ([`nas_core::SpaceRules::cell_diagrams`]).
    pub fn from_diagram(d: &CellDiagram) -> CellGraph {
        CellGraph {
            title: d.title.clone(),
            nodes: d.nodes.clone(),
            edges: d.edges.clone(),
        }
    }

    /// The column of each node: inputs 0; another node 1 + the largest column of its
    /// sources (1 without any); the output one right of every other node.
    pub fn columns(&self) -> Vec<usize> {
        let mut col = vec![0usize; self.nodes.len()];
        for v in 0..self.nodes.len() {
            if self.nodes[v].kind == NodeKind::Input {
                continue;
            }
            let from_edges = self
                .edges
                .iter()
                .filter(|e| e.to == v && e.from < v)
                .map(|e| col[e.from] + 1)
                .max()
                .unwrap_or(1);
            col[v] = if self.nodes[v].kind == NodeKind::Output {
                let others = (0..v).map(|u| col[u] + 1).max().unwrap_or(1);
                from_edges.max(others)
            } else {
                from_edges
            };
        }
        col
    }
}

const NODE_W: i32 = 84;
const NODE_H: i32 = 40;
const COL_W: i32 = 230;
const ROW_H: i32 = 120;
const MARGIN: i32 = 70;

fn node_fill(kind: NodeKind) -> RGBColor {
    match kind {
        NodeKind::Input => RGBColor(198, 239, 206),
        NodeKind::Inner => RGBColor(189, 215, 238),
        NodeKind::Output => RGBColor(255, 235, 156),
    }
}

impl CellGraph {
    fn rows_per_column(&self) -> Vec<usize> {
        let cols = self.columns();
        let n = cols.iter().copied().max().unwrap_or(0) + 1;
        let mut rows = vec![0; n];
        for c in cols {
            rows[c] += 1;
        }
        rows
    }

    /// Pixel centre of every node.
    pub fn positions(&self) -> Vec<(i32, i32)> {
        let cols = self.columns();
        let rows = self.rows_per_column();
        let height = self.size().1 as i32;
        let mut seen = vec![0usize; rows.len()];
        cols.iter()
            .map(|&c| {
                let k = seen[c];
                seen[c] += 1;
                let span = (rows[c] as i32 - 1) * ROW_H;
                let top = (height + 30 - span) / 2;
                (
                    MARGIN + NODE_W / 2 + c as i32 * COL_W,
                    top + k as i32 * ROW_H,
                )
            })
            .collect()
    }
}

fn inside(p: (f64, f64), c: (i32, i32)) -> bool {
    (p.0 - c.0 as f64).abs() <= (NODE_W / 2 + 3) as f64
        && (p.1 - c.1 as f64).abs() <= (NODE_H / 2 + 3) as f64
}

/// A quadratic Bézier curve from `a` to `b` bent by `bend` pixels to its left.
fn curve(a: (i32, i32), b: (i32, i32), bend: f64) -> Vec<(f64, f64)> {
    let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
    let (dx, dy) = (bx - ax, by - ay);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (cx, cy) = (
        (ax + bx) / 2.0 - dy / len * bend,
        (ay + by) / 2.0 + dx / len * bend,
    );
    let n = 24;
    (0..=n)
        .map(|i| {
            let t = i as f64 / n as f64;
            let u = 1.0 - t;
            (
                u * u * ax + 2.0 * u * t * cx + t * t * bx,
                u * u * ay + 2.0 * u * t * cy + t * t * by,
            )
        })
        .collect()
}

/// The part of the polyline `pts` outside the boxes of the nodes at `a` and `b`; the cut
/// points on the crossing segments are found by bisection.
fn clip(pts: &[(f64, f64)], a: (i32, i32), b: (i32, i32)) -> Vec<(f64, f64)> {
    let cross = |p: (f64, f64), q: (f64, f64), c: (i32, i32)| {
        // `p` inside the box at `c`, `q` outside.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..20 {
            let m = (lo + hi) / 2.0;
            if inside((p.0 + (q.0 - p.0) * m, p.1 + (q.1 - p.1) * m), c) {
                lo = m;
            } else {
                hi = m;
            }
        }
        (p.0 + (q.0 - p.0) * hi, p.1 + (q.1 - p.1) * hi)
    };
    let (Some(first), Some(last)) = (
        pts.iter().position(|&p| !inside(p, a)),
        pts.iter().rposition(|&p| !inside(p, b)),
    ) else {
        return Vec::new();
    };
    if last < first {
        return Vec::new();
    }
    let mut out = Vec::new();
    if first > 0 {
        out.push(cross(pts[first - 1], pts[first], a));
    }
    out.extend_from_slice(&pts[first..=last]);
    if last + 1 < pts.len() {
        out.push(cross(pts[last + 1], pts[last], b));
    }
    out
}

/// The point at fraction `f` of a polyline's length.
fn point_at(pts: &[(f64, f64)], f: f64) -> (f64, f64) {
    let seg =
        |i: usize| ((pts[i + 1].0 - pts[i].0).powi(2) + (pts[i + 1].1 - pts[i].1).powi(2)).sqrt();
    let total: f64 = (0..pts.len() - 1).map(seg).sum();
    let mut left = total * f;
    for i in 0..pts.len() - 1 {
        let l = seg(i);
        if l >= left && l > 0.0 {
            let t = left / l;
            return (
                pts[i].0 + (pts[i + 1].0 - pts[i].0) * t,
                pts[i].1 + (pts[i + 1].1 - pts[i].1) * t,
            );
        }
        left -= l;
    }
    pts[pts.len() - 1]
}

/// A label as placed: its text, centre and half extents in pixels.
type PlacedLabel = (String, (i32, i32), (i32, i32));

impl Figure for CellGraph {
    fn size(&self) -> (u32, u32) {
        let rows = self.rows_per_column();
        let w = (2 * MARGIN + NODE_W + (rows.len() as i32 - 1).max(0) * COL_W)
            .max(self.title.chars().count() as i32 * 11 + 40);
        let h = 110 + (rows.iter().copied().max().unwrap_or(1) as i32 - 1).max(0) * ROW_H + 60;
        (w.max(420) as u32, h.max(240) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (w, _) = self.size();
        let title = TextStyle::from((FAMILY, 20).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw_text(&self.title, &title, (w as i32 / 2, 10))?;
        let pos = self.positions();
        let cols = self.columns();
        let mid_y = pos.iter().map(|p| p.1).sum::<i32>() as f64 / pos.len().max(1) as f64;
        let label_style = TextStyle::from((FAMILY, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let mut labels: Vec<PlacedLabel> = Vec::new();
        let mut alternate = 0usize;
        // Straight edges into the output end at points spread over its left side.
        let into_out: Vec<usize> = (0..self.edges.len())
            .filter(|&i| {
                let e = &self.edges[i];
                self.nodes[e.to].kind == NodeKind::Output && cols[e.to] == cols[e.from] + 1
            })
            .collect();
        for (ei, e) in self.edges.iter().enumerate() {
            let (a, mut b) = (pos[e.from], pos[e.to]);
            if let Some(k) = into_out.iter().position(|&i| i == ei) {
                if into_out.len() > 1 {
                    let spread = (NODE_H - 14) as f64;
                    let off = -spread / 2.0 + spread * k as f64 / (into_out.len() - 1) as f64;
                    b = (b.0, b.1 + off.round() as i32);
                }
            }
            let skipped = cols[e.to].saturating_sub(cols[e.from]).saturating_sub(1) as f64;
            // Bend edges that jump columns (away from the middle), and edges within a column.
            let mut bend = if skipped > 0.0 || cols[e.to] == cols[e.from] {
                38.0 + 22.0 * skipped
            } else {
                0.0
            };
            let mean_y = (a.1 + b.1) as f64 / 2.0;
            let going_right = b.0 >= a.0;
            if a.1 == b.1 && (mean_y - mid_y).abs() < 1.0 {
                // On the middle row: alternate sides, so that arcs over the same nodes part.
                if alternate % 2 == 1 {
                    bend = -bend;
                }
                alternate += 1;
            } else if (mean_y > mid_y) == going_right {
                // A positive bend is to the left of the direction of travel (up when going
                // right): bend away from the middle.
                bend = -bend;
            }
            let mut pts = clip(&curve(a, b, bend), pos[e.from], b);
            if pts.len() < 2 {
                continue;
            }
            if bend == 0.0 {
                // A straight edge: its two ends draw cleaner than many short segments.
                pts = vec![pts[0], pts[pts.len() - 1]];
            }
            let path: Vec<(i32, i32)> = pts
                .iter()
                .map(|&(x, y)| (x.round() as i32, y.round() as i32))
                .collect();
            root.draw(&PathElement::new(path, BLACK.mix(0.8).stroke_width(2)))?;
            // Arrowhead at the end, along the last segment.
            let tip = pts[pts.len() - 1];
            let back = pts[pts.len() - 2];
            let (dx, dy) = (tip.0 - back.0, tip.1 - back.1);
            let l = (dx * dx + dy * dy).sqrt().max(1e-6);
            let (ux, uy) = (dx / l, dy / l);
            let p = |s: f64, n: f64| {
                (
                    (tip.0 - ux * s - uy * n).round() as i32,
                    (tip.1 - uy * s + ux * n).round() as i32,
                )
            };
            root.draw(&Polygon::new(
                vec![
                    (tip.0.round() as i32, tip.1.round() as i32),
                    p(11.0, 5.0),
                    p(11.0, -5.0),
                ],
                BLACK.mix(0.8).filled(),
            ))?;
            if let Some(text) = &e.label {
                // The label at the curve's middle (by arc length), or, where that box would
                // cover an earlier label (two edges crossing at their middles), further along.
                let (tw, th) = root.estimate_text_size(text, &label_style)?;
                let (hw, hh) = (tw as i32 / 2 + 4, th as i32 / 2 + 2);
                let overlaps = |x: i32, y: i32| {
                    labels.iter().any(|(_, (lx, ly), (lw, lh))| {
                        (x - lx).abs() < hw + lw && (y - ly).abs() < hh + lh
                    })
                };
                let at = [0.5, 0.32, 0.68, 0.22, 0.78]
                    .iter()
                    .map(|&f| point_at(&pts, f))
                    .map(|m| (m.0.round() as i32, m.1.round() as i32))
                    .find(|&(x, y)| !overlaps(x, y))
                    .unwrap_or_else(|| {
                        let m = point_at(&pts, 0.5);
                        (m.0.round() as i32, m.1.round() as i32)
                    });
                labels.push((text.clone(), at, (hw, hh)));
            }
        }
        // Labels after every edge, on a white box, so that no line crosses their text.
        for (text, (x, y), (hw, hh)) in &labels {
            root.draw(&Rectangle::new(
                [(x - hw, y - hh), (x + hw, y + hh)],
                WHITE.mix(0.9).filled(),
            ))?;
            root.draw_text(text, &label_style, (*x, *y))?;
        }
        let node_style = TextStyle::from((FAMILY, 16).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        for (n, &(x, y)) in self.nodes.iter().zip(&pos) {
            let rect = [
                (x - NODE_W / 2, y - NODE_H / 2),
                (x + NODE_W / 2, y + NODE_H / 2),
            ];
            root.draw(&Rectangle::new(rect, node_fill(n.kind).filled()))?;
            root.draw(&Rectangle::new(rect, BLACK.stroke_width(1)))?;
            root.draw_text(&n.label, &node_style, (x, y))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genes(v: &[(&str, usize)]) -> Vec<Vec<(String, usize)>> {
        v.chunks(2)
            .map(|c| c.iter().map(|(o, j)| (o.to_string(), *j)).collect())
            .collect()
    }

    #[test]
    fn darts_cell_has_its_edges_and_layered_columns() {
        // DARTS_V2 normal cell (quark0/darts genotypes.py).
        let g = genes(&[
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ]);
        let c = CellGraph::from_diagram(&nas_space_darts::diagram::cell_diagram(
            "normal",
            "cell_normal",
            &g,
            &[2, 3, 4, 5],
        ));
        assert_eq!(c.nodes.len(), 7);
        // 8 op edges + 4 concatenation edges.
        assert_eq!(c.edges.len(), 12);
        assert_eq!(c.edges.iter().filter(|e| e.label.is_none()).count(), 4);
        // Nodes 0-2 read only the inputs (column 1); node 3 reads node 0 (column 2);
        // the output is right of everything (column 3).
        assert_eq!(c.columns(), vec![0, 0, 1, 1, 1, 2, 3]);
        let p = c.positions();
        assert!(p[6].0 > p[5].0 && p[5].0 > p[2].0 && p[2].0 > p[0].0);
        assert_ne!(p[2].1, p[3].1);
    }

    #[test]
    fn nb201_cell_drops_none_edges() {
        use nas_core::SpaceRules;
        let space = nas_space_nb201::Nb201Space::from_params(
            &serde_json::Value::Null,
            nas_registry::data_shape(None),
        )
        .unwrap();
        let arch = space
            .parse_arch(
                "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|",
            )
            .unwrap();
        let diagrams = space.cell_diagrams(&arch);
        assert_eq!(diagrams.len(), 1);
        let c = CellGraph::from_diagram(&diagrams[0]);
        assert_eq!(c.edges.len(), 4);
        assert_eq!(c.columns(), vec![0, 1, 2, 3]);
        assert_eq!(c.nodes[3].kind, NodeKind::Output);
    }
}
