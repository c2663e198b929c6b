//! Depthwise (optionally dilated, strided, padded) 2-D convolution: `groups == channels`,
//! weight `[C, 1, k, k]`, no bias, as PyTorch's `nn.Conv2d(C, C, k, stride, padding, dilation,
//! groups=C, bias=False)` used by DARTS' `SepConv` and `DilConv` (quark0/darts `operations.py`).
//!
//! Each (n, c) plane is handled by one task. For every kernel tap the range of valid output
//! columns is precomputed ([`crate::geom::taps`]), so the inner loops are plain row `axpy`s and
//! dot products (contiguous when the stride is 1) that the compiler vectorises. The backward pass
//! produces the input and the weight gradient in one sweep over the planes.
use crate::cpu::{axpy, dispatch_float, dot, par_planes, slice, Float};
use crate::geom::{Tap, Window};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Depthwise 2-D convolution of `x` `[N, C, H, W]` with `weight` `[C, 1, k, k]`.
///
/// Output `[N, C, OH, OW]` with `OH = floor((H + 2p - d(k-1) - 1) / s) + 1` (zero padding).
/// Differentiable with respect to `x` and `weight`; f32 and f64 on CPU.
pub fn depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<Tensor> {
    let dims = x.dims4()?;
    let (wc, one, kh, kw) = weight.dims4()?;
    if wc != dims.1 || one != 1 || kh != kw {
        bail!(
            "depthwise_conv2d: weight must be [C, 1, k, k] with C = {} input channels, got {:?}",
            dims.1,
            weight.dims()
        );
    }
    if x.dtype() != weight.dtype() {
        bail!(
            "depthwise_conv2d: dtype mismatch, x {:?} vs weight {:?}",
            x.dtype(),
            weight.dtype()
        );
    }
    crate::cpu::check_float("depthwise_conv2d", x.dtype())?;
    let win = Window::new(dims, kh, stride, padding, dilation)?;
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, DwConv { win })
}

struct DwConv {
    win: Window,
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        "nas-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let win = &self.win;
        dispatch_float!("depthwise_conv2d", s1, |T| {
            let y = forward::<T>(slice(s1, l1)?, slice(s2, l2)?, win);
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((win.n, win.c, win.oh, win.ow)),
            ))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let both = x.apply_op3_no_bwd(w, &g, &DwConvBwd { win: self.win })?;
        let nx = x.elem_count();
        let gx = both.narrow(0, 0, nx)?.reshape(x.shape())?;
        let gw = both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(gx), Some(gw)))
    }
}

/// Backward of [`DwConv`]: inputs (x, weight, dL/dy), output the flat concatenation
/// `[dL/dx, dL/dweight]`.
struct DwConvBwd {
    win: Window,
}

impl CustomOp3 for DwConvBwd {
    fn name(&self) -> &'static str {
        "nas-depthwise-conv2d-bwd"
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
        dispatch_float!("depthwise_conv2d backward", s1, |T| {
            let out = backward::<T>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?, win);
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}

fn forward<T: Float>(x: &[T], wt: &[T], win: &Window) -> Vec<T> {
    let (rows, cols) = (win.row_taps(), win.col_taps());
    let kk = win.k * win.k;
    let (ip, op) = (win.in_plane(), win.out_plane());
    let mut y = vec![T::ZERO; win.n * win.c * op];
    par_planes(&mut y, op, |p, yp| {
        let c = p % win.c;
        forward_plane(
            &x[p * ip..(p + 1) * ip],
            &wt[c * kk..(c + 1) * kk],
            yp,
            win,
            &rows,
            &cols,
        );
    });
    y
}

/// `y` (zeroed) `+=` the depthwise correlation of one input plane with one `k x k` kernel.
fn forward_plane<T: Float>(
    x: &[T],
    wk: &[T],
    y: &mut [T],
    win: &Window,
    rows: &[Tap],
    cols: &[Tap],
) {
    let (s, w, ow, k) = (win.stride, win.w, win.ow, win.k);
    for (i, rt) in rows.iter().enumerate() {
        for oy in rt.lo..rt.hi {
            let iy = rt.input(oy, s);
            let xr = &x[iy * w..(iy + 1) * w];
            let yr = &mut y[oy * ow..(oy + 1) * ow];
            for (j, ct) in cols.iter().enumerate() {
                if ct.len() == 0 {
                    continue;
                }
                let a = wk[i * k + j];
                let start = ct.input(ct.lo, s);
                let yseg = &mut yr[ct.lo..ct.hi];
                if s == 1 {
                    axpy(yseg, a, &xr[start..start + ct.len()]);
                } else {
                    for (yv, &xv) in yseg.iter_mut().zip(xr[start..].iter().step_by(s)) {
                        *yv += a * xv;
                    }
                }
            }
        }
    }
}

fn backward<T: Float>(x: &[T], wt: &[T], g: &[T], win: &Window) -> Vec<T> {
    let (rows, cols) = (win.row_taps(), win.col_taps());
    let kk = win.k * win.k;
    let (ip, op) = (win.in_plane(), win.out_plane());
    let planes = win.n * win.c;
    let mut out = vec![T::ZERO; planes * ip + win.c * kk];
    let mut partial = vec![T::ZERO; planes * kk];
    {
        let gx = &mut out[..planes * ip];
        let min_len = (4096 / ip.max(1)).max(1);
        gx.par_chunks_mut(ip.max(1))
            .zip(partial.par_chunks_mut(kk))
            .enumerate()
            .with_min_len(min_len)
            .for_each(|(p, (gxp, gwp))| {
                let c = p % win.c;
                backward_plane(
                    &x[p * ip..(p + 1) * ip],
                    &wt[c * kk..(c + 1) * kk],
                    &g[p * op..(p + 1) * op],
                    gxp,
                    gwp,
                    win,
                    &rows,
                    &cols,
                );
            });
    }
    // Reduce the per-plane weight gradients over the batch in f64.
    let gw = &mut out[planes * ip..];
    for c in 0..win.c {
        for t in 0..kk {
            let mut acc = 0f64;
            for n in 0..win.n {
                acc += partial[(n * win.c + c) * kk + t].to_f64();
            }
            gw[c * kk + t] = T::from_f64(acc);
        }
    }
    out
}

/// One plane of the backward pass: `gx` (zeroed) `+=` the transposed convolution of `g`, and
/// `gw[t] += <g, x shifted by tap t>`.
#[allow(clippy::too_many_arguments)]
fn backward_plane<T: Float>(
    x: &[T],
    wk: &[T],
    g: &[T],
    gx: &mut [T],
    gw: &mut [T],
    win: &Window,
    rows: &[Tap],
    cols: &[Tap],
) {
    let (s, w, ow, k) = (win.stride, win.w, win.ow, win.k);
    for (i, rt) in rows.iter().enumerate() {
        for oy in rt.lo..rt.hi {
            let iy = rt.input(oy, s);
            let xr = &x[iy * w..(iy + 1) * w];
            let gxr = &mut gx[iy * w..(iy + 1) * w];
            let gr = &g[oy * ow..(oy + 1) * ow];
            for (j, ct) in cols.iter().enumerate() {
                if ct.len() == 0 {
                    continue;
                }
                let a = wk[i * k + j];
                let start = ct.input(ct.lo, s);
                let gseg = &gr[ct.lo..ct.hi];
                if s == 1 {
                    let len = ct.len();
                    axpy(&mut gxr[start..start + len], a, gseg);
                    gw[i * k + j] += dot(gseg, &xr[start..start + len]);
                } else {
                    let mut acc = T::ZERO;
                    for ((&gv, gxv), &xv) in gseg
                        .iter()
                        .zip(gxr[start..].iter_mut().step_by(s))
                        .zip(xr[start..].iter().step_by(s))
                    {
                        *gxv += a * gv;
                        acc += gv * xv;
                    }
                    gw[i * k + j] += acc;
                }
            }
        }
    }
}
