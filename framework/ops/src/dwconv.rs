//! Depthwise (optionally dilated, strided, padded) 2-D convolution: `groups == channels`,
//! weight `[C, 1, k, k]`, no bias, as PyTorch's `nn.Conv2d(C, C, k, stride, padding, dilation,
//! groups=C, bias=False)` used by DARTS' `SepConv` and `DilConv` (quark0/darts `operations.py`).
//!
//! Each (n, c) plane is handled by one rayon task, which first copies the plane into a
//! zero-padded buffer whose columns are split into `stride` phases ([`Phased`]), so that every
//! tap reads contiguous memory and no bounds test is left in the inner loops. The forward
//! ([`corr`]) computes 8 or 16 adjacent outputs at a time with all `k*k` taps accumulated in
//! registers. The backward produces the input and the weight gradient of a plane in one task:
//! for stride 1 the input gradient is the same correlation applied to the padded upstream
//! gradient with the flipped kernel, and the weight gradient is a dot product per tap; for
//! stride > 1 (small outputs) a direct scatter over precomputed tap ranges ([`backward_plane`])
//! is faster. The two hot loops are compiled twice, portable and AVX2 + FMA, chosen at run time.
use crate::cpu::{dispatch_float, dot, slice, Float};
use crate::fresh::{par_chunks_zeroed, par_chunks_zeroed_with, Split};
use crate::geom::{Tap, Window};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

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
    depthwise(x, weight, stride, padding, dilation, false)
}

/// `depthwise_conv2d(relu(x), ...)` in one op: the ReLU is applied to each input plane as the
/// convolution reads it, and its mask to the input gradient, so neither the rectified copy
/// nor its gradient is ever a tensor (the `ReLU -> depthwise conv` opening of DARTS' `SepConv`
/// and `DilConv`). Same values and gradients as the two ops, bit for bit; inside
/// [`crate::with_relu_probe`] the input is recorded as [`crate::relu`] records it.
pub fn relu_depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<Tensor> {
    crate::pointwise::probe_relu_input(x);
    depthwise(x, weight, stride, padding, dilation, true)
}

fn depthwise(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    dilation: usize,
    relu: bool,
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
        .apply_op2(&weight.contiguous()?, DwConv { win, relu })
}

/// `max(v, 0)` as [`crate::relu`] computes it (NaN passes through).
#[inline(always)]
pub(crate) fn rectify<T: Float>(v: T) -> T {
    if v < T::ZERO {
        T::ZERO
    } else {
        v
    }
}

/// The plane the convolution reads: `x` itself, or its rectified copy in `scratch`.
#[inline]
fn input_plane<'a, T: Float>(x: &'a [T], relu: bool, scratch: &'a mut Vec<T>) -> &'a [T] {
    if relu {
        scratch.clear();
        scratch.extend(x.iter().map(|&v| rectify(v)));
        scratch
    } else {
        x
    }
}

struct DwConv {
    win: Window,
    /// Rectify the input first ([`relu_depthwise_conv2d`]).
    relu: bool,
}

impl CustomOp2 for DwConv {
    fn name(&self) -> &'static str {
        "nas-depthwise-conv2d"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2| crate::device::depthwise(
        s1, l1, s2, l2, &op.win, op.relu
    ));

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("depthwise_conv2d", s1, |T| {
            let y = forward::<T>(slice(s1, l1)?, slice(s2, l2)?, win, self.relu);
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
        let op = DwConvBwd {
            win: self.win,
            relu: self.relu,
        };
        crate::cpu::input_and_weight_grads(x, w, g, &op)
    }
}

/// Backward of [`DwConv`]: inputs (x, weight, dL/dy), output the flat concatenation
/// `[dL/dx, dL/dweight]`.
struct DwConvBwd {
    win: Window,
    relu: bool,
}

impl CustomOp3 for DwConvBwd {
    fn name(&self) -> &'static str {
        "nas-depthwise-conv2d-bwd"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2, s3, l3| {
        crate::device::depthwise_bwd([(s1, l1), (s2, l2), (s3, l3)], &op.win, op.relu)
    });

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let win = &self.win;
        dispatch_float!("depthwise_conv2d backward", s1, |T| {
            let out = backward::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                slice(s3, l3)?,
                win,
                self.relu,
            );
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}

pub(crate) fn forward<T: Float>(x: &[T], wt: &[T], win: &Window, relu: bool) -> Vec<T> {
    let ip = win.in_plane();
    par_chunks_zeroed(
        Split::planes(win.n * win.c * win.out_plane(), win.out_plane()),
        PlaneForward::new,
        |s, p, yp| s.plane(&x[p * ip..(p + 1) * ip], wt, win, relu, p % win.c, yp),
    )
}

/// One worker's scratch space for the forward of a depthwise convolution plane by plane, for
/// callers that run it inside their own parallel loop ([`forward`], the fused unit).
pub(crate) struct PlaneForward<T> {
    padded: Phased<T>,
    rectified: Vec<T>,
}

impl<T: Float> PlaneForward<T> {
    /// Empty scratch; it grows to the plane size on first use.
    pub(crate) fn new() -> Self {
        PlaneForward {
            padded: Phased::new(),
            rectified: Vec::new(),
        }
    }

    /// The output plane `y` (zeroed, `OH * OW`) of channel `c` from its input plane `x`
    /// (rectified first when `relu`), weights `wt` `[C, 1, k, k]`.
    pub(crate) fn plane(
        &mut self,
        x: &[T],
        wt: &[T],
        win: &Window,
        relu: bool,
        c: usize,
        y: &mut [T],
    ) {
        let kk = win.k * win.k;
        let (hp, wp) = (win.h + 2 * win.padding, win.w + 2 * win.padding);
        let x_plane = input_plane(x, relu, &mut self.rectified);
        self.padded
            .fill(x_plane, win.h, win.w, win.padding, hp, wp, win.stride);
        let spec = Corr {
            k: win.k,
            s: win.stride,
            d: win.dilation,
            off: 0,
        };
        corr(
            &self.padded,
            &wt[c * kk..(c + 1) * kk],
            spec,
            y,
            win.oh,
            win.ow,
        );
    }
}

/// Zero columns at the end of each phase row: blocked loops (at most 16 lanes) may read past the
/// last real column.
const MARGIN: usize = 16;

/// Lanes of the partial sums in [`weight_grad`].
const B: usize = 8;

/// A zero-padded copy of one plane with its columns split into `s` phases: phase `q`, row `r`,
/// column `c` holds padded column `c * s + q`, so that strided taps read contiguous memory.
/// Each phase row carries `MARGIN` extra zeros so that blocked loops may read past its end.
struct Phased<T> {
    data: Vec<T>,
    phases: usize,
    rows: usize,
    width: usize,
}

impl<T: Float> Phased<T> {
    fn new() -> Self {
        Phased {
            data: Vec::new(),
            phases: 1,
            rows: 0,
            width: 0,
        }
    }

    /// `padded[r][c] = src[r - pad][c - pad]` (zero outside `src`'s `h x w`), `rows x cols`.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        src: &[T],
        h: usize,
        w: usize,
        pad: usize,
        rows: usize,
        cols: usize,
        s: usize,
    ) {
        self.phases = s;
        self.rows = rows;
        self.width = cols.div_ceil(s) + MARGIN;
        self.data.clear();
        self.data.resize(s * rows * self.width, T::ZERO);
        for (r, sr) in src.chunks_exact(w).take(h).enumerate() {
            let r = r + pad;
            if s == 1 {
                self.data[r * self.width + pad..][..w].copy_from_slice(sr);
            } else {
                for q in 0..s {
                    // Phase columns c with pad <= c*s + q < pad + w read src column c*s + q - pad.
                    let c0 = pad.saturating_sub(q).div_ceil(s);
                    let Some(first) = (c0 * s + q).checked_sub(pad).filter(|&f| f < w) else {
                        continue;
                    };
                    let dst = &mut self.data[(q * rows + r) * self.width..][..self.width];
                    for (d, &v) in dst[c0..].iter_mut().zip(sr[first..].iter().step_by(s)) {
                        *d = v;
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn row(&self, q: usize, r: usize) -> &[T] {
        &self.data[(q * self.rows + r) * self.width..][..self.width]
    }
}

/// Geometry of a correlation over a [`Phased`] plane: kernel `k`, stride `s`, dilation `d`, and
/// an offset `off` added to both padded coordinates.
#[derive(Clone, Copy)]
struct Corr {
    k: usize,
    s: usize,
    d: usize,
    off: usize,
}

/// `out[oy][ox] = sum_{i,j} wk[i*k + j] * P[oy*s + i*d + off][ox*s + j*d + off]`.
fn corr<T: Float>(p: &Phased<T>, wk: &[T], g: Corr, out: &mut [T], oh: usize, ow: usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
        unsafe { corr_avx2(p, wk, g, out, oh, ow) };
        return;
    }
    corr_any::<T, false>(p, wk, g, out, oh, ow)
}

/// [`corr`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn corr_avx2<T: Float>(
    p: &Phased<T>,
    wk: &[T],
    g: Corr,
    out: &mut [T],
    oh: usize,
    ow: usize,
) {
    corr_any::<T, true>(p, wk, g, out, oh, ow)
}

/// Picks the block width: 16 outputs per block for rows of at least 16, else 8.
#[inline(always)]
fn corr_any<T: Float, const FMA: bool>(
    p: &Phased<T>,
    wk: &[T],
    g: Corr,
    out: &mut [T],
    oh: usize,
    ow: usize,
) {
    if ow >= 16 {
        corr_blocked::<T, 16, FMA>(p, wk, g, out, oh, ow)
    } else {
        corr_blocked::<T, 8, FMA>(p, wk, g, out, oh, ow)
    }
}

/// [`corr`] computing `L` adjacent outputs of `R` rows at a time (`R` rows of the last
/// group one by one), all `k*k` taps accumulated in registers: `R * L / 8` independent
/// multiply-add chains, enough to hide the instruction's latency (with one row, two AVX2
/// chains left the loop waiting on it). The tap offsets into the phased plane are
/// precomputed, so the tap loop is a broadcast, loads and multiply-adds. Each output sums its
/// taps in the same order whatever `R`, so the values do not depend on it.
#[inline(always)]
fn corr_blocked<T: Float, const L: usize, const FMA: bool>(
    p: &Phased<T>,
    wk: &[T],
    g: Corr,
    out: &mut [T],
    oh: usize,
    ow: usize,
) {
    const R: usize = 4;
    let Corr { k, s, d, off } = g;
    // Offset of tap (i, j) for output (0, 0): phase plane, row, and column within the phase.
    let mut offs = Vec::with_capacity(k * k);
    for i in 0..k {
        for j in 0..k {
            let (q, c0) = ((j * d + off) % s, (j * d + off) / s);
            offs.push((q * p.rows + i * d + off) * p.width + c0);
        }
    }
    let taps = offs.len().min(wk.len());
    let (offs, wk) = (&offs[..taps], &wk[..taps]);
    let data = &p.data[..];
    let row_step = s * p.width;
    let mut oy = 0;
    while oy < oh {
        let rows = if oy + R <= oh { R } else { 1 };
        let mut ox = 0;
        while ox < ow {
            let base = oy * row_step + ox;
            if rows == R {
                // Four separate rows of partial sums: the compiler keeps each in vector
                // registers (an array of rows it did not vectorise).
                let (mut a0, mut a1, mut a2, mut a3) =
                    ([T::ZERO; L], [T::ZERO; L], [T::ZERO; L], [T::ZERO; L]);
                for (&o, &wv) in offs.iter().zip(wk) {
                    let at = base + o;
                    a0 = madd_row::<T, L, FMA>(a0, &data[at..at + L], wv);
                    let at1 = at + row_step;
                    a1 = madd_row::<T, L, FMA>(a1, &data[at1..at1 + L], wv);
                    let at2 = at + 2 * row_step;
                    a2 = madd_row::<T, L, FMA>(a2, &data[at2..at2 + L], wv);
                    let at3 = at + 3 * row_step;
                    a3 = madd_row::<T, L, FMA>(a3, &data[at3..at3 + L], wv);
                }
                let n = L.min(ow - ox);
                for (r, acc_r) in [a0, a1, a2, a3].iter().enumerate() {
                    let o0 = (oy + r) * ow + ox;
                    out[o0..o0 + n].copy_from_slice(&acc_r[..n]);
                }
            } else {
                let mut acc = [T::ZERO; L];
                for (&o, &wv) in offs.iter().zip(wk) {
                    let src = &data[base + o..base + o + L];
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a = T::madd::<FMA>(wv, v, *a);
                    }
                }
                let orow = &mut out[oy * ow..(oy + 1) * ow];
                let n = L.min(ow - ox);
                orow[ox..ox + n].copy_from_slice(&acc[..n]);
            }
            ox += L;
        }
        oy += rows;
    }
}

/// `gw[i*k + j] += sum_{oy,ox} g[oy][ox] * P[oy*s + i*d][ox*s + j*d]` over one plane.
fn weight_grad<T: Float>(p: &Phased<T>, g: &[T], gw: &mut [T], win: &Window) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::avx2_fma() {
        if let (Some((gf, gwf)), Some((pf, _)), 3 | 5) =
            (T::as_f32(g, gw), T::as_f32(&p.data, &mut []), win.k)
        {
            let pf = PhasedRows {
                data: pf,
                rows: p.rows,
                width: p.width,
            };
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
            unsafe {
                match win.k {
                    3 => weight_grad_shared_f32::<3>(&pf, gf, gwf, win),
                    _ => weight_grad_shared_f32::<5>(&pf, gf, gwf, win),
                }
            }
            return;
        }
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time above).
        unsafe { weight_grad_avx2(p, g, gw, win) };
        return;
    }
    weight_grad_any::<T, false>(p, g, gw, win)
}

/// The rows of a [`Phased`] plane of `f32` (its layout, borrowed).
struct PhasedRows<'a> {
    data: &'a [f32],
    rows: usize,
    width: usize,
}

impl PhasedRows<'_> {
    /// Phase `q`, padded row `r`, from column `c0`, `len` values.
    #[inline(always)]
    fn row(&self, q: usize, r: usize, c0: usize, len: usize) -> &[f32] {
        &self.data[(q * self.rows + r) * self.width..][..self.width][c0..c0 + len]
    }
}

/// Row `oy` of `g` and, for each tap column `j`, the `ow` values of padded row `r` it meets.
#[inline(always)]
fn tap_rows_f32<'a, const K: usize>(
    p: &'a PhasedRows<'a>,
    g: &'a [f32],
    taps: &[(usize, usize); K],
    r: usize,
    oy: usize,
    ow: usize,
) -> (&'a [f32], [&'a [f32]; K]) {
    let mut pr: [&[f32]; K] = [&[]; K];
    for (j, &(q, c0)) in taps.iter().enumerate() {
        pr[j] = p.row(q, r, c0, ow);
    }
    (&g[oy * ow..(oy + 1) * ow], pr)
}

/// [`weight_grad`] of an `f32` plane for a `K x K` kernel, in AVX2 registers: the `K` taps of
/// one kernel row share each load of `g` (one load for `K` multiply-adds, where the per-tap
/// loop loads `g` once per multiply-add), two output rows at a time for `2 K` independent
/// multiply-add chains. (Generic code in `[T; 8]` lanes could not be made to keep the `2 K`
/// accumulators in registers: docs/performance.md, "Tried".)
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_shared_f32<const K: usize>(
    p: &PhasedRows<'_>,
    g: &[f32],
    gw: &mut [f32],
    win: &Window,
) {
    use std::arch::x86_64::*;
    // SAFETY: every load reads 8 values at offset o of a row slice with o + 8 <= full <= its
    // length; the caller guarantees AVX2 and FMA.
    unsafe {
        let (s, d, oh, ow) = (win.stride, win.dilation, win.oh, win.ow);
        let full = ow - ow % 8;
        // Phase and first phase column of tap column j.
        let taps: [(usize, usize); K] = std::array::from_fn(|j| ((j * d) % s, (j * d) / s));
        let rows_of = |i: usize, oy: usize| tap_rows_f32(p, g, &taps, oy * s + i * d, oy, ow);
        for i in 0..K {
            let mut a0 = [_mm256_setzero_ps(); K];
            let mut a1 = [_mm256_setzero_ps(); K];
            let mut tail = [0f32; K];
            let mut oy = 0;
            while oy + 2 <= oh {
                let (g0, p0) = rows_of(i, oy);
                let (g1, p1) = rows_of(i, oy + 1);
                let mut o = 0;
                while o < full {
                    let (v0, v1) = (
                        _mm256_loadu_ps(g0.as_ptr().add(o)),
                        _mm256_loadu_ps(g1.as_ptr().add(o)),
                    );
                    for j in 0..K {
                        a0[j] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(p0[j].as_ptr().add(o)), a0[j]);
                        a1[j] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(p1[j].as_ptr().add(o)), a1[j]);
                    }
                    o += 8;
                }
                for o in full..ow {
                    for j in 0..K {
                        tail[j] += g0[o] * p0[j][o] + g1[o] * p1[j][o];
                    }
                }
                oy += 2;
            }
            if oy < oh {
                let (g0, p0) = rows_of(i, oy);
                let mut o = 0;
                while o < full {
                    let v0 = _mm256_loadu_ps(g0.as_ptr().add(o));
                    for j in 0..K {
                        a0[j] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(p0[j].as_ptr().add(o)), a0[j]);
                    }
                    o += 8;
                }
                for o in full..ow {
                    for j in 0..K {
                        tail[j] += g0[o] * p0[j][o];
                    }
                }
            }
            for j in 0..K {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(a0[j], a1[j]));
                gw[i * K + j] += lanes.iter().fold(tail[j], |x, &y| x + y);
            }
        }
    }
}

/// [`weight_grad`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_avx2<T: Float>(p: &Phased<T>, g: &[T], gw: &mut [T], win: &Window) {
    weight_grad_any::<T, true>(p, g, gw, win)
}

#[inline(always)]
fn weight_grad_any<T: Float, const FMA: bool>(p: &Phased<T>, g: &[T], gw: &mut [T], win: &Window) {
    let (k, s, d, oh, ow) = (win.k, win.stride, win.dilation, win.oh, win.ow);
    for i in 0..k {
        for j in 0..k {
            let (q, c0) = ((j * d) % s, (j * d) / s);
            // Four rows at a time, each into its own partial sums: independent multiply-add
            // chains (one chain left the loop waiting on the instruction's latency).
            let row = |oy: usize| {
                (
                    &g[oy * ow..(oy + 1) * ow],
                    &p.row(q, oy * s + i * d)[c0..c0 + ow],
                )
            };
            let (mut a0, mut a1, mut a2, mut a3) =
                ([T::ZERO; B], [T::ZERO; B], [T::ZERO; B], [T::ZERO; B]);
            let mut tail = T::ZERO;
            let mut oy = 0;
            while oy + 4 <= oh {
                a0 = dot_row::<T, FMA>(a0, row(oy), &mut tail);
                a1 = dot_row::<T, FMA>(a1, row(oy + 1), &mut tail);
                a2 = dot_row::<T, FMA>(a2, row(oy + 2), &mut tail);
                a3 = dot_row::<T, FMA>(a3, row(oy + 3), &mut tail);
                oy += 4;
            }
            for oy in oy..oh {
                a0 = dot_row::<T, FMA>(a0, row(oy), &mut tail);
            }
            gw[i * k + j] += [a0, a1, a2, a3].iter().flatten().fold(tail, |a, &b| a + b);
        }
    }
}

/// `acc[l] += w * src[l]` for `L` lanes.
#[inline(always)]
fn madd_row<T: Float, const L: usize, const FMA: bool>(mut acc: [T; L], src: &[T], w: T) -> [T; L] {
    for (a, &v) in acc.iter_mut().zip(src) {
        *a = T::madd::<FMA>(w, v, *a);
    }
    acc
}

/// `acc[l] += g[l] * src[l]` over the `B`-lane chunks of one row, the rest of the row into
/// `tail`.
#[inline(always)]
fn dot_row<T: Float, const FMA: bool>(
    mut acc: [T; B],
    (g, src): (&[T], &[T]),
    tail: &mut T,
) -> [T; B] {
    let mut gc = g.chunks_exact(B);
    let mut sc = src.chunks_exact(B);
    for (ga, sa) in (&mut gc).zip(&mut sc) {
        for l in 0..B {
            acc[l] = T::madd::<FMA>(ga[l], sa[l], acc[l]);
        }
    }
    for (&a, &b) in gc.remainder().iter().zip(sc.remainder()) {
        *tail += a * b;
    }
    acc
}

pub(crate) fn backward<T: Float>(x: &[T], wt: &[T], g: &[T], win: &Window, relu: bool) -> Vec<T> {
    backward_with(x, wt, g, win, relu, true)
}

/// [`backward`]; without `weights` the stride-1 path skips dL/dweight (left zero; nobody asked
/// for it: [`crate::with_frozen_weights`]). Strided planes compute it anyway (one scatter
/// produces both).
pub(crate) fn backward_with<T: Float>(
    x: &[T],
    wt: &[T],
    g: &[T],
    win: &Window,
    relu: bool,
    weights: bool,
) -> Vec<T> {
    let kk = win.k * win.k;
    let (ip, op) = (win.in_plane(), win.out_plane());
    let planes = win.n * win.c;
    let bwd = PlaneBackward::new(wt, win, relu, weights);
    let mut partial = vec![T::ZERO; planes * kk];
    let split = Split::planes(planes * ip, ip).with_tail(win.c * kk);
    let mut out = par_chunks_zeroed_with(
        split,
        &mut partial,
        kk,
        PlaneScratch::new,
        |scratch, p, gxp, gwp| {
            let (xpl, gpl) = (&x[p * ip..(p + 1) * ip], &g[p * op..(p + 1) * op]);
            bwd.plane(scratch, p, xpl, gpl, gxp, gwp);
        },
    );
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

/// One worker's scratch space for [`PlaneBackward::plane`].
pub(crate) struct PlaneScratch<T> {
    x: Phased<T>,
    g: Phased<T>,
    flipped: Vec<T>,
    rectified: Vec<T>,
}

impl<T: Float> PlaneScratch<T> {
    /// Empty scratch; it grows to the plane size on first use.
    pub(crate) fn new() -> Self {
        PlaneScratch {
            x: Phased::new(),
            g: Phased::new(),
            flipped: Vec::new(),
            rectified: Vec::new(),
        }
    }
}

/// The backward of a depthwise convolution (after a ReLU when `relu`) plane by plane, for
/// callers that run it inside their own parallel loop ([`backward_with`], the fused unit).
pub(crate) struct PlaneBackward<'a, T> {
    wt: &'a [T],
    win: &'a Window,
    relu: bool,
    weights: bool,
    rows: Vec<Tap>,
    cols: Vec<Tap>,
}

impl<'a, T: Float> PlaneBackward<'a, T> {
    /// The backward of weights `wt` (`[C, 1, k, k]`) on `win`; without `weights` the
    /// stride-1 path skips dL/dweight (left zero; nobody asked for it:
    /// [`crate::with_frozen_weights`]). Strided planes compute it anyway (one scatter
    /// produces both).
    pub(crate) fn new(wt: &'a [T], win: &'a Window, relu: bool, weights: bool) -> Self {
        PlaneBackward {
            wt,
            win,
            relu,
            weights,
            rows: win.row_taps(),
            cols: win.col_taps(),
        }
    }

    /// Plane `p` (channel `p % C`): its input `x` (before the ReLU) and output gradient `g`
    /// give `dL/dx` in `gx` (zeroed) and this plane's `dL/dweight` in `gw` (`k * k`, zeroed).
    pub(crate) fn plane(
        &self,
        s: &mut PlaneScratch<T>,
        p: usize,
        x: &[T],
        g: &[T],
        gx: &mut [T],
        gw: &mut [T],
    ) {
        let win = self.win;
        let (k, pad, d) = (win.k, win.padding, win.dilation);
        let kk = k * k;
        let (hp, wp) = (win.h + 2 * pad, win.w + 2 * pad);
        let c = p % win.c;
        let wk = &self.wt[c * kk..(c + 1) * kk];
        let xpl = input_plane(x, self.relu, &mut s.rectified);
        if win.stride == 1 {
            if self.weights {
                s.x.fill(xpl, win.h, win.w, pad, hp, wp, 1);
                weight_grad(&s.x, g, gw, win);
            }
            // Stride 1: dL/dx is the correlation of g, padded by a = d*(k-1) at the top/left
            // (and enough zeros at the bottom/right), with the flipped kernel, read from
            // offset `pad`.
            let a = d * (k - 1);
            let (gr, gc) = ((win.h + pad).max(win.oh) + a, (win.w + pad).max(win.ow) + a);
            s.g.fill(g, win.oh, win.ow, a, gr, gc, 1);
            s.flipped.clear();
            s.flipped.extend(wk.iter().rev());
            let spec = Corr {
                k,
                s: 1,
                d,
                off: pad,
            };
            corr(&s.g, &s.flipped, spec, gx, win.h, win.w);
        } else {
            // Small strided outputs: the direct scatter over precomputed tap ranges is
            // faster than going through phased planes.
            backward_plane(xpl, wk, g, gx, gw, win, &self.rows, &self.cols);
        }
        if self.relu {
            // The ReLU's backward: the gradient flows where its output is positive.
            for (d, &v) in gx.iter_mut().zip(xpl) {
                *d = if v > T::ZERO { *d } else { T::ZERO };
            }
        }
    }
}

/// One plane of the backward pass for stride > 1 (scatter form): `gx` (zeroed) `+=` the transposed convolution of `g`, and
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
                    for (d, &gv) in gxr[start..start + len].iter_mut().zip(gseg) {
                        *d += a * gv;
                    }
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
