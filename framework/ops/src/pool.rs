//! Max and average pooling over each NCHW plane with PyTorch's `MaxPool2d` / `AvgPool2d`
//! semantics in floor mode (`ceil_mode=False`), as DARTS uses them (`max_pool_3x3`,
//! `avg_pool_3x3` with `count_include_pad=False`, quark0/darts `operations.py`).
//!
//! Padding never takes part in a max (it is not a value, only a window offset), and with
//! `count_include_pad = false` the average divides by the number of in-image cells of the window.
//! Like PyTorch, `padding <= kernel / 2` is required, so every window holds an image cell.
use crate::cpu::{dispatch_float, slice, Float};
use crate::fresh::{par_chunks_zeroed_with, par_planes_zeroed, zeros, Split};
use crate::geom::{Tap, Window};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

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
    if win.k * win.k > u32::MAX as usize {
        bail!("max_pool2d: kernel {kernel} is too large");
    }
    x.contiguous()?.apply_op1(MaxPool {
        win,
        argmax: Arc::new(Mutex::new(None)),
    })
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

/// Max pooling; the forward records, per output, which window tap won (row-major tap index
/// `i * k + j`), and the backward scatters through those indices.
struct MaxPool {
    win: Window,
    argmax: Arc<Mutex<Option<Vec<u32>>>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "nas-max-pool2d"
    }

    crate::host_fallback::cuda_via_device!(|op, s, l| crate::device::max_pool(s, l, &op.win));

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("max_pool2d", s, |T| {
            let (y, idx) = max_pool_forward::<T>(slice(s, l)?, win);
            *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = Some(idx);
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((win.n, win.c, win.oh, win.ow)),
            ))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        if !x.device().is_cpu() {
            let gx = g
                .contiguous()?
                .apply_op2_no_bwd(&x.contiguous()?, &MaxPoolBwdRecompute { win: self.win })?;
            return Ok(Some(gx.reshape(x.shape())?));
        }
        let idx = self
            .argmax
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(idx) = idx else {
            bail!("max_pool2d backward: the forward recorded no argmax");
        };
        let g = g.contiguous()?;
        let gx = g.apply_op1_no_bwd(&MaxPoolBwd { win: self.win, idx })?;
        Ok(Some(gx.reshape(x.shape())?))
    }
}

/// Max pooling of the contiguous NCHW `x`: the outputs and, per output, the winning tap.
pub(crate) fn max_pool_forward<T: Float>(x: &[T], win: &Window) -> (Vec<T>, Vec<u32>) {
    let (rows, cols) = (win.row_taps(), win.col_taps());
    let (ip, op) = (win.in_plane(), win.out_plane());
    let len = win.n * win.c * op;
    let first = |taps: &[Tap], out: usize| -> Vec<u32> {
        (0..out)
            .map(|o| taps.iter().position(|t| t.lo <= o && o < t.hi).unwrap_or(0) as u32)
            .collect()
    };
    let (fr, fc) = (first(&rows, win.oh), first(&cols, win.ow));
    let init: Vec<u32> = fr
        .iter()
        .flat_map(|&i| fc.iter().map(move |&j| i * win.k as u32 + j))
        .collect();
    let mut idx: Vec<u32> = zeros(len);
    let split = Split::planes(len, op);
    let y = par_chunks_zeroed_with(
        split,
        &mut idx,
        op,
        || (Vec::new(), Vec::new()),
        |(padded, padded_f32), p, yp, ixp| {
            ixp.copy_from_slice(&init);
            let xp = &x[p * ip..(p + 1) * ip];
            if win.stride == 1 && win.dilation == 1 {
                #[cfg(target_arch = "x86_64")]
                if crate::cpu::avx2_fma() {
                    if let Some((xf, yf)) = T::as_f32(xp, yp) {
                        // SAFETY: the CPU supports AVX2 (checked at run time above).
                        unsafe { max_plane_stride1_f32_avx2(xf, yf, ixp, win, padded_f32) };
                        return;
                    }
                }
                max_plane_stride1(xp, yp, ixp, win, padded);
            } else {
                yp.fill(T::NEG_INF);
                max_plane(xp, yp, ixp, win, &rows, &cols);
            }
        },
    );
    (y, idx)
}

/// Outputs per block of [`max_plane_stride1`], kept in registers across the window's taps.
const MAX_LANES: usize = 16;

/// [`max_plane`] for stride 1 (the normal cells' `max_pool_3x3`): the plane is copied into
/// `padded` with a border of -inf ([`pad_plane`]), then each block
/// of `MAX_LANES` adjacent outputs visits all `k * k` taps in row-major order with its maxima
/// and winning taps in registers, and is stored once. A padding cell is -inf, which never
/// wins (a later tap wins only if strictly greater, or NaN), so maxima and taps are those of
/// [`max_plane`], which visits only the in-image taps: the same values, bit for bit, and the
/// same first-maximum rule. `idx` comes in holding each output's first in-image tap (an all
/// -inf window keeps it).
fn max_plane_stride1<T: Float>(
    x: &[T],
    y: &mut [T],
    idx: &mut [u32],
    win: &Window,
    padded: &mut Vec<T>,
) {
    pad_plane(x, win, padded);
    let wp = win.w + 2 * win.padding + MAX_LANES;
    let (k, oh, ow) = (win.k, win.oh, win.ow);
    for oy in 0..oh {
        for ox in (0..ow).step_by(MAX_LANES) {
            let n = MAX_LANES.min(ow - ox);
            let out = oy * ow + ox;
            let mut best = [T::NEG_INF; MAX_LANES];
            let mut arg = [0u32; MAX_LANES];
            arg[..n].copy_from_slice(&idx[out..out + n]);
            for i in 0..k {
                let row = &padded[(oy + i) * wp + ox..][..MAX_LANES + k - 1];
                for j in 0..k {
                    let t = (i * k + j) as u32;
                    let xs = &row[j..j + MAX_LANES];
                    for l in 0..MAX_LANES {
                        let xv = xs[l];
                        let take = (xv > best[l]) | xv.is_nan();
                        best[l] = if take { xv } else { best[l] };
                        arg[l] = if take { t } else { arg[l] };
                    }
                }
            }
            y[out..out + n].copy_from_slice(&best[..n]);
            idx[out..out + n].copy_from_slice(&arg[..n]);
        }
    }
}

/// The plane `x` into `padded`: `-inf` around it (`padding` rows and columns) and `MAX_LANES`
/// more `-inf` columns on the right of every row, rows `w + 2 * padding + MAX_LANES` long.
fn pad_plane<T: Float>(x: &[T], win: &Window, padded: &mut Vec<T>) {
    let (pad, h, w) = (win.padding, win.h, win.w);
    let wp = w + 2 * pad + MAX_LANES;
    padded.clear();
    padded.resize((h + 2 * pad) * wp, T::NEG_INF);
    for (r, xr) in x.chunks_exact(w.max(1)).take(h).enumerate() {
        padded[(r + pad) * wp + pad..][..w].copy_from_slice(xr);
    }
}

/// [`max_plane_stride1`] for `f32` with AVX2 intrinsics: two vectors of eight maxima and
/// eight winning taps per block, compared (`>` or unordered, PyTorch's rule) and blended per
/// tap. The same values and taps as the portable loop, which the compiler does not vectorise
/// well (it mixes the `f32` and `u32` lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_plane_stride1_f32_avx2(
    x: &[f32],
    y: &mut [f32],
    idx: &mut [u32],
    win: &Window,
    padded: &mut Vec<f32>,
) {
    use std::arch::x86_64::*;
    pad_plane(x, win, padded);
    let wp = win.w + 2 * win.padding + MAX_LANES;
    let (k, oh, ow) = (win.k, win.oh, win.ow);
    for oy in 0..oh {
        for ox in (0..ow).step_by(MAX_LANES) {
            let n = MAX_LANES.min(ow - ox);
            let out = oy * ow + ox;
            let mut arg = [0u32; MAX_LANES];
            arg[..n].copy_from_slice(&idx[out..out + n]);
            let mut b = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
            // SAFETY: `arg` holds 16 u32, two unaligned 256-bit loads.
            let mut a = unsafe {
                [
                    _mm256_castsi256_ps(_mm256_loadu_si256(arg.as_ptr() as *const __m256i)),
                    _mm256_castsi256_ps(_mm256_loadu_si256(arg.as_ptr().add(8) as *const __m256i)),
                ]
            };
            for i in 0..k {
                let row = &padded[(oy + i) * wp + ox..][..MAX_LANES + k - 1];
                for j in 0..k {
                    let t = _mm256_castsi256_ps(_mm256_set1_epi32((i * k + j) as i32));
                    for h in 0..2 {
                        // SAFETY: `row` holds `MAX_LANES + k - 1` values, and `j + 8 * h + 8`
                        // is at most that.
                        let xv = unsafe { _mm256_loadu_ps(row.as_ptr().add(j + 8 * h)) };
                        let take = _mm256_or_ps(
                            _mm256_cmp_ps::<_CMP_GT_OQ>(xv, b[h]),
                            _mm256_cmp_ps::<_CMP_UNORD_Q>(xv, xv),
                        );
                        b[h] = _mm256_blendv_ps(b[h], xv, take);
                        a[h] = _mm256_blendv_ps(a[h], t, take);
                    }
                }
            }
            let mut best = [0f32; MAX_LANES];
            // SAFETY: `best` and `arg` hold 16 values each, two unaligned 256-bit stores.
            unsafe {
                _mm256_storeu_ps(best.as_mut_ptr(), b[0]);
                _mm256_storeu_ps(best.as_mut_ptr().add(8), b[1]);
                _mm256_storeu_ps(arg.as_mut_ptr() as *mut f32, a[0]);
                _mm256_storeu_ps(arg.as_mut_ptr().add(8) as *mut f32, a[1]);
            }
            y[out..out + n].copy_from_slice(&best[..n]);
            idx[out..out + n].copy_from_slice(&arg[..n]);
        }
    }
}

/// `y` (-inf) and `idx` (each output's first in-image tap) become the window maxima and the
/// winning taps of one plane. Taps are visited in row-major order per output and a later tap
/// wins only if strictly greater (or NaN): PyTorch's first-maximum rule (an all -inf window
/// keeps its first in-image cell, as in PyTorch).
fn max_plane<T: Float>(
    x: &[T],
    y: &mut [T],
    idx: &mut [u32],
    win: &Window,
    rows: &[Tap],
    cols: &[Tap],
) {
    let (s, w, ow, k) = (win.stride, win.w, win.ow, win.k);
    let mut scratch: Vec<T> = Vec::with_capacity(ow);
    for (i, rt) in rows.iter().enumerate() {
        for oy in rt.lo..rt.hi {
            let iy = rt.input(oy, s);
            let xr = &x[iy * w..(iy + 1) * w];
            let yr = &mut y[oy * ow..(oy + 1) * ow];
            let ir = &mut idx[oy * ow..(oy + 1) * ow];
            for (j, ct) in cols.iter().enumerate() {
                if ct.len() == 0 {
                    continue;
                }
                let t = (i * k + j) as u32;
                let start = ct.input(ct.lo, s);
                let yseg = &mut yr[ct.lo..ct.hi];
                let iseg = &mut ir[ct.lo..ct.hi];
                if s == 1 {
                    select_max(yseg, iseg, &xr[start..start + ct.len()], t);
                } else {
                    // Gather the strided inputs first so the select loop stays contiguous.
                    scratch.clear();
                    scratch.extend(xr[start..].iter().step_by(s).take(ct.len()));
                    select_max(yseg, iseg, &scratch, t);
                }
            }
        }
    }
}

/// `y[l], idx[l] = x[l], t` where `x[l] > y[l]` (or is NaN), as branch-free selects: random
/// data makes a branch unpredictable.
#[inline(always)]
fn select_max<T: Float>(y: &mut [T], idx: &mut [u32], x: &[T], t: u32) {
    let n = y.len().min(idx.len()).min(x.len());
    let (y, idx, x) = (&mut y[..n], &mut idx[..n], &x[..n]);
    for l in 0..n {
        let (xv, yv) = (x[l], y[l]);
        let take = (xv > yv) | xv.is_nan();
        let m = (take as u32).wrapping_neg();
        idx[l] = (t & m) | (idx[l] & !m);
        y[l] = if take { xv } else { yv };
    }
}

/// Backward of [`MaxPool`]: input dL/dy, output dL/dx (flat), through the recorded taps.
struct MaxPoolBwd {
    win: Window,
    idx: Vec<u32>,
}

impl CustomOp1 for MaxPoolBwd {
    fn name(&self) -> &'static str {
        "nas-max-pool2d-bwd"
    }

    crate::host_fallback::cuda_via_host!(1);

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("max_pool2d backward", s, |T| {
            let gx = max_pool_backward::<T>(slice(s, l)?, &self.idx, &self.win);
            let len = gx.len();
            Ok((T::to_cpu_storage_owned(gx), Shape::from(len)))
        })
    }
}

/// Backward of [`MaxPool`] off the CPU: inputs (dL/dy, x), output dL/dx (flat). The winners
/// are found again from `x` (the same tie rule), so no index buffer has to live on the host
/// between the forward and the backward of a device tensor.
struct MaxPoolBwdRecompute {
    win: Window,
}

impl CustomOp2 for MaxPoolBwdRecompute {
    fn name(&self) -> &'static str {
        "nas-max-pool2d-bwd-recompute"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2| crate::device::max_pool_bwd(
        s1, l1, s2, l2, &op.win
    ));

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("max_pool2d backward", s1, |T| {
            let (_, idx) = max_pool_forward::<T>(slice(s2, l2)?, &self.win);
            let gx = max_pool_backward::<T>(slice(s1, l1)?, &idx, &self.win);
            let len = gx.len();
            Ok((T::to_cpu_storage_owned(gx), Shape::from(len)))
        })
    }
}

/// The input gradient of max pooling: each output gradient goes to its recorded tap `idx`.
pub(crate) fn max_pool_backward<T: Float>(g: &[T], idx: &[u32], win: &Window) -> Vec<T> {
    let mut gx = zeros(win.n * win.c * win.in_plane());
    max_pool_backward_into(&mut gx, g, idx, win);
    gx
}

/// [`max_pool_backward`] added into `gx`.
pub(crate) fn max_pool_backward_into<T: Float>(gx: &mut [T], g: &[T], idx: &[u32], win: &Window) {
    max_pool_backward_from(gx, &PoolGrad::Given(g), idx, win);
}

/// The gradient at a pool's output, plane by plane: given, or made by the backward of a
/// batch norm that follows the pool, one plane at a time into a worker's scratch, so that
/// the batch-sized gradient between the two is never written (a mixed edge's pool + BN
/// options, `crate::edge`).
pub(crate) enum PoolGrad<'a, T> {
    /// The whole gradient, `[N, C, OH, OW]`.
    Given(&'a [T]),
    /// The batch norm's backward: its coefficients, its output gradient and its input (the
    /// pool's output), each `[N, C, OH, OW]`.
    BatchNorm {
        /// [`crate::bn::BnBwd::coefficients`] over the batch.
        coef: &'a crate::bn::BnCoefficients<T>,
        /// The gradient at the batch norm's output.
        g: &'a [T],
        /// The batch norm's input.
        x: &'a [T],
    },
}

impl<T: Float> PoolGrad<'_, T> {
    /// The gradient of output plane `p` (`op` values), made in `scratch` if needed.
    fn plane<'s>(&'s self, p: usize, op: usize, scratch: &'s mut [T]) -> &'s [T] {
        let r = p * op..(p + 1) * op;
        match self {
            PoolGrad::Given(g) => &g[r],
            PoolGrad::BatchNorm { coef, g, x } => {
                coef.apply_plane(p, &g[r.clone()], &x[r], scratch);
                scratch
            }
        }
    }
}

/// [`max_pool_backward_into`] with the output gradient from `g`.
pub(crate) fn max_pool_backward_from<T: Float>(
    gx: &mut [T],
    g: &PoolGrad<'_, T>,
    idx: &[u32],
    win: &Window,
) {
    let k = win.k;
    // Input offset of each tap relative to (oy * s, ox * s).
    let (pad, d) = (win.padding as isize, win.dilation as isize);
    let dy: Vec<isize> = (0..k * k).map(|t| (t / k) as isize * d - pad).collect();
    let dx: Vec<isize> = (0..k * k).map(|t| (t % k) as isize * d - pad).collect();
    let (ip, op) = (win.in_plane(), win.out_plane());
    let (st, w, ow) = (win.stride as isize, win.w as isize, win.ow);
    par_planes_init(gx, ip, op, |p, gxp, scratch| {
        let gp = g.plane(p, op, scratch);
        let ixp = &idx[p * op..(p + 1) * op];
        for (oy, (gr, ir)) in gp.chunks_exact(ow).zip(ixp.chunks_exact(ow)).enumerate() {
            let base_y = oy as isize * st;
            for (ox, (&gv, &t)) in gr.iter().zip(ir).enumerate() {
                let t = t as usize;
                let iy = base_y + dy[t];
                let ix = ox as isize * st + dx[t];
                gxp[(iy * w + ix) as usize] += gv;
            }
        }
    });
}

/// [`crate::cpu::par_planes`] with a scratch plane of `scratch_len` values per rayon task.
fn par_planes_init<T: Float>(
    out: &mut [T],
    plane: usize,
    scratch_len: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    if plane == 0 {
        return;
    }
    out.par_chunks_mut(plane)
        .enumerate()
        .with_min_len(crate::cpu::planes_per_task(plane))
        .for_each_init(
            || vec![T::ZERO; scratch_len],
            |scratch, (i, p)| f(i, p, scratch),
        );
}

pub(crate) struct AvgPool {
    pub win: Window,
    pub count_include_pad: bool,
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

    /// Average pooling of the contiguous NCHW `x`.
    pub(crate) fn forward<T: Float>(&self, x: &[T]) -> Vec<T> {
        let win = &self.win;
        let (rows, cols) = (win.row_taps(), win.col_taps());
        let inv = self.inv_divisors::<T>();
        let (ip, op) = (win.in_plane(), win.out_plane());
        par_planes_zeroed(win.n * win.c * op, op, |p, yp| {
            sum_plane(&x[p * ip..(p + 1) * ip], yp, win, &rows, &cols);
            for (yv, &d) in yp.iter_mut().zip(&inv) {
                *yv *= d;
            }
        })
    }

    /// The input gradient of average pooling for the output gradient `g`.
    pub(crate) fn backward<T: Float>(&self, g: &[T]) -> Vec<T> {
        let win = &self.win;
        let mut gx = zeros(win.n * win.c * win.in_plane());
        self.backward_into(&mut gx, g);
        gx
    }

    /// [`AvgPool::backward`] added into `gx`.
    pub(crate) fn backward_into<T: Float>(&self, gx: &mut [T], g: &[T]) {
        self.backward_from(gx, &PoolGrad::Given(g));
    }

    /// [`AvgPool::backward_into`] with the output gradient from `g`.
    pub(crate) fn backward_from<T: Float>(&self, gx: &mut [T], g: &PoolGrad<'_, T>) {
        let win = &self.win;
        let (rows, cols) = (win.row_taps(), win.col_taps());
        let inv = self.inv_divisors::<T>();
        let (ip, op) = (win.in_plane(), win.out_plane());
        let (st, w, ow) = (win.stride, win.w, win.ow);
        par_planes_init(gx, ip, 2 * op, |p, gxp, scratch| {
            let (made, gs) = scratch.split_at_mut(op);
            for ((s, &a), &b) in gs.iter_mut().zip(g.plane(p, op, made)).zip(&inv) {
                *s = a * b;
            }
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
                            for (gxv, &gv) in gxr[start..start + ct.len()].iter_mut().zip(gseg) {
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

    crate::host_fallback::cuda_via_device!(|op, s, l| crate::device::avg_pool(
        s,
        l,
        &op.win,
        op.count_include_pad,
        false
    ));

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("avg_pool2d", s, |T| {
            let y = self.forward::<T>(slice(s, l)?);
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

    crate::host_fallback::cuda_via_device!(|op, s, l| crate::device::avg_pool(
        s,
        l,
        &op.0.win,
        op.0.count_include_pad,
        true
    ));

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.0.win;
        dispatch_float!("avg_pool2d backward", s, |T| {
            let gx = self.0.backward::<T>(slice(s, l)?);
            Ok((
                T::to_cpu_storage_owned(gx),
                Shape::from((win.n, win.c, win.h, win.w)),
            ))
        })
    }
}
