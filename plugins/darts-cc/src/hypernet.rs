//! The hypernetwork `t -> alpha(t)`: per intermediate node, a piecewise-linear interpolation
//! between `K` learned anchor logit matrices (DARTS-CC reference: `PWNet`, one per node of the
//! normal and of the reduction cell, with `K = int(L_max - L_min) + 1` "kernels" and pivots
//! `linspace(0, 1, K)` that are `nn.Parameter`s).
//!
//! For `t` in segment `[p_l, p_r]` (`l = floor(t (K - 1))`, the segment of the evenly spaced
//! grid, as in the reference even when the pivots are trained):
//!
//! `alpha(t) = w A_l + (1 - w) A_r`, `w = (p_r - t) / (p_r - p_l)`.
//!
//! The reference scales `t` by 0.99999 so that `t = 1` falls in the last segment; we clamp
//! the segment index instead (the interpolation weights differ by less than 1e-5 (K - 1)).
use std::collections::BTreeMap;

use nas_core::{NasError, Result, SpaceSpec};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Smallest gap kept between neighbouring pivots when they are trained.
pub const MIN_PIVOT_GAP: f64 = 1e-3;

/// One hypernetwork: the logits of a few decisions (the incoming edges of one node) as a
/// piecewise-linear function of `t`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiecewiseLinear {
    /// The space decisions it produces (its rows), in order.
    pub decisions: Vec<usize>,
    /// Options of each row.
    pub widths: Vec<usize>,
    /// The `K` anchors, flattened: anchor `k` is `anchors[k * width .. (k + 1) * width]`,
    /// rows one after the other (`width = sum(widths)`).
    pub anchors: Vec<f64>,
    /// The `K` pivots, increasing (start: `linspace(0, 1, K)`).
    pub pivots: Vec<f64>,
}

/// Where `t` falls: the two anchors and the weight of the left one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Left anchor.
    pub left: usize,
    /// Right anchor (`left + 1`).
    pub right: usize,
    /// `w = (p_r - t) / (p_r - p_l)`: the weight of the left anchor.
    pub w_left: f64,
}

impl PiecewiseLinear {
    /// A hypernetwork; checks the shapes, `K >= 2` and increasing pivots.
    pub fn new(
        decisions: Vec<usize>,
        widths: Vec<usize>,
        anchors: Vec<f64>,
        pivots: Vec<f64>,
    ) -> Result<Self> {
        let h = PiecewiseLinear {
            decisions,
            widths,
            anchors,
            pivots,
        };
        h.check()?;
        Ok(h)
    }

    /// Checks the invariants (after decoding a saved state, say).
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(NasError::Strategy(format!("darts_cc hypernetwork: {m}")));
        let k = self.pivots.len();
        if k < 2 {
            return bad(format!("needs at least 2 anchors, has {k}"));
        }
        if self.decisions.len() != self.widths.len() || self.widths.contains(&0) {
            return bad("rows and widths disagree".into());
        }
        if self.anchors.len() != k * self.width() {
            return bad(format!(
                "{} anchor values for {k} anchors of width {}",
                self.anchors.len(),
                self.width()
            ));
        }
        if !self
            .anchors
            .iter()
            .chain(&self.pivots)
            .all(|v| v.is_finite())
        {
            return bad("non-finite anchor or pivot".into());
        }
        if self.pivots.windows(2).any(|p| p[1] <= p[0]) {
            return bad(format!("pivots must increase: {:?}", self.pivots));
        }
        Ok(())
    }

    /// Number of anchors `K`.
    pub fn k(&self) -> usize {
        self.pivots.len()
    }

    /// Values per anchor (all rows).
    pub fn width(&self) -> usize {
        self.widths.iter().sum()
    }

    /// Anchor `k`, flattened.
    pub fn anchor(&self, k: usize) -> &[f64] {
        let w = self.width();
        &self.anchors[k * w..(k + 1) * w]
    }

    /// The segment of `t` (clamped to `[0, 1]`).
    pub fn segment(&self, t: f64) -> Result<Segment> {
        if !t.is_finite() {
            return Err(NasError::Strategy(format!(
                "darts_cc: t = {t} is not finite"
            )));
        }
        let t = t.clamp(0.0, 1.0);
        let k = self.k();
        let left = ((t * (k - 1) as f64).floor() as usize).min(k - 2);
        let right = left + 1;
        let (pl, pr) = (self.pivots[left], self.pivots[right]);
        Ok(Segment {
            left,
            right,
            w_left: (pr - t) / (pr - pl),
        })
    }

    /// `alpha(t)`, one row per decision.
    pub fn eval(&self, t: f64) -> Result<Vec<Vec<f64>>> {
        let s = self.segment(t)?;
        let (a, b) = (self.anchor(s.left), self.anchor(s.right));
        let flat: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(a, b)| s.w_left * a + (1.0 - s.w_left) * b)
            .collect();
        Ok(split(&flat, &self.widths))
    }

    /// Chain rule: from `dL/d alpha(t)` (one row per decision) to the gradients of the
    /// anchors (flattened like [`PiecewiseLinear::anchors`]) and of the pivots:
    /// `dL/dA_l = w g`, `dL/dA_r = (1 - w) g`, and with `c = <g, A_l - A_r>`,
    /// `dL/dp_l = c (p_r - t) / (p_r - p_l)^2`, `dL/dp_r = c (t - p_l) / (p_r - p_l)^2`.
    pub fn backward(&self, t: f64, g: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<f64>)> {
        if g.len() != self.widths.len() || g.iter().zip(&self.widths).any(|(r, &w)| r.len() != w) {
            return Err(NasError::Strategy(
                "darts_cc: gradient rows do not fit the hypernetwork".into(),
            ));
        }
        let s = self.segment(t)?;
        let tc = t.clamp(0.0, 1.0);
        let w = self.width();
        let flat: Vec<f64> = g.iter().flatten().copied().collect();
        let mut da = vec![0.0; self.anchors.len()];
        for (j, &gj) in flat.iter().enumerate() {
            da[s.left * w + j] += s.w_left * gj;
            da[s.right * w + j] += (1.0 - s.w_left) * gj;
        }
        let c: f64 = flat
            .iter()
            .zip(self.anchor(s.left).iter().zip(self.anchor(s.right)))
            .map(|(g, (a, b))| g * (a - b))
            .sum();
        let (pl, pr) = (self.pivots[s.left], self.pivots[s.right]);
        let d2 = (pr - pl) * (pr - pl);
        let mut dp = vec![0.0; self.k()];
        dp[s.left] = c * (pr - tc) / d2;
        dp[s.right] = c * (tc - pl) / d2;
        Ok((da, dp))
    }

    /// Keeps trained pivots increasing: each at least [`MIN_PIVOT_GAP`] above the previous.
    pub fn project_pivots(&mut self) {
        for k in 1..self.pivots.len() {
            let lo = self.pivots[k - 1] + MIN_PIVOT_GAP;
            // NaN also fails `>=` and is replaced.
            if self.pivots[k].is_nan() || self.pivots[k] < lo {
                self.pivots[k] = lo;
            }
        }
    }
}

fn split(flat: &[f64], widths: &[usize]) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(widths.len());
    let mut at = 0;
    for &w in widths {
        out.push(flat[at..at + w].to_vec());
        at += w;
    }
    out
}

/// Gradients of every hypernetwork's anchors and pivots.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperGradient {
    /// Per hypernetwork, flattened like its anchors.
    pub anchors: Vec<Vec<f64>>,
    /// Per hypernetwork, one per pivot.
    pub pivots: Vec<Vec<f64>>,
}

/// Every hypernetwork of a space: one per node (decisions that share `Decision::node`),
/// and one per decision for decisions without a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypernets {
    /// The hypernetworks.
    pub nets: Vec<PiecewiseLinear>,
    /// Options per decision of the space.
    pub shape: Vec<usize>,
}

impl Hypernets {
    /// Hypernetworks for `spec` with `k` anchors each, pivots `linspace(0, 1, k)`, anchors
    /// drawn from `U(-b, b)`. `bound = None` uses the reference's initialisation
    /// (`kaiming_uniform_(a = sqrt(5))` on a `[1, rows * ops]` matrix, i.e.
    /// `b = 1 / sqrt(rows * ops)`).
    pub fn init(
        spec: &SpaceSpec,
        k: usize,
        bound: Option<f64>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if k < 2 {
            return Err(NasError::InvalidParams {
                component: "strategy darts_cc".into(),
                path: "anchors".into(),
                message: format!("needs at least 2 anchors, got {k}"),
            });
        }
        // Group decisions by node, in order of first appearance.
        let mut order: Vec<Vec<usize>> = Vec::new();
        let mut by_node: BTreeMap<usize, usize> = BTreeMap::new();
        for (d, dec) in spec.decisions.iter().enumerate() {
            match dec.node {
                Some(n) => match by_node.get(&n) {
                    Some(&g) => order[g].push(d),
                    None => {
                        by_node.insert(n, order.len());
                        order.push(vec![d]);
                    }
                },
                None => order.push(vec![d]),
            }
        }
        let shape = spec.shape();
        let pivots: Vec<f64> = (0..k).map(|i| i as f64 / (k - 1) as f64).collect();
        let nets = order
            .into_iter()
            .map(|decisions| {
                let widths: Vec<usize> = decisions.iter().map(|&d| shape[d]).collect();
                let width: usize = widths.iter().sum();
                let b = bound.unwrap_or(1.0 / (width as f64).sqrt());
                let anchors = (0..k * width)
                    .map(|_| {
                        if b > 0.0 {
                            rng.random_range(-b..b)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                PiecewiseLinear::new(decisions, widths, anchors, pivots.clone())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Hypernets { nets, shape })
    }

    /// Checks every hypernetwork and that together they cover each decision once.
    pub fn check(&self) -> Result<()> {
        let mut seen = vec![false; self.shape.len()];
        for n in &self.nets {
            n.check()?;
            for (&d, &w) in n.decisions.iter().zip(&n.widths) {
                if d >= seen.len() || seen[d] || self.shape[d] != w {
                    return Err(NasError::Strategy(format!(
                        "darts_cc hypernetworks do not fit the space (decision {d})"
                    )));
                }
                seen[d] = true;
            }
        }
        if seen.contains(&false) {
            return Err(NasError::Strategy(
                "darts_cc hypernetworks leave a decision uncovered".into(),
            ));
        }
        Ok(())
    }

    /// `alpha(t)` for every decision of the space, in the space's order.
    pub fn logits(&self, t: f64) -> Result<Vec<Vec<f64>>> {
        let mut out = vec![Vec::new(); self.shape.len()];
        for n in &self.nets {
            for (d, row) in n.decisions.iter().zip(n.eval(t)?) {
                out[*d] = row;
            }
        }
        Ok(out)
    }

    /// Chain rule from `dL/d alpha(t)` (space order) to every anchor and pivot.
    pub fn backward(&self, t: f64, dlogits: &[Vec<f64>]) -> Result<HyperGradient> {
        let mut g = HyperGradient {
            anchors: Vec::with_capacity(self.nets.len()),
            pivots: Vec::with_capacity(self.nets.len()),
        };
        for n in &self.nets {
            let rows: Vec<Vec<f64>> = n
                .decisions
                .iter()
                .map(|&d| dlogits.get(d).cloned().unwrap_or_default())
                .collect();
            let (a, p) = n.backward(t, &rows)?;
            g.anchors.push(a);
            g.pivots.push(p);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One node with two edges of two options, K = 3, pivots 0, 0.5, 1.
    fn net() -> PiecewiseLinear {
        PiecewiseLinear::new(
            vec![0, 1],
            vec![2, 2],
            vec![
                1.0, 2.0, 3.0, 4.0, // anchor 0
                -1.0, 0.0, 1.0, 0.0, // anchor 1
                5.0, 5.0, -3.0, 2.0, // anchor 2
            ],
            vec![0.0, 0.5, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn interpolation_matches_hand_computed_values() {
        let h = net();
        // t = 0: anchor 0 exactly; t = 0.5: anchor 1; t = 1: anchor 2.
        assert_eq!(h.eval(0.0).unwrap(), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(h.eval(0.5).unwrap(), vec![vec![-1.0, 0.0], vec![1.0, 0.0]]);
        assert_eq!(h.eval(1.0).unwrap(), vec![vec![5.0, 5.0], vec![-3.0, 2.0]]);
        // t = 0.125 is a quarter into segment [0, 0.5]: w = (0.5 - 0.125) / 0.5 = 0.75,
        // alpha = 0.75 A0 + 0.25 A1 = (0.5, 1.5, 2.5, 3.0).
        let a = h.eval(0.125).unwrap();
        let want = [[0.5, 1.5], [2.5, 3.0]];
        for (r, w) in a.iter().zip(want) {
            for (x, y) in r.iter().zip(w) {
                assert!((x - y).abs() < 1e-12, "{a:?}");
            }
        }
        // t = 0.9 in [0.5, 1]: w = 0.2, alpha = 0.2 A1 + 0.8 A2 = (3.8, 4.0, -2.2, 1.6).
        let a = h.eval(0.9).unwrap();
        let want = [[3.8, 4.0], [-2.2, 1.6]];
        for (r, w) in a.iter().zip(want) {
            for (x, y) in r.iter().zip(w) {
                assert!((x - y).abs() < 1e-12, "{a:?}");
            }
        }
        // Out of range t is clamped; non-finite t is an error.
        assert_eq!(h.eval(1.7).unwrap(), h.eval(1.0).unwrap());
        assert!(h.eval(f64::NAN).is_err());
    }

    #[test]
    fn moved_pivots_change_the_weights_but_not_the_segment() {
        let mut h = net();
        h.pivots = vec![0.0, 0.25, 1.0];
        // t = 0.4 is in grid segment [0, 0.5] -> anchors 0 and 1 with pivots 0 and 0.25:
        // w = (0.25 - 0.4) / 0.25 = -0.6 (extrapolation, as the reference does).
        let s = h.segment(0.4).unwrap();
        assert_eq!((s.left, s.right), (0, 1));
        assert!((s.w_left + 0.6).abs() < 1e-12);
        let a = h.eval(0.4).unwrap();
        // -0.6 * 1 + 1.6 * (-1) = -2.2
        assert!((a[0][0] + 2.2).abs() < 1e-12);
    }

    #[test]
    fn backward_matches_central_differences() {
        let h = net();
        let g = vec![vec![0.3, -1.2], vec![0.7, 2.0]];
        let f = |h: &PiecewiseLinear, t: f64| -> f64 {
            h.eval(t)
                .unwrap()
                .iter()
                .flatten()
                .zip(g.iter().flatten())
                .map(|(a, g)| a * g)
                .sum()
        };
        for t in [0.1, 0.3, 0.77] {
            let (da, dp) = h.backward(t, &g).unwrap();
            let e = 1e-6;
            for (i, &want) in da.iter().enumerate() {
                let (mut p, mut m) = (h.clone(), h.clone());
                p.anchors[i] += e;
                m.anchors[i] -= e;
                let fd = (f(&p, t) - f(&m, t)) / (2.0 * e);
                assert!((fd - want).abs() < 1e-8, "anchor {i} t {t}: {fd} vs {want}");
            }
            for (i, &want) in dp.iter().enumerate() {
                let (mut p, mut m) = (h.clone(), h.clone());
                p.pivots[i] += e;
                m.pivots[i] -= e;
                let fd = (f(&p, t) - f(&m, t)) / (2.0 * e);
                assert!((fd - want).abs() < 1e-6, "pivot {i} t {t}: {fd} vs {want}");
            }
        }
    }

    #[test]
    fn pivots_stay_increasing_and_bad_shapes_are_rejected() {
        let mut h = net();
        h.pivots = vec![0.0, 0.6, 0.55];
        h.project_pivots();
        assert!((h.pivots[2] - (0.6 + MIN_PIVOT_GAP)).abs() < 1e-12);
        assert!(PiecewiseLinear::new(vec![0], vec![2], vec![0.0; 4], vec![0.0]).is_err());
        assert!(PiecewiseLinear::new(vec![0], vec![2], vec![0.0; 3], vec![0.0, 1.0]).is_err());
        assert!(PiecewiseLinear::new(vec![0], vec![2], vec![0.0; 4], vec![1.0, 0.0]).is_err());
    }
}
