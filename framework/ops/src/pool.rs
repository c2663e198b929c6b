//! Max and average pooling over each NCHW plane with PyTorch's `MaxPool2d` / `AvgPool2d`
//! semantics in floor mode (`ceil_mode=False`), as DARTS uses them (`max_pool_3x3`,
//! `avg_pool_3x3` with `count_include_pad=False`, quark0/darts `operations.py`).
//!
//! Padding never takes part in a max (it is not a value, only a window offset), and with
//! `count_include_pad = false` the average divides by the number of in-image cells of the window.
//! Like PyTorch, `padding <= kernel / 2` is required, so every window holds an image cell.
use crate::cpu::{dispatch_float, par_planes, slice, Float};
use crate::geom::{Tap, Window};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};

fn window(op: &str, x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Window> {
    if kernel == 0 || stride == 0 {
        bail!("{op}: kernel and stride must be >= 1 (got {kernel}, {stride})");
    }
    if 2 * padding > kernel {
        bail!("{op}: padding {padding} must be at most half the kernel size {kernel}");
    }
    crate::cpu::check_float(op, x.dtype())?;
    Window::new(x.dims4()?, kernel, stride, padding, 1)
}

/// Max pooling of `x` `[N, C, H, W]` with a square `kernel`, `stride` and `padding`.
///
/// Backward sends each output gradient to the first maximal cell of its window in row-major
/// order (PyTorch's argmax rule).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let win = window("max_pool2d", x, kernel, stride, padding)?;
    x.contiguous()?.apply_op1(MaxPool { win })
}

/// Average pooling of `x` `[N, C, H, W]` with a square `kernel`, `stride` and `padding`.
///
/// With `count_include_pad == false` each window is divided by the number of its cells inside
/// the image; with `true` by the number of its cells inside the padded image (PyTorch).
pub fn avg_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    count_include_pad: bool,
) -> Result<Tensor> {
    let win = window("avg_pool2d", x, kernel, stride, padding)?;
    x.contiguous()?.apply_op1(AvgPool {
        win,
        count_include_pad,
    })
}

struct MaxPool {
    win: Window,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "nas-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let win = &self.win;
        dispatch_float!("max_pool2d", s, |T| {
            let x: &[T] = slice(s, l)?;
            let (rows, cols) = (win.row_taps(), win.col_taps());
            let (ip, op) = (win.in_plane(), win.out_plane());
            let mut y = vec![T::NEG_INF; win.n * win.c * op];
            par_planes(&mut y, op, |p, yp| {
                max_plane(&x[p * ip..(p + 1) * ip], yp, win, &rows, &cols);
            });
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((win.n, win.c, win.oh, win.ow)),
            ))
        })
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        let res = res.contiguous()?;
        Ok(Some(x.apply_op3_no_bwd(
            &res,
            &g,
            &MaxPoolBwd { win: self.win },
        )?))
    }
}

fn max_plane<T: Float>(x: &[T], y: &mut [T], win: &Window, rows: &[Tap], cols: &[Tap]) {
    let (s, w, ow) = (win.stride, win.w, win.ow);
    for rt in rows {
        for oy in rt.lo..rt.hi {
            let iy = rt.input(oy, s);
            let xr = &x[iy * w..(iy + 1) * w];
            let yr = &mut y[oy * ow..(oy + 1) * ow];
            for ct in cols {
                if ct.len() == 0 {
                    continue;
                }
                let start = ct.input(ct.lo, s);
                let yseg = &mut yr[ct.lo..ct.hi];
                if s == 1 {
                    for (yv, &xv) in yseg.iter_mut().zip(&xr[start..start + ct.len()]) {
                        *yv = yv.max_nan(xv);
                    }
                } else {
                    for (yv, &xv) in yseg.iter_mut().zip(xr[start..].iter().step_by(s)) {
                        *yv = yv.max_nan(xv);
                    }
                }
            }
        }
    }
}

/// Backward of [`MaxPool`]: inputs (x, y, dL/dy), output dL/dx.
struct MaxPoolBwd {
    win: Window,
}

impl CustomOp3 for MaxPoolBwd {
    fn name(&self) -> &'static str {
        "nas-max-pool2d-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let win = &self.win;
        dispatch_float!("max_pool2d backward", s1, |T| {
            let (x, y, g): (&[T], &[T], &[T]) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
            let (ip, op) = (win.in_plane(), win.out_plane());
            let mut gx = vec![T::ZERO; win.n * win.c * ip];
            par_planes(&mut gx, ip, |p, gxp| {
                max_bwd_plane(
                    &x[p * ip..(p + 1) * ip],
                    &y[p * op..(p + 1) * op],
                    &g[p * op..(p + 1) * op],
                    gxp,
                    win,
                );
            });
            Ok((
                T::to_cpu_storage_owned(gx),
                Shape::from((win.n, win.c, win.h, win.w)),
            ))
        })
    }
}

fn max_bwd_plane<T: Float>(x: &[T], y: &[T], g: &[T], gx: &mut [T], win: &Window) {
    let (s, p, k, h, w, ow) = (
        win.stride as isize,
        win.padding as isize,
        win.k as isize,
        win.h as isize,
        win.w as isize,
        win.ow,
    );
    for (o, (&m, &gv)) in y.iter().zip(g).enumerate() {
        let (oy, ox) = ((o / ow) as isize, (o % ow) as isize);
        let (y0, x0) = (oy * s - p, ox * s - p);
        let (ya, yb) = (y0.max(0), (y0 + k).min(h));
        let (xa, xb) = (x0.max(0), (x0 + k).min(w));
        'window: for iy in ya..yb {
            for ix in xa..xb {
                let idx = (iy * w + ix) as usize;
                let v = x[idx];
                #[allow(clippy::eq_op)]
                if v == m || (m != m && v != v) {
                    gx[idx] += gv;
                    break 'window;
                }
            }
        }
    }
}

struct AvgPool {
    win: Window,
    count_include_pad: bool,
}

impl AvgPool {
    /// Per-axis window sizes used as divisors: `(rows[oy], cols[ox])`.
    fn counts(&self) -> (Vec<usize>, Vec<usize>) {
        let win = &self.win;
        let axis = |len: usize, out: usize| -> Vec<usize> {
            (0..out)
                .map(|o| {
                    let start = (o * win.stride) as isize - win.padding as isize;
                    let end = start + win.k as isize;
                    if self.count_include_pad {
                        let end = end.min((len + win.padding) as isize);
                        (end - start) as usize
                    } else {
                        (end.min(len as isize) - start.max(0)) as usize
                    }
                })
                .collect()
        };
        (axis(win.h, win.oh), axis(win.w, win.ow))
    }

    /// `1 / divisor` for every output cell of a plane.
    fn inv_divisors<T: Float>(&self) -> Vec<T> {
        let (rc, cc) = self.counts();
        let mut inv = Vec::with_capacity(rc.len() * cc.len());
        for &r in &rc {
            for &c in &cc {
                inv.push(T::from_f64(1.0 / (r * c) as f64));
            }
        }
        inv
    }
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "nas-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let win = &self.win;
        dispatch_float!("avg_pool2d", s, |T| {
            let x: &[T] = slice(s, l)?;
            let (rows, cols) = (win.row_taps(), win.col_taps());
            let inv = self.inv_divisors::<T>();
            let (ip, op) = (win.in_plane(), win.out_plane());
            let mut y = vec![T::ZERO; win.n * win.c * op];
            par_planes(&mut y, op, |p, yp| {
                sum_plane(&x[p * ip..(p + 1) * ip], yp, win, &rows, &cols);
                for (yv, &d) in yp.iter_mut().zip(&inv) {
                    *yv *= d;
                }
            });
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((win.n, win.c, win.oh, win.ow)),
            ))
        })
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        Ok(Some(g.apply_op1_no_bwd(&AvgPoolBwd(AvgPool {
            win: self.win,
            count_include_pad: self.count_include_pad,
        }))?))
    }
}

/// `y` (zeroed) `+=` the window sums of one plane.
fn sum_plane<T: Float>(x: &[T], y: &mut [T], win: &Window, rows: &[Tap], cols: &[Tap]) {
    let (s, w, ow) = (win.stride, win.w, win.ow);
    for rt in rows {
        for oy in rt.lo..rt.hi {
            let iy = rt.input(oy, s);
            let xr = &x[iy * w..(iy + 1) * w];
            let yr = &mut y[oy * ow..(oy + 1) * ow];
            for ct in cols {
                if ct.len() == 0 {
                    continue;
                }
                let start = ct.input(ct.lo, s);
                let yseg = &mut yr[ct.lo..ct.hi];
                if s == 1 {
                    for (yv, &xv) in yseg.iter_mut().zip(&xr[start..start + ct.len()]) {
                        *yv += xv;
                    }
                } else {
                    for (yv, &xv) in yseg.iter_mut().zip(xr[start..].iter().step_by(s)) {
                        *yv += xv;
                    }
                }
            }
        }
    }
}

/// Backward of [`AvgPool`]: input dL/dy, output dL/dx.
struct AvgPoolBwd(AvgPool);

impl CustomOp1 for AvgPoolBwd {
    fn name(&self) -> &'static str {
        "nas-avg-pool2d-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let win = &self.0.win;
        dispatch_float!("avg_pool2d backward", s, |T| {
            let g: &[T] = slice(s, l)?;
            let (rows, cols) = (win.row_taps(), win.col_taps());
            let inv = self.0.inv_divisors::<T>();
            let (ip, op) = (win.in_plane(), win.out_plane());
            let (st, w, ow) = (win.stride, win.w, win.ow);
            let mut gx = vec![T::ZERO; win.n * win.c * ip];
            par_planes(&mut gx, ip, |p, gxp| {
                let gs: Vec<T> = g[p * op..(p + 1) * op]
                    .iter()
                    .zip(&inv)
                    .map(|(&a, &b)| a * b)
                    .collect();
                for rt in &rows {
                    for oy in rt.lo..rt.hi {
                        let iy = rt.input(oy, st);
                        let gr = &gs[oy * ow..(oy + 1) * ow];
                        let gxr = &mut gxp[iy * w..(iy + 1) * w];
                        for ct in &cols {
                            if ct.len() == 0 {
                                continue;
                            }
                            let start = ct.input(ct.lo, st);
                            let gseg = &gr[ct.lo..ct.hi];
                            if st == 1 {
                                for (gxv, &gv) in gxr[start..start + ct.len()].iter_mut().zip(gseg)
                                {
                                    *gxv += gv;
                                }
                            } else {
                                for (gxv, &gv) in gxr[start..].iter_mut().step_by(st).zip(gseg) {
                                    *gxv += gv;
                                }
                            }
                        }
                    }
                }
            });
            Ok((
                T::to_cpu_storage_owned(gx),
                Shape::from((win.n, win.c, win.h, win.w)),
            ))
        })
    }
}
