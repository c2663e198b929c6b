//! Dense and grouped 2-D convolution. The pointwise (1x1, no padding) case, which DARTS uses after
//! every depthwise convolution and in `FactorizedReduce`/`ReLUConvBN`, is one custom op doing a
//! GEMM per example ([`crate::conv1x1`]): one graph node instead of candle's
//! reshape/broadcast/matmul chain, each of whose nodes costs a full-size gradient accumulation
//! in candle's backward. Other kernels (and grouped convolutions that are not depthwise) unfold
//! the input with [`Im2col`] (`[N, I*k*k, OH*OW]`) and multiply by the weight reshaped to
//! `[O, I*k*k]` (per group) through candle's matmul. (candle 0.11.1's
//! own conv2d backward fails on non-square inputs whose height and width round differently
//! under the stride, so it is not used.)
use crate::conv1x1::Conv1x1;
use crate::cpu::{dispatch_float, par_planes, slice, Float};
use crate::geom::Window;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// Dense 2-D convolution (`groups = 1`, no bias) of `x` `[N, I, H, W]` with `weight` `[O, I, kh, kw]`.
///
/// 1x1 kernels without padding (any stride) run as a GEMM; everything else goes to candle's conv2d.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, ci, _, _) = x.dims4()?;
    let (co, wi, kh, kw) = weight.dims4()?;
    if wi != ci {
        bail!(
            "conv2d: weight {:?} does not match {ci} input channels",
            weight.dims()
        );
    }
    if stride == 0 {
        bail!("conv2d: stride must be >= 1");
    }
    if x.dtype() != weight.dtype() {
        bail!(
            "conv2d: dtype mismatch, x {:?} vs weight {:?}",
            x.dtype(),
            weight.dtype()
        );
    }
    if kh == 1 && kw == 1 && padding == 0 {
        crate::cpu::check_float("conv2d", x.dtype())?;
        let (n, _, h, w) = x.dims4()?;
        let op = Conv1x1 {
            n,
            ci,
            co,
            h,
            w,
            stride,
        };
        x.contiguous()?.apply_op2(&weight.contiguous()?, op)
    } else {
        unfolded_conv(x, weight, stride, padding, 1)
    }
}

/// Grouped 2-D convolution (no bias) of `x` `[N, I, H, W]` with `weight` `[O, I/groups, k, k]`.
///
/// `groups == 1` is [`conv2d`]; the depthwise case (`groups == I == O`) is
/// [`crate::depthwise_conv2d`]; other group counts unfold the input (im2col) and multiply per group.
pub fn grouped_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (_, ci, _, _) = x.dims4()?;
    let (co, wi, kh, kw) = weight.dims4()?;
    if groups == 0 || ci % groups != 0 || co % groups != 0 || wi * groups != ci {
        bail!(
            "grouped_conv2d: {ci} input channels, weight {:?} and groups {groups} do not fit",
            weight.dims()
        );
    }
    if groups == 1 {
        conv2d(x, weight, stride, padding)
    } else if groups == ci && co == ci && kh == kw {
        crate::depthwise_conv2d(x, weight, stride, padding, 1)
    } else {
        unfolded_conv(x, weight, stride, padding, groups)
    }
}

/// Convolution as im2col + (batched, per group) matmul.
fn unfolded_conv(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (n, ci, h, w) = x.dims4()?;
    let (co, cig, kh, kw) = weight.dims4()?;
    if kh != kw {
        bail!("conv2d: only square kernels are supported, got {kh}x{kw}");
    }
    crate::cpu::check_float("conv2d", x.dtype())?;
    let win = Window::new((n, ci, h, w), kh, stride, padding, 1)?;
    if !x.device().is_cpu() {
        return crate::direct_conv::direct_conv2d(x, weight, stride, padding, groups);
    }
    let (oh, ow) = (win.oh, win.ow);
    let kk = kh * kw;
    let cols = x.contiguous()?.apply_op1(Im2col { win })?; // [N, I*k*k, OH*OW]
    let y = if groups == 1 {
        let (k, l) = (cig * kk, oh * ow);
        let w = weight.reshape((co, k))?;
        if co * k > l * (k + co) {
            // Few output positions (DARTS' auxiliary head: a 2x2 convolution of a 2x2 input,
            // 768 x 512 weights): broadcasting the weight over the batch would copy it N times
            // and make its gradient N copies summed (48 MiB each at batch 32). One matmul of
            // the batch's columns by the weight instead: [N*L, K] x [K, O].
            let cols = cols.transpose(1, 2)?.reshape((n * l, k))?;
            let y = cols.matmul(&w.t()?)?.reshape((n, l, co))?;
            y.transpose(1, 2)?.contiguous()?
        } else {
            w.broadcast_matmul(&cols)?
        }
    } else {
        let cols = cols.reshape((n, groups, cig * kk, oh * ow))?;
        let wg = weight.reshape((groups, co / groups, cig * kk))?;
        wg.broadcast_matmul(&cols)?
    };
    y.reshape((n, co, oh, ow))
}

/// Unfolds every `k x k` window of `x` `[N, C, H, W]` into a column: output `[N, C*k*k, OH*OW]`,
/// row `(c*k + i)*k + j` holding tap `(i, j)` of channel `c` (zero where the window is padding).
struct Im2col {
    win: Window,
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "nas-im2col"
    }

    crate::host_fallback::cuda_via_host!(1);

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("im2col", s, |T| {
            let x: &[T] = slice(s, l)?;
            let (rows, cols) = (win.row_taps(), win.col_taps());
            let (ip, op, kk, st) = (win.in_plane(), win.out_plane(), win.k * win.k, win.stride);
            let mut out = vec![T::ZERO; win.n * win.c * kk * op];
            par_planes(&mut out, kk * op, |p, dst| {
                let xp = &x[p * ip..(p + 1) * ip];
                for (i, rt) in rows.iter().enumerate() {
                    for (j, ct) in cols.iter().enumerate() {
                        let d = &mut dst[(i * win.k + j) * op..(i * win.k + j + 1) * op];
                        for oy in rt.lo..rt.hi {
                            if ct.len() == 0 {
                                continue;
                            }
                            let xr = &xp[rt.input(oy, st) * win.w..][..win.w];
                            let dr = &mut d[oy * win.ow + ct.lo..oy * win.ow + ct.hi];
                            let start = ct.input(ct.lo, st);
                            for (dv, &xv) in dr.iter_mut().zip(xr[start..].iter().step_by(st)) {
                                *dv = xv;
                            }
                        }
                    }
                }
            });
            Ok((
                T::to_cpu_storage_owned(out),
                Shape::from((win.n, win.c * kk, op)),
            ))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            g.contiguous()?
                .apply_op1_no_bwd(&Col2im { win: self.win })?
                .reshape(x.shape())?,
        ))
    }
}

/// Backward of [`Im2col`]: sums each column entry back into its input cell.
struct Col2im {
    win: Window,
}

impl CustomOp1 for Col2im {
    fn name(&self) -> &'static str {
        "nas-col2im"
    }

    crate::host_fallback::cuda_via_host!(1);

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("col2im", s, |T| {
            let g: &[T] = slice(s, l)?;
            let (rows, cols) = (win.row_taps(), win.col_taps());
            let (ip, op, kk, st) = (win.in_plane(), win.out_plane(), win.k * win.k, win.stride);
            let mut gx = vec![T::ZERO; win.n * win.c * ip];
            par_planes(&mut gx, ip, |p, gxp| {
                let src = &g[p * kk * op..(p + 1) * kk * op];
                for (i, rt) in rows.iter().enumerate() {
                    for (j, ct) in cols.iter().enumerate() {
                        let sr = &src[(i * win.k + j) * op..(i * win.k + j + 1) * op];
                        for oy in rt.lo..rt.hi {
                            if ct.len() == 0 {
                                continue;
                            }
                            let gr = &sr[oy * win.ow + ct.lo..oy * win.ow + ct.hi];
                            let start = ct.input(ct.lo, st);
                            let gxr = &mut gxp[rt.input(oy, st) * win.w..][..win.w];
                            for (d, &v) in gxr[start..].iter_mut().step_by(st).zip(gr) {
                                *d += v;
                            }
                        }
                    }
                }
            });
            Ok((T::to_cpu_storage_owned(gx), Shape::from(win.n * win.c * ip)))
        })
    }
}
