//! Plain, obviously-correct reference implementations of every operation, forward and
//! backward, as direct loops over `Vec<f64>` in NCHW layout. They exist to check the fast
//! kernels (tests compare the two on random shapes); they are slow by design.
//!
//! Conventions: `dims` is `[N, C, H, W]`; conv weights are `[O, I / groups, kh, kw]`; backward
//! functions take the upstream gradient `g` (same shape as the output) and return the
//! vector-Jacobian products.

/// Output length along one axis: `floor((len + 2p - d(k-1) - 1) / s) + 1`, or `None` when the
/// window does not fit.
pub fn out_len(len: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    if len + 2 * p < span || s == 0 {
        return None;
    }
    Some((len + 2 * p - span) / s + 1)
}

fn at(d: [usize; 4], n: usize, c: usize, h: usize, w: usize) -> usize {
    ((n * d[1] + c) * d[2] + h) * d[3] + w
}

/// Input coordinate of output `o`, tap `t`: `o*s + t*d - p`, if inside `0..len`.
fn coord(o: usize, t: usize, s: usize, p: usize, d: usize, len: usize) -> Option<usize> {
    let v = (o * s + t * d) as isize - p as isize;
    (v >= 0 && (v as usize) < len).then_some(v as usize)
}

/// Geometry of a convolution call.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation.
    pub dilation: usize,
    /// Groups (1: dense; C: depthwise).
    pub groups: usize,
}

/// Grouped, strided, dilated, padded 2-D convolution (no bias). Returns the output and its dims.
pub fn conv2d_forward(
    x: &[f64],
    xd: [usize; 4],
    wt: &[f64],
    wd: [usize; 4],
    cs: ConvSpec,
) -> (Vec<f64>, [usize; 4]) {
    let [n, ci, h, w] = xd;
    let [co, cig, kh, kw] = wd;
    assert_eq!(ci, cig * cs.groups, "reference conv2d: channel mismatch");
    let oh = out_len(h, kh, cs.stride, cs.padding, cs.dilation).expect("window does not fit");
    let ow = out_len(w, kw, cs.stride, cs.padding, cs.dilation).expect("window does not fit");
    let yd = [n, co, oh, ow];
    let cog = co / cs.groups;
    let mut y = vec![0.0; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let grp = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for i in 0..cig {
                        let c = grp * cig + i;
                        for ky in 0..kh {
                            let Some(iy) = coord(oy, ky, cs.stride, cs.padding, cs.dilation, h)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = coord(ox, kx, cs.stride, cs.padding, cs.dilation, w)
                                else {
                                    continue;
                                };
                                acc += wt[at(wd, o, i, ky, kx)] * x[at(xd, b, c, iy, ix)];
                            }
                        }
                    }
                    y[at(yd, b, o, oy, ox)] = acc;
                }
            }
        }
    }
    (y, yd)
}

/// Backward of [`conv2d_forward`]: `(dL/dx, dL/dweight)`.
pub fn conv2d_backward(
    x: &[f64],
    xd: [usize; 4],
    wt: &[f64],
    wd: [usize; 4],
    g: &[f64],
    cs: ConvSpec,
) -> (Vec<f64>, Vec<f64>) {
    let [n, _, h, w] = xd;
    let [co, cig, kh, kw] = wd;
    let oh = out_len(h, kh, cs.stride, cs.padding, cs.dilation).expect("window does not fit");
    let ow = out_len(w, kw, cs.stride, cs.padding, cs.dilation).expect("window does not fit");
    let yd = [n, co, oh, ow];
    let cog = co / cs.groups;
    let mut gx = vec![0.0; x.len()];
    let mut gw = vec![0.0; wt.len()];
    for b in 0..n {
        for o in 0..co {
            let grp = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let gv = g[at(yd, b, o, oy, ox)];
                    for i in 0..cig {
                        let c = grp * cig + i;
                        for ky in 0..kh {
                            let Some(iy) = coord(oy, ky, cs.stride, cs.padding, cs.dilation, h)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) = coord(ox, kx, cs.stride, cs.padding, cs.dilation, w)
                                else {
                                    continue;
                                };
                                gx[at(xd, b, c, iy, ix)] += wt[at(wd, o, i, ky, kx)] * gv;
                                gw[at(wd, o, i, ky, kx)] += x[at(xd, b, c, iy, ix)] * gv;
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw)
}

/// One output cell of a pooling op: its flat index, the input cells (flat indices, row-major
/// window order) of its window inside the image, and the number of window cells inside the
/// *padded* image.
struct PoolWindow {
    out: usize,
    cells: Vec<usize>,
    padded: usize,
}

fn pool_windows(xd: [usize; 4], k: usize, s: usize, p: usize) -> (Vec<PoolWindow>, [usize; 4]) {
    let [n, c, h, w] = xd;
    let oh = out_len(h, k, s, p, 1).expect("window does not fit");
    let ow = out_len(w, k, s, p, 1).expect("window does not fit");
    let yd = [n, c, oh, ow];
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut cells = Vec::new();
                    let mut padded = 0;
                    for ky in 0..k {
                        for kx in 0..k {
                            let py = (oy * s + ky) as isize - p as isize;
                            let px = (ox * s + kx) as isize - p as isize;
                            if py < (h + p) as isize && px < (w + p) as isize {
                                padded += 1;
                            }
                            if let (Some(iy), Some(ix)) =
                                (coord(oy, ky, s, p, 1, h), coord(ox, kx, s, p, 1, w))
                            {
                                cells.push(at(xd, b, ch, iy, ix));
                            }
                        }
                    }
                    out.push(PoolWindow {
                        out: at(yd, b, ch, oy, ox),
                        cells,
                        padded,
                    });
                }
            }
        }
    }
    (out, yd)
}

/// Max pooling (padding never wins): the output and its dims.
pub fn max_pool2d_forward(
    x: &[f64],
    xd: [usize; 4],
    k: usize,
    s: usize,
    p: usize,
) -> (Vec<f64>, [usize; 4]) {
    let (wins, yd) = pool_windows(xd, k, s, p);
    let mut y = vec![0.0; yd.iter().product()];
    for PoolWindow { out: o, cells, .. } in wins {
        y[o] = cells
            .iter()
            .map(|&i| x[i])
            .fold(f64::NEG_INFINITY, f64::max);
    }
    (y, yd)
}

/// Backward of [`max_pool2d_forward`]: each gradient goes to the first maximal cell of its
/// window in row-major order.
pub fn max_pool2d_backward(
    x: &[f64],
    xd: [usize; 4],
    g: &[f64],
    k: usize,
    s: usize,
    p: usize,
) -> Vec<f64> {
    let (wins, _) = pool_windows(xd, k, s, p);
    let mut gx = vec![0.0; x.len()];
    for PoolWindow { out: o, cells, .. } in wins {
        let mut best = cells[0];
        for &i in &cells {
            if x[i] > x[best] {
                best = i;
            }
        }
        gx[best] += g[o];
    }
    gx
}

/// Average pooling: divides by the in-image cells of each window, or by the cells inside the
/// padded image when `count_include_pad`.
pub fn avg_pool2d_forward(
    x: &[f64],
    xd: [usize; 4],
    k: usize,
    s: usize,
    p: usize,
    count_include_pad: bool,
) -> (Vec<f64>, [usize; 4]) {
    let (wins, yd) = pool_windows(xd, k, s, p);
    let mut y = vec![0.0; yd.iter().product()];
    for PoolWindow {
        out: o,
        cells,
        padded,
    } in wins
    {
        let div = if count_include_pad {
            padded
        } else {
            cells.len()
        } as f64;
        y[o] = cells.iter().map(|&i| x[i]).sum::<f64>() / div;
    }
    (y, yd)
}

/// Backward of [`avg_pool2d_forward`].
pub fn avg_pool2d_backward(
    xd: [usize; 4],
    g: &[f64],
    k: usize,
    s: usize,
    p: usize,
    count_include_pad: bool,
) -> Vec<f64> {
    let (wins, _) = pool_windows(xd, k, s, p);
    let mut gx = vec![0.0; xd.iter().product()];
    for PoolWindow {
        out: o,
        cells,
        padded,
    } in wins
    {
        let div = if count_include_pad {
            padded
        } else {
            cells.len()
        } as f64;
        for &i in &cells {
            gx[i] += g[o] / div;
        }
    }
    gx
}

/// Per-channel mean and biased variance over (N, H, W).
pub fn channel_stats(x: &[f64], xd: [usize; 4]) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = xd;
    let m = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let vals = || (0..n).flat_map(move |b| (0..h * w).map(move |i| (b, i)));
        mean[ch] = vals()
            .map(|(b, i)| x[(b * c + ch) * h * w + i])
            .sum::<f64>()
            / m;
        var[ch] = vals()
            .map(|(b, i)| (x[(b * c + ch) * h * w + i] - mean[ch]).powi(2))
            .sum::<f64>()
            / m;
    }
    (mean, var)
}

/// Batch norm with given per-channel statistics: `(x - mean) / sqrt(var + eps) * gamma + beta`.
pub fn batch_norm_forward(
    x: &[f64],
    xd: [usize; 4],
    mean: &[f64],
    var: &[f64],
    affine: Option<(&[f64], &[f64])>,
    eps: f64,
) -> Vec<f64> {
    let [_, c, h, w] = xd;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / (h * w)) % c;
            let xh = (v - mean[ch]) / (var[ch] + eps).sqrt();
            match affine {
                Some((ga, be)) => xh * ga[ch] + be[ch],
                None => xh,
            }
        })
        .collect()
}

/// Backward of training-mode batch norm (statistics from the batch), by the textbook chain rule
/// through mean and variance: `(dL/dx, dL/dgamma, dL/dbeta)`.
pub fn batch_norm_train_backward(
    x: &[f64],
    xd: [usize; 4],
    gamma: Option<&[f64]>,
    g: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = xd;
    let m = (n * h * w) as f64;
    let (mean, var) = channel_stats(x, xd);
    let ch_of = |i: usize| (i / (h * w)) % c;
    let ga = |ch: usize| gamma.map_or(1.0, |g| g[ch]);
    let mut dvar = vec![0.0; c];
    let mut dmean = vec![0.0; c];
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    for (i, &v) in x.iter().enumerate() {
        let ch = ch_of(i);
        let is = 1.0 / (var[ch] + eps).sqrt();
        let dxh = g[i] * ga(ch);
        dvar[ch] += dxh * (v - mean[ch]) * -0.5 * is.powi(3);
        dmean[ch] += -dxh * is;
        dgamma[ch] += g[i] * (v - mean[ch]) * is;
        dbeta[ch] += g[i];
    }
    // var also depends on mean, but d var / d mean = -2/m * sum(x - mean) = 0.
    let gx = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = ch_of(i);
            let is = 1.0 / (var[ch] + eps).sqrt();
            g[i] * ga(ch) * is + dvar[ch] * 2.0 * (v - mean[ch]) / m + dmean[ch] / m
        })
        .collect();
    (gx, dgamma, dbeta)
}

/// Backward of batch norm with fixed (running) statistics: `(dL/dx, dL/dgamma, dL/dbeta)`.
pub fn batch_norm_eval_backward(
    x: &[f64],
    xd: [usize; 4],
    mean: &[f64],
    var: &[f64],
    gamma: Option<&[f64]>,
    g: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [_, c, h, w] = xd;
    let mut dgamma = vec![0.0; c];
    let mut dbeta = vec![0.0; c];
    let mut gx = vec![0.0; x.len()];
    for (i, &v) in x.iter().enumerate() {
        let ch = (i / (h * w)) % c;
        let is = 1.0 / (var[ch] + eps).sqrt();
        gx[i] = g[i] * gamma.map_or(1.0, |g| g[ch]) * is;
        dgamma[ch] += g[i] * (v - mean[ch]) * is;
        dbeta[ch] += g[i];
    }
    (gx, dgamma, dbeta)
}

/// `max(x, 0)`.
pub fn relu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect()
}

/// Backward of [`relu_forward`]: `g` where `x > 0`, else 0.
pub fn relu_backward(x: &[f64], g: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(g)
        .map(|(&v, &gv)| if v > 0.0 { gv } else { 0.0 })
        .collect()
}

/// Mean of each plane: `[N, C, H, W] -> [N * C]`.
pub fn global_avg_pool_forward(x: &[f64], xd: [usize; 4]) -> Vec<f64> {
    let hw = xd[2] * xd[3];
    x.chunks(hw)
        .map(|p| p.iter().sum::<f64>() / hw as f64)
        .collect()
}

/// Backward of [`global_avg_pool_forward`].
pub fn global_avg_pool_backward(xd: [usize; 4], g: &[f64]) -> Vec<f64> {
    let hw = xd[2] * xd[3];
    g.iter()
        .flat_map(|&v| std::iter::repeat_n(v / hw as f64, hw))
        .collect()
}

/// `sum_k w[k] * ys[k]` (shared, `per_example = None`, `w.len() == K`) or, with
/// `per_example = Some(N)`, `y[n] = sum_k w[n * K + k] * ys[k][n]` over N equal blocks.
pub fn weighted_sum_forward(ys: &[Vec<f64>], w: &[f64], per_example: Option<usize>) -> Vec<f64> {
    let len = ys[0].len();
    let k = ys.len();
    (0..len)
        .map(|e| {
            (0..k)
                .map(|j| {
                    let wj = match per_example {
                        Some(n) => w[(e / (len / n)) * k + j],
                        None => w[j],
                    };
                    wj * ys[j][e]
                })
                .sum()
        })
        .collect()
}

/// Backward of [`weighted_sum_forward`]: `(dL/dys[k] for each k, dL/dw)`.
pub fn weighted_sum_backward(
    ys: &[Vec<f64>],
    w: &[f64],
    per_example: Option<usize>,
    g: &[f64],
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let len = ys[0].len();
    let k = ys.len();
    let mut gys = vec![vec![0.0; len]; k];
    let mut gw = vec![0.0; w.len()];
    for e in 0..len {
        for j in 0..k {
            let wi = match per_example {
                Some(n) => (e / (len / n)) * k + j,
                None => j,
            };
            gys[j][e] = w[wi] * g[e];
            gw[wi] += g[e] * ys[j][e];
        }
    }
    (gys, gw)
}
