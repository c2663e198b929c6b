//! Safe wrappers over the host build of the kernel bodies (`csrc/host.cpp`).
//!
//! (Over 600 lines on purpose: one checked wrapper per C entry point, each short, kept in
//! one file so the whole C ABI surface is read and audited in one place.)
//!
//! Every function checks the lengths of its slices against the geometry before calling into
//! C++, so a wrong shape is an error, never an out-of-bounds access.
use std::os::raw::{c_int, c_long};

/// Geometry of a convolution or pooling window over NCHW tensors (the C struct `nas::Geom`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    /// Batch size.
    pub n: c_int,
    /// Input channels.
    pub cin: c_int,
    /// Input height.
    pub h: c_int,
    /// Input width.
    pub w: c_int,
    /// Output channels (equal to `cin` for pooling).
    pub cout: c_int,
    /// Output height.
    pub oh: c_int,
    /// Output width.
    pub ow: c_int,
    /// Square kernel size.
    pub k: c_int,
    /// Stride.
    pub stride: c_int,
    /// Zero padding on every side.
    pub pad: c_int,
    /// Dilation (1 for pooling).
    pub dil: c_int,
    /// Convolution groups (1 for pooling).
    pub groups: c_int,
}

/// A request the kernels cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The window does not fit, or a size is zero or too large for the C `int` geometry.
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// A slice has the wrong length for the geometry.
    #[error("`{name}` has {got} elements, the geometry needs {want}")]
    Length {
        /// The argument.
        name: &'static str,
        /// Its length.
        got: usize,
        /// The length the geometry implies.
        want: usize,
    },
}

/// Result of a kernel call.
pub type Result<T> = std::result::Result<T, KernelError>;

/// PyTorch's floor-mode output length, `None` when the window does not fit.
pub fn out_len(len: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    if k == 0 || stride == 0 || dil == 0 {
        return None;
    }
    let span = dil * (k - 1) + 1;
    let padded = len + 2 * pad;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

fn int(v: usize, what: &str) -> Result<c_int> {
    c_int::try_from(v)
        .map_err(|_| KernelError::Geometry(format!("{what} = {v} does not fit a C int")))
}

impl Geom {
    /// A convolution of `[n, cin, h, w]` by a weight `[cout, cin/groups, k, k]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        n: usize,
        cin: usize,
        h: usize,
        w: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        groups: usize,
    ) -> Result<Geom> {
        if n == 0
            || cin == 0
            || cout == 0
            || groups == 0
            || !cin.is_multiple_of(groups)
            || !cout.is_multiple_of(groups)
        {
            return Err(KernelError::Geometry(format!(
                "n {n}, cin {cin}, cout {cout}, groups {groups}: sizes must be >= 1 and channels divisible by groups"
            )));
        }
        let oh = out_len(h, k, stride, pad, dil);
        let ow = out_len(w, k, stride, pad, dil);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(KernelError::Geometry(format!(
                "kernel {k} (stride {stride}, padding {pad}, dilation {dil}) does not fit {h}x{w}"
            )));
        };
        Ok(Geom {
            n: int(n, "n")?,
            cin: int(cin, "cin")?,
            h: int(h, "h")?,
            w: int(w, "w")?,
            cout: int(cout, "cout")?,
            oh: int(oh, "oh")?,
            ow: int(ow, "ow")?,
            k: int(k, "k")?,
            stride: int(stride, "stride")?,
            pad: int(pad, "pad")?,
            dil: int(dil, "dil")?,
            groups: int(groups, "groups")?,
        })
    }

    /// A pooling window of size `k` over `[n, c, h, w]`.
    pub fn pool(
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Geom> {
        if 2 * pad > k {
            return Err(KernelError::Geometry(format!(
                "padding {pad} must be at most half the kernel {k} (as PyTorch requires)"
            )));
        }
        Geom::conv(n, c, h, w, c, k, stride, pad, 1, 1)
    }

    /// DARTS' `FactorizedReduce` (without its batch norm) of `[n, cin, h, w]` into `cout`
    /// concatenated channels: two stride-2 1x1 convolutions of `cout / 2` outputs each, the
    /// second on the input shifted by one row and column; `h`, `w` and `cout` even (the
    /// reference fails on odd sizes).
    pub fn factorized_reduce(
        n: usize,
        cin: usize,
        h: usize,
        w: usize,
        cout: usize,
    ) -> Result<Geom> {
        if h < 2 || w < 2 || !h.is_multiple_of(2) || !w.is_multiple_of(2) || !cout.is_multiple_of(2)
        {
            return Err(KernelError::Geometry(format!(
                "FactorizedReduce needs an even input size and output channels, got {h}x{w} -> {cout}"
            )));
        }
        Geom::conv(n, cin, h, w, cout, 1, 2, 0, 1, 1)
    }

    /// Whether this convolution's weight gradient takes the pointwise path (a 1x1 kernel, one
    /// group, no padding: `nas::is_pointwise`, [`pw_weight_chunks`]).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.groups == 1 && self.pad == 0
    }

    /// The output positions (example, row, column) a weight gradient sums over.
    pub fn positions(&self) -> usize {
        self.n as usize * self.oh as usize * self.ow as usize
    }

    /// Elements of the NCHW input `[n, cin, h, w]` (in `usize`: each field fits an `i32`,
    /// their products need not).
    pub fn input_len(&self) -> usize {
        [self.n, self.cin, self.h, self.w]
            .iter()
            .map(|&v| v as usize)
            .product()
    }

    /// Elements of the NCHW output `[n, cout, oh, ow]`.
    pub fn output_len(&self) -> usize {
        [self.n, self.cout, self.oh, self.ow]
            .iter()
            .map(|&v| v as usize)
            .product()
    }

    /// Elements of the weight `[cout, cin / groups, k, k]`.
    pub fn weight_len(&self) -> usize {
        [self.cout, self.cin / self.groups, self.k, self.k]
            .iter()
            .map(|&v| v as usize)
            .product()
    }
}

fn check(name: &'static str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(KernelError::Length { name, got, want });
    }
    Ok(())
}

/// Floating-point element types with a host build (`f32`, `f64`).
pub trait HostFloat: Copy + Default + sealed::Sealed {
    #[doc(hidden)]
    const FNS: Fns<Self>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

type ConvFn<T> = unsafe extern "C" fn(*const T, *const T, *mut T, *const Geom, c_int);
type ConvBwdInputFn<T> = unsafe extern "C" fn(*const T, *const T, *mut T, *const Geom, *const T);
type MaxFwdFn<T> = unsafe extern "C" fn(*const T, *mut T, *mut c_int, *const Geom);
type MaxBwdFn<T> = unsafe extern "C" fn(*const T, *const c_int, *mut T, *const Geom);
type AvgFn<T> = unsafe extern "C" fn(*const T, *mut T, *const Geom, c_int);
type BnFwdFn<T> = unsafe extern "C" fn(
    *const T,
    *const T,
    *const T,
    c_int,
    c_int,
    c_long,
    T,
    T,
    *mut T,
    *mut T,
    *mut T,
    *mut T,
    *mut T,
);
type BnBwdFn<T> = unsafe extern "C" fn(
    *const T,
    *const T,
    *const T,
    c_int,
    c_int,
    c_long,
    *const T,
    *const T,
    *mut T,
    *mut T,
    *mut T,
);
type ReluFwdFn<T> = unsafe extern "C" fn(*const T, *mut T, c_long);
type ReluBwdFn<T> = unsafe extern "C" fn(*const T, *const T, *mut T, c_long);
type MixedFwdFn<T> = unsafe extern "C" fn(*const *const T, *const T, c_int, c_long, *mut T);
type GatherFn<T> = unsafe extern "C" fn(*const *const T, *const c_long, c_int, *mut f64);
type ScatterFn<T> = unsafe extern "C" fn(*const f64, *const *mut T, *const c_long, c_int);
type MixedBwdFn<T> =
    unsafe extern "C" fn(*const T, *const *const T, *const T, c_int, c_long, *const *mut T, *mut T);
type FrFwdFn<T> = unsafe extern "C" fn(*const T, *const T, *const T, *mut T, *const Geom);
type FrBwdFn<T> =
    unsafe extern "C" fn(*const T, *const T, *const T, *const T, *mut T, *mut T, *const Geom);
type StepFn<T, R> = unsafe extern "C" fn(*const StepSpan<T>, c_int, *const R);

/// The C entry points of one dtype.
#[doc(hidden)]
pub struct Fns<T> {
    conv_fwd: ConvFn<T>,
    conv_bwd_input: ConvBwdInputFn<T>,
    conv_bwd_weight: ConvFn<T>,
    fr_fwd: FrFwdFn<T>,
    fr_bwd: FrBwdFn<T>,
    max_fwd: MaxFwdFn<T>,
    max_bwd: MaxBwdFn<T>,
    avg_fwd: AvgFn<T>,
    avg_bwd: AvgFn<T>,
    bn_fwd: BnFwdFn<T>,
    bn_bwd: BnBwdFn<T>,
    relu_fwd: ReluFwdFn<T>,
    relu_bwd: ReluBwdFn<T>,
    mixed_fwd: MixedFwdFn<T>,
    mixed_bwd: MixedBwdFn<T>,
    gather: GatherFn<T>,
    scatter: ScatterFn<T>,
    sgd: StepFn<T, SgdRule>,
    adam: StepFn<T, AdamRule>,
    rmsprop: StepFn<T, RmsPropRule>,
}

macro_rules! extern_block {
    ($t:ty, $conv_fwd:ident, $conv_bi:ident, $conv_bw:ident, $fr_f:ident, $fr_b:ident, $max_f:ident, $max_b:ident,
     $avg_f:ident, $avg_b:ident, $bn_f:ident, $bn_b:ident, $relu_f:ident, $relu_b:ident,
     $mix_f:ident, $mix_b:ident, $gather:ident, $scatter:ident, $sgd:ident, $adam:ident, $rms:ident) => {
        extern "C" {
            fn $conv_fwd(x: *const $t, w: *const $t, y: *mut $t, g: *const Geom, relu_in: c_int);
            fn $conv_bi(
                gy: *const $t,
                w: *const $t,
                gx: *mut $t,
                g: *const Geom,
                relu_x: *const $t,
            );
            fn $conv_bw(x: *const $t, gy: *const $t, gw: *mut $t, g: *const Geom, relu_in: c_int);
            fn $fr_f(x: *const $t, wa: *const $t, wb: *const $t, z: *mut $t, g: *const Geom);
            fn $fr_b(
                x: *const $t,
                wa: *const $t,
                wb: *const $t,
                gz: *const $t,
                gx: *mut $t,
                gw: *mut $t,
                g: *const Geom,
            );
            fn $max_f(x: *const $t, y: *mut $t, arg: *mut c_int, g: *const Geom);
            fn $max_b(gy: *const $t, arg: *const c_int, gx: *mut $t, g: *const Geom);
            fn $avg_f(x: *const $t, y: *mut $t, g: *const Geom, include_pad: c_int);
            fn $avg_b(gy: *const $t, gx: *mut $t, g: *const Geom, include_pad: c_int);
            fn $bn_f(
                x: *const $t,
                gamma: *const $t,
                beta: *const $t,
                n: c_int,
                c: c_int,
                hw: c_long,
                eps: $t,
                momentum: $t,
                run_mean: *mut $t,
                run_var: *mut $t,
                y: *mut $t,
                save_mean: *mut $t,
                save_invstd: *mut $t,
            );
            fn $bn_b(
                x: *const $t,
                gy: *const $t,
                gamma: *const $t,
                n: c_int,
                c: c_int,
                hw: c_long,
                save_mean: *const $t,
                save_invstd: *const $t,
                gx: *mut $t,
                ggamma: *mut $t,
                gbeta: *mut $t,
            );
            fn $relu_f(x: *const $t, y: *mut $t, len: c_long);
            fn $relu_b(x: *const $t, gy: *const $t, gx: *mut $t, len: c_long);
            fn $mix_f(ys: *const *const $t, w: *const $t, kn: c_int, len: c_long, y: *mut $t);
            fn $mix_b(
                gy: *const $t,
                ys: *const *const $t,
                w: *const $t,
                kn: c_int,
                len: c_long,
                gys: *const *mut $t,
                gw: *mut $t,
            );
            fn $gather(srcs: *const *const $t, lens: *const c_long, count: c_int, out: *mut f64);
            fn $scatter(input: *const f64, dsts: *const *mut $t, lens: *const c_long, count: c_int);
            fn $sgd(spans: *const StepSpan<$t>, count: c_int, rule: *const SgdRule);
            fn $adam(spans: *const StepSpan<$t>, count: c_int, rule: *const AdamRule);
            fn $rms(spans: *const StepSpan<$t>, count: c_int, rule: *const RmsPropRule);
        }
        impl HostFloat for $t {
            const FNS: Fns<$t> = Fns {
                conv_fwd: $conv_fwd,
                conv_bwd_input: $conv_bi,
                conv_bwd_weight: $conv_bw,
                fr_fwd: $fr_f,
                fr_bwd: $fr_b,
                max_fwd: $max_f,
                max_bwd: $max_b,
                avg_fwd: $avg_f,
                avg_bwd: $avg_b,
                bn_fwd: $bn_f,
                bn_bwd: $bn_b,
                relu_fwd: $relu_f,
                relu_bwd: $relu_b,
                mixed_fwd: $mix_f,
                mixed_bwd: $mix_b,
                gather: $gather,
                scatter: $scatter,
                sgd: $sgd,
                adam: $adam,
                rmsprop: $rms,
            };
        }
    };
}

extern_block!(
    f32,
    nas_conv_fwd_f32,
    nas_conv_bwd_input_f32,
    nas_conv_bwd_weight_f32,
    nas_fr_fwd_f32,
    nas_fr_bwd_f32,
    nas_max_pool_fwd_f32,
    nas_max_pool_bwd_f32,
    nas_avg_pool_fwd_f32,
    nas_avg_pool_bwd_f32,
    nas_bn_fwd_train_f32,
    nas_bn_bwd_train_f32,
    nas_relu_fwd_f32,
    nas_relu_bwd_f32,
    nas_mixed_fwd_f32,
    nas_mixed_bwd_f32,
    nas_gather_f64_from_f32,
    nas_scatter_f64_to_f32,
    nas_sgd_step_f32,
    nas_adam_step_f32,
    nas_rmsprop_step_f32
);
extern_block!(
    f64,
    nas_conv_fwd_f64,
    nas_conv_bwd_input_f64,
    nas_conv_bwd_weight_f64,
    nas_fr_fwd_f64,
    nas_fr_bwd_f64,
    nas_max_pool_fwd_f64,
    nas_max_pool_bwd_f64,
    nas_avg_pool_fwd_f64,
    nas_avg_pool_bwd_f64,
    nas_bn_fwd_train_f64,
    nas_bn_bwd_train_f64,
    nas_relu_fwd_f64,
    nas_relu_bwd_f64,
    nas_mixed_fwd_f64,
    nas_mixed_bwd_f64,
    nas_gather_f64_from_f64,
    nas_scatter_f64_to_f64,
    nas_sgd_step_f64,
    nas_adam_step_f64,
    nas_rmsprop_step_f64
);

extern "C" {
    fn nas_reduction_chunks(count: c_long, chunks: *mut c_long, per: *mut c_long);
    fn nas_unit_shared_bytes() -> c_long;
    fn nas_weight_chunks(positions: c_long, nw: c_long, chunks: *mut c_long, per: *mut c_long);
    fn nas_pw_weight_chunks(positions: c_long, nw: c_long, chunks: *mut c_long, per: *mut c_long);
}

/// `NAS_UNIT_SHARED_BYTES` of `nas_kernels.cuh`: the shared memory of the fused unit
/// convolution, which [`crate::launch::UNIT_SHARED_BYTES`] must equal.
pub fn unit_shared_bytes() -> usize {
    // SAFETY: no arguments; returns a constant.
    unsafe { nas_unit_shared_bytes() as usize }
}

/// How a block reduction over `count` terms splits: `(chunks, terms per chunk)`
/// (`nas::reduction_chunks` in nas_kernels.cuh: about 32 terms per thread of a 256-thread
/// block, at most 65,535 chunks; the last chunk may be shorter, none is empty). A weight
/// gradient's terms are its output positions (example, row, column): the device runs one block
/// per weight element and chunk, and the host build computes every weight gradient through the
/// same chunks and the same adding order.
pub fn reduction_chunks(count: usize) -> (usize, usize) {
    let (mut chunks, mut per) = (1 as c_long, 1 as c_long);
    let clamp = c_long::try_from(count).unwrap_or(c_long::MAX);
    // SAFETY: a plain value in, two longs written through valid pointers.
    unsafe { nas_reduction_chunks(clamp, &mut chunks, &mut per) };
    (chunks.max(1) as usize, per.max(1) as usize)
}

/// How a block-per-element weight gradient of `nw` elements splits its `positions` output
/// positions: `(chunks, positions per chunk)` (`nas::weight_chunks`: [`reduction_chunks`]', at
/// most 262,144 partial sums in all, so a large weight gets fewer, longer chunks). The device
/// runs one block per weight element and chunk; the host build adds in the same order.
pub fn weight_chunks(positions: usize, nw: usize) -> (usize, usize) {
    weight_chunking(nas_weight_chunks, positions, nw)
}

/// Calls one of the header's weight-gradient chunkings (`f(positions, nw, &chunks, &per)`)
/// with its arguments clamped to a C `long`.
fn weight_chunking(
    f: unsafe extern "C" fn(c_long, c_long, *mut c_long, *mut c_long),
    positions: usize,
    nw: usize,
) -> (usize, usize) {
    let (mut chunks, mut per) = (1 as c_long, 1 as c_long);
    let clamp = |v: usize| c_long::try_from(v).unwrap_or(c_long::MAX);
    // SAFETY: plain values in, two longs written through valid pointers.
    unsafe { f(clamp(positions), clamp(nw), &mut chunks, &mut per) };
    (chunks.max(1) as usize, per.max(1) as usize)
}

/// How the pointwise weight gradient (a 1x1 convolution of one group without padding:
/// [`Geom::is_pointwise`]) of `nw` elements splits its `positions` output positions: `(chunks,
/// positions per chunk)` (`nas::pw_weight_chunks`: 512 positions each, at most 262,144 partial
/// sums in all and 65,535 chunks). The device runs a block per 16 x 16 tile of the weight and
/// chunk, each thread adding its element's products position after position; the host build
/// adds in the same order.
pub fn pw_weight_chunks(positions: usize, nw: usize) -> (usize, usize) {
    weight_chunking(nas_pw_weight_chunks, positions, nw)
}

/// Convolution forward: `y` `[n, cout, oh, ow]` of `x` `[n, cin, h, w]` and `w` `[cout,
/// cin/groups, k, k]`.
pub fn conv_fwd<T: HostFloat>(x: &[T], w: &[T], g: &Geom) -> Result<Vec<T>> {
    conv_fwd_with(x, w, g, false)
}

/// `conv(max(x, 0), w)`: [`conv_fwd`] with the input ReLU fused (read on the fly, as the
/// device kernels of a ReLU-conv unit do).
pub fn relu_conv_fwd<T: HostFloat>(x: &[T], w: &[T], g: &Geom) -> Result<Vec<T>> {
    conv_fwd_with(x, w, g, true)
}

fn conv_fwd_with<T: HostFloat>(x: &[T], w: &[T], g: &Geom, relu_in: bool) -> Result<Vec<T>> {
    check("x", x.len(), g.input_len())?;
    check("w", w.len(), g.weight_len())?;
    let mut y = vec![T::default(); g.output_len()];
    // SAFETY: every length was checked against the geometry the C code indexes by.
    unsafe { (T::FNS.conv_fwd)(x.as_ptr(), w.as_ptr(), y.as_mut_ptr(), g, relu_in.into()) };
    Ok(y)
}

/// Convolution backward: `(dL/dx, dL/dw)` from the input, the weight and `dL/dy`.
pub fn conv_bwd<T: HostFloat>(x: &[T], w: &[T], gy: &[T], g: &Geom) -> Result<(Vec<T>, Vec<T>)> {
    conv_bwd_with(x, w, gy, g, false)
}

/// The backward of [`relu_conv_fwd`]: `dL/dx` through the ReLU (zero where `x <= 0`) and
/// `dL/dw` against `max(x, 0)`.
pub fn relu_conv_bwd<T: HostFloat>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
) -> Result<(Vec<T>, Vec<T>)> {
    conv_bwd_with(x, w, gy, g, true)
}

fn conv_bwd_with<T: HostFloat>(
    x: &[T],
    w: &[T],
    gy: &[T],
    g: &Geom,
    relu_in: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    check("x", x.len(), g.input_len())?;
    check("w", w.len(), g.weight_len())?;
    check("gy", gy.len(), g.output_len())?;
    let mut gx = vec![T::default(); g.input_len()];
    let mut gw = vec![T::default(); g.weight_len()];
    let relu_x = if relu_in {
        x.as_ptr()
    } else {
        std::ptr::null()
    };
    // SAFETY: lengths checked above; relu_x is null or x (of the input's length).
    unsafe {
        (T::FNS.conv_bwd_input)(gy.as_ptr(), w.as_ptr(), gx.as_mut_ptr(), g, relu_x);
        (T::FNS.conv_bwd_weight)(x.as_ptr(), gy.as_ptr(), gw.as_mut_ptr(), g, relu_in.into());
    }
    Ok((gx, gw))
}

/// DARTS' `FactorizedReduce` without its batch norm (`g` from [`Geom::factorized_reduce`]):
/// `z` `[n, cout, h/2, w/2]`, the channels of `conv(relu(x), wa)` (stride 2) then those of
/// the same convolution by `wb` of `relu(x)` without its first row and column; `wa` and `wb`
/// `[cout/2, cin]` each.
pub fn factorized_reduce_fwd<T: HostFloat>(
    x: &[T],
    wa: &[T],
    wb: &[T],
    g: &Geom,
) -> Result<Vec<T>> {
    check("x", x.len(), g.input_len())?;
    check("wa", wa.len(), g.weight_len() / 2)?;
    check("wb", wb.len(), g.weight_len() / 2)?;
    let mut z = vec![T::default(); g.output_len()];
    // SAFETY: every length was checked against the geometry the C code indexes by.
    unsafe { (T::FNS.fr_fwd)(x.as_ptr(), wa.as_ptr(), wb.as_ptr(), z.as_mut_ptr(), g) };
    Ok(z)
}

/// The backward of [`factorized_reduce_fwd`]: `(dL/dx, dL/d[wa, wb])` (the two weights'
/// gradients one after the other) from `dL/dz`.
pub fn factorized_reduce_bwd<T: HostFloat>(
    x: &[T],
    wa: &[T],
    wb: &[T],
    gz: &[T],
    g: &Geom,
) -> Result<(Vec<T>, Vec<T>)> {
    check("x", x.len(), g.input_len())?;
    check("wa", wa.len(), g.weight_len() / 2)?;
    check("wb", wb.len(), g.weight_len() / 2)?;
    check("gz", gz.len(), g.output_len())?;
    let mut gx = vec![T::default(); g.input_len()];
    let mut gw = vec![T::default(); g.weight_len()];
    // SAFETY: lengths checked above.
    unsafe {
        (T::FNS.fr_bwd)(
            x.as_ptr(),
            wa.as_ptr(),
            wb.as_ptr(),
            gz.as_ptr(),
            gx.as_mut_ptr(),
            gw.as_mut_ptr(),
            g,
        )
    };
    Ok((gx, gw))
}

/// Max pool forward: the output and, per output, the in-plane index of the winning cell.
pub fn max_pool_fwd<T: HostFloat>(x: &[T], g: &Geom) -> Result<(Vec<T>, Vec<i32>)> {
    check("x", x.len(), g.input_len())?;
    let mut y = vec![T::default(); g.output_len()];
    let mut arg = vec![0 as c_int; g.output_len()];
    // SAFETY: lengths checked above.
    unsafe { (T::FNS.max_fwd)(x.as_ptr(), y.as_mut_ptr(), arg.as_mut_ptr(), g) };
    Ok((y, arg))
}

/// Max pool backward: `dL/dx` from `dL/dy` and the winners of the forward.
pub fn max_pool_bwd<T: HostFloat>(gy: &[T], arg: &[i32], g: &Geom) -> Result<Vec<T>> {
    check("gy", gy.len(), g.output_len())?;
    check("arg", arg.len(), g.output_len())?;
    let plane = g.h * g.w;
    if let Some(bad) = arg.iter().find(|&&a| a < -1 || a >= plane) {
        return Err(KernelError::Geometry(format!(
            "winner index {bad} outside a plane of {plane} cells"
        )));
    }
    let mut gx = vec![T::default(); g.input_len()];
    // SAFETY: lengths checked above.
    unsafe { (T::FNS.max_bwd)(gy.as_ptr(), arg.as_ptr(), gx.as_mut_ptr(), g) };
    Ok(gx)
}

/// Average pool forward: each window's in-image cells summed and divided by their number
/// (`count_include_pad=False`) or, with `include_pad`, by the window's cells inside the
/// padded image (PyTorch's `count_include_pad=True`).
pub fn avg_pool_fwd<T: HostFloat>(x: &[T], g: &Geom, include_pad: bool) -> Result<Vec<T>> {
    check("x", x.len(), g.input_len())?;
    let mut y = vec![T::default(); g.output_len()];
    // SAFETY: lengths checked above.
    unsafe { (T::FNS.avg_fwd)(x.as_ptr(), y.as_mut_ptr(), g, include_pad.into()) };
    Ok(y)
}

/// Average pool backward (divisors as in [`avg_pool_fwd`]).
pub fn avg_pool_bwd<T: HostFloat>(gy: &[T], g: &Geom, include_pad: bool) -> Result<Vec<T>> {
    check("gy", gy.len(), g.output_len())?;
    let mut gx = vec![T::default(); g.input_len()];
    // SAFETY: lengths checked above.
    unsafe { (T::FNS.avg_bwd)(gy.as_ptr(), gx.as_mut_ptr(), g, include_pad.into()) };
    Ok(gx)
}

/// What a training-mode batch-norm forward returns.
#[derive(Debug, Clone, PartialEq)]
pub struct BnForward<T> {
    /// The normalised output.
    pub y: Vec<T>,
    /// Batch mean per channel.
    pub mean: Vec<T>,
    /// `1 / sqrt(biased batch variance + eps)` per channel.
    pub invstd: Vec<T>,
}

/// What a batch-norm backward returns: `dL/dx` and, when affine, `(dL/dgamma, dL/dbeta)`.
pub type BnBackward<T> = (Vec<T>, Option<(Vec<T>, Vec<T>)>);

/// What a mixed-op backward returns: `dL/dys[k]` for each computed option and `dL/dw`.
pub type MixedBackward<T> = (Vec<Option<Vec<T>>>, Vec<T>);

/// Shape `(n, c, hw)` of a batch norm's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnShape {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height times width.
    pub hw: usize,
}

impl BnShape {
    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    fn c_args(&self) -> Result<(c_int, c_int, c_long)> {
        if self.n == 0 || self.c == 0 || self.hw == 0 {
            return Err(KernelError::Geometry(format!(
                "empty batch-norm input {self:?}"
            )));
        }
        let hw = c_long::try_from(self.hw)
            .map_err(|_| KernelError::Geometry(format!("hw = {} too large", self.hw)))?;
        Ok((int(self.n, "n")?, int(self.c, "c")?, hw))
    }
}

/// Training-mode batch norm forward; `affine` is `(gamma, beta)`; `running` (mean, var) is
/// updated in place with `momentum` (PyTorch: 0.1, unbiased variance).
pub fn bn_fwd_train<T: HostFloat>(
    x: &[T],
    s: BnShape,
    affine: Option<(&[T], &[T])>,
    eps: T,
    momentum: T,
    running: Option<(&mut [T], &mut [T])>,
) -> Result<BnForward<T>> {
    let (n, c, hw) = s.c_args()?;
    check("x", x.len(), s.len())?;
    let (gp, bp) = match affine {
        Some((g, b)) => {
            check("gamma", g.len(), s.c)?;
            check("beta", b.len(), s.c)?;
            (g.as_ptr(), b.as_ptr())
        }
        None => (std::ptr::null(), std::ptr::null()),
    };
    let (rm, rv) = match running {
        Some((m, v)) => {
            check("running_mean", m.len(), s.c)?;
            check("running_var", v.len(), s.c)?;
            (m.as_mut_ptr(), v.as_mut_ptr())
        }
        None => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    let mut out = BnForward {
        y: vec![T::default(); s.len()],
        mean: vec![T::default(); s.c],
        invstd: vec![T::default(); s.c],
    };
    // SAFETY: lengths checked above; null pointers are the C side's "absent".
    unsafe {
        (T::FNS.bn_fwd)(
            x.as_ptr(),
            gp,
            bp,
            n,
            c,
            hw,
            eps,
            momentum,
            rm,
            rv,
            out.y.as_mut_ptr(),
            out.mean.as_mut_ptr(),
            out.invstd.as_mut_ptr(),
        )
    };
    Ok(out)
}

/// Training-mode batch norm backward: `(dL/dx, Some((dL/dgamma, dL/dbeta)) when affine)`.
pub fn bn_bwd_train<T: HostFloat>(
    x: &[T],
    gy: &[T],
    s: BnShape,
    gamma: Option<&[T]>,
    fwd: &BnForward<T>,
) -> Result<BnBackward<T>> {
    let (n, c, hw) = s.c_args()?;
    check("x", x.len(), s.len())?;
    check("gy", gy.len(), s.len())?;
    check("mean", fwd.mean.len(), s.c)?;
    check("invstd", fwd.invstd.len(), s.c)?;
    let mut gx = vec![T::default(); s.len()];
    let mut gg = vec![T::default(); s.c];
    let mut gb = vec![T::default(); s.c];
    let gp = match gamma {
        Some(g) => {
            check("gamma", g.len(), s.c)?;
            g.as_ptr()
        }
        None => std::ptr::null(),
    };
    // SAFETY: lengths checked above.
    unsafe {
        (T::FNS.bn_bwd)(
            x.as_ptr(),
            gy.as_ptr(),
            gp,
            n,
            c,
            hw,
            fwd.mean.as_ptr(),
            fwd.invstd.as_ptr(),
            gx.as_mut_ptr(),
            gg.as_mut_ptr(),
            gb.as_mut_ptr(),
        )
    };
    Ok((gx, gamma.map(|_| (gg, gb))))
}

fn c_len(len: usize) -> Result<c_long> {
    c_long::try_from(len).map_err(|_| KernelError::Geometry(format!("length {len} too large")))
}

/// ReLU forward.
pub fn relu_fwd<T: HostFloat>(x: &[T]) -> Result<Vec<T>> {
    let mut y = vec![T::default(); x.len()];
    // SAFETY: y has x's length.
    unsafe { (T::FNS.relu_fwd)(x.as_ptr(), y.as_mut_ptr(), c_len(x.len())?) };
    Ok(y)
}

/// ReLU backward (the gradient passes where the input is > 0).
pub fn relu_bwd<T: HostFloat>(x: &[T], gy: &[T]) -> Result<Vec<T>> {
    check("gy", gy.len(), x.len())?;
    let mut gx = vec![T::default(); x.len()];
    // SAFETY: lengths checked above.
    unsafe { (T::FNS.relu_bwd)(x.as_ptr(), gy.as_ptr(), gx.as_mut_ptr(), c_len(x.len())?) };
    Ok(gx)
}

/// The concatenation of `srcs` converted to `f64` (the device's gather of an optimizer step's
/// tensors, element by element as the device does it).
pub fn gather_f64<T: HostFloat>(srcs: &[&[T]]) -> Result<Vec<f64>> {
    let total: usize = srcs.iter().map(|s| s.len()).sum();
    let mut out = vec![0.0; total];
    let ptrs: Vec<*const T> = srcs.iter().map(|s| s.as_ptr()).collect();
    let lens: Vec<c_long> = srcs.iter().map(|s| c_len(s.len())).collect::<Result<_>>()?;
    let count = c_int::try_from(srcs.len())
        .map_err(|_| KernelError::Geometry(format!("{} sources to gather", srcs.len())))?;
    // SAFETY: `count` sources of `lens[t]` elements each, `out` holds their sum.
    unsafe { (T::FNS.gather)(ptrs.as_ptr(), lens.as_ptr(), count, out.as_mut_ptr()) };
    Ok(out)
}

/// The reverse of [`gather_f64`]: `input` split into `dsts` in order, each value converted to
/// `T` (rounded to nearest), as the device writes an optimizer step's weights back.
pub fn scatter_f64<T: HostFloat>(input: &[f64], dsts: &mut [&mut [T]]) -> Result<()> {
    let total: usize = dsts.iter().map(|d| d.len()).sum();
    check("input", input.len(), total)?;
    let ptrs: Vec<*mut T> = dsts.iter_mut().map(|d| d.as_mut_ptr()).collect();
    let lens: Vec<c_long> = dsts.iter().map(|d| c_len(d.len())).collect::<Result<_>>()?;
    let count = c_int::try_from(dsts.len())
        .map_err(|_| KernelError::Geometry(format!("{} targets to scatter to", dsts.len())))?;
    // SAFETY: `count` disjoint targets of `lens[t]` elements, `input` holds their sum.
    unsafe { (T::FNS.scatter)(input.as_ptr(), ptrs.as_ptr(), lens.as_ptr(), count) };
    Ok(())
}

/// The rule of an SGD step (the C struct `nas::SgdRule`): `torch.optim.SGD` with dampening 0,
/// as `nas_optim::Sgd` computes it in `f64`. State: the momentum buffer, when `momentum` is not
/// 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdRule {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: no momentum buffer).
    pub momentum: f64,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Every gradient value is multiplied by this first (the clipping factor; 1 without).
    pub grad_scale: f64,
    /// Nesterov momentum (1) or not (0).
    pub nesterov: c_int,
}

/// The rule of an Adam or AdamW step (the C struct `nas::AdamRule`): `torch.optim.Adam` /
/// `torch.optim.AdamW` with amsgrad off, as `nas_optim::Adam` / `AdamW` compute it in `f64`.
/// State: `exp_avg`, then `exp_avg_sq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamRule {
    /// Learning rate (the bias-corrected step size comes per tensor, [`StepSpan::step_size`]).
    pub lr: f64,
    /// Decay of the first moment estimate.
    pub beta1: f64,
    /// Decay of the second moment estimate.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: coupled L2 (Adam) or decoupled (AdamW).
    pub weight_decay: f64,
    /// Every gradient value is multiplied by this first (the clipping factor; 1 without).
    pub grad_scale: f64,
    /// AdamW's decoupled weight decay (1) or Adam's coupled one (0).
    pub decoupled: c_int,
}

/// The rule of an RMSprop step (the C struct `nas::RmsPropRule`): `torch.optim.RMSprop`, as
/// `nas_optim::RmsProp` computes it in `f64`. State: `square_avg`, then `grad_avg` when
/// centered, then the momentum buffer when `momentum > 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropRule {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the averages.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Momentum factor (0: no momentum buffer).
    pub momentum: f64,
    /// Every gradient value is multiplied by this first (the clipping factor; 1 without).
    pub grad_scale: f64,
    /// Centered RMSprop (1) or not (0).
    pub centered: c_int,
}

/// The rule of one optimizer step of many tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepRule {
    /// SGD.
    Sgd(SgdRule),
    /// Adam or AdamW.
    Adam(AdamRule),
    /// RMSprop.
    RmsProp(RmsPropRule),
}

impl StepRule {
    /// How many `f64` state buffers (each as long as its parameter) the rule keeps.
    pub fn buffers(&self) -> usize {
        match self {
            StepRule::Sgd(r) => usize::from(r.momentum != 0.0),
            StepRule::Adam(_) => 2,
            StepRule::RmsProp(r) => {
                1 + usize::from(r.centered != 0) + usize::from(r.momentum > 0.0)
            }
        }
    }

    /// The base name of the kernel (`nas_<base>_f32` / `_f64`).
    pub fn kernel(&self) -> &'static str {
        match self {
            StepRule::Sgd(_) => "sgd_step",
            StepRule::Adam(_) => "adam_step",
            StepRule::RmsProp(_) => "rmsprop_step",
        }
    }
}

/// One tensor of an optimizer step (the C struct `nas::StepSpan<T>`): parameters, gradient
/// (null: zeros), the rule's `f64` state buffers (buffer `b` at `state + b * stride`; null when
/// it keeps none), length, and the per-tensor values of [`TensorStep`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StepSpan<T> {
    /// The parameters, updated in place.
    pub param: *mut T,
    /// Their gradient, or null for zeros.
    pub grad: *const T,
    /// The first state buffer (`len` values), or null when the rule keeps none.
    pub state: *mut f64,
    /// Distance in values from one state buffer to the next.
    pub stride: c_long,
    /// Number of parameters.
    pub len: c_long,
    /// Adam: the learning rate over the first bias correction.
    pub step_size: f64,
    /// Adam: the square root of the second bias correction.
    pub bc2_sqrt: f64,
    /// SGD: 1 when the momentum buffer holds nothing yet (it starts as this step's direction).
    pub first: c_int,
}

/// What one tensor's step needs besides the rule: whether SGD's momentum buffer starts with
/// this step, and Adam's bias corrections at this tensor's step count
/// (`nas_optim::adam_bias_corrections`; ignored by the other rules).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TensorStep {
    /// SGD: the momentum buffer holds nothing yet.
    pub first: bool,
    /// Adam: `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// Adam: `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f64,
}

/// One optimizer step of `param` with `grad` (`None`: zeros) by `rule`, through the kernel
/// body the device runs (`nas::sgd_elem`, `adam_elem`, `rmsprop_elem`). `state` holds the
/// rule's [`StepRule::buffers`] buffers one after the other, `param.len()` values each.
pub fn optimizer_step<T: HostFloat>(
    param: &mut [T],
    grad: Option<&[T]>,
    state: &mut [f64],
    tensor: TensorStep,
    rule: &StepRule,
) -> Result<()> {
    check("state", state.len(), rule.buffers() * param.len())?;
    optimizer_step_at(param, grad, state, 0, tensor, rule)
}

/// [`optimizer_step`] with the state of many parameters in one allocation: `state` is the
/// rule's [`StepRule::buffers`] equal parts one after the other, and this parameter's values
/// of each start at `offset` in its part (as nas-ops lays the state of a whole network out).
pub fn optimizer_step_at<T: HostFloat>(
    param: &mut [T],
    grad: Option<&[T]>,
    state: &mut [f64],
    offset: usize,
    tensor: TensorStep,
    rule: &StepRule,
) -> Result<()> {
    if let Some(g) = grad {
        check("grad", g.len(), param.len())?;
    }
    let buffers = rule.buffers();
    let stride = match state.len().checked_div(buffers) {
        None => {
            check("state", state.len(), 0)?;
            0
        }
        Some(stride) => stride,
    };
    if buffers != 0
        && (!state.len().is_multiple_of(buffers)
            || offset.checked_add(param.len()).is_none_or(|e| e > stride))
    {
        return Err(KernelError::Geometry(format!(
            "{} values of {buffers} state buffers cannot hold {} values at {offset} in each",
            state.len(),
            param.len()
        )));
    }
    let span = StepSpan {
        param: param.as_mut_ptr(),
        grad: grad.map_or(std::ptr::null(), |g| g.as_ptr()),
        state: if buffers == 0 || param.is_empty() {
            std::ptr::null_mut()
        } else {
            state[offset..].as_mut_ptr()
        },
        stride: c_len(stride)?,
        len: c_len(param.len())?,
        step_size: tensor.step_size,
        bc2_sqrt: tensor.bc2_sqrt,
        first: tensor.first.into(),
    };
    // SAFETY: one span whose pointers cover `len` values each, each state buffer `len` values
    // from `offset` in its part of `stride` values (checked above), or are null where the body
    // does not read them (no gradient: zeros; a rule without state; nothing to step).
    unsafe {
        match rule {
            StepRule::Sgd(r) => (T::FNS.sgd)(&span, 1, r),
            StepRule::Adam(r) => (T::FNS.adam)(&span, 1, r),
            StepRule::RmsProp(r) => (T::FNS.rmsprop)(&span, 1, r),
        }
    };
    Ok(())
}

/// One SGD step of `param` with `grad` (`None`: zeros) and, when `rule` has momentum, the
/// momentum buffer `buf` (`first`: it holds nothing yet): [`optimizer_step`] with SGD's rule.
pub fn sgd_step<T: HostFloat>(
    param: &mut [T],
    grad: Option<&[T]>,
    buf: Option<&mut [f64]>,
    first: bool,
    rule: &SgdRule,
) -> Result<()> {
    let tensor = TensorStep {
        first,
        ..TensorStep::default()
    };
    let state: &mut [f64] = match buf {
        Some(b) => b,
        None => &mut [],
    };
    optimizer_step(param, grad, state, tensor, &StepRule::Sgd(*rule))
}

/// Mixed-op forward: `sum_k w[k] * ys[k]`; an option with weight exactly 0 may be `None` (not
/// computed, as under GDAS / ProxylessNAS hard sampling).
pub fn mixed_fwd<T: HostFloat + PartialEq>(
    ys: &[Option<&[T]>],
    w: &[T],
    len: usize,
) -> Result<Vec<T>> {
    let ptrs = mixed_inputs(ys, w, len)?;
    let mut y = vec![T::default(); len];
    // SAFETY: every non-null pointer has `len` elements; null ones have weight 0 and are skipped.
    unsafe {
        (T::FNS.mixed_fwd)(
            ptrs.as_ptr(),
            w.as_ptr(),
            int(w.len(), "options")?,
            c_len(len)?,
            y.as_mut_ptr(),
        )
    };
    Ok(y)
}

/// Mixed-op backward: `(dL/dys[k] = w[k] * gy for computed options, dL/dw[k] = sum gy * ys[k])`.
pub fn mixed_bwd<T: HostFloat + PartialEq>(
    gy: &[T],
    ys: &[Option<&[T]>],
    w: &[T],
) -> Result<MixedBackward<T>> {
    let len = gy.len();
    let ptrs = mixed_inputs(ys, w, len)?;
    let mut gys: Vec<Option<Vec<T>>> = ys
        .iter()
        .map(|y| y.map(|_| vec![T::default(); len]))
        .collect();
    let gptrs: Vec<*mut T> = gys
        .iter_mut()
        .map(|g| g.as_mut().map_or(std::ptr::null_mut(), |v| v.as_mut_ptr()))
        .collect();
    let mut gw = vec![T::default(); w.len()];
    // SAFETY: every non-null pointer has `len` elements.
    unsafe {
        (T::FNS.mixed_bwd)(
            gy.as_ptr(),
            ptrs.as_ptr(),
            w.as_ptr(),
            int(w.len(), "options")?,
            c_len(len)?,
            gptrs.as_ptr(),
            gw.as_mut_ptr(),
        )
    };
    Ok((gys, gw))
}

fn mixed_inputs<T: HostFloat + PartialEq>(
    ys: &[Option<&[T]>],
    w: &[T],
    len: usize,
) -> Result<Vec<*const T>> {
    check("ys", ys.len(), w.len())?;
    ys.iter()
        .zip(w)
        .map(|(y, &wk)| match y {
            Some(y) => check("ys[k]", y.len(), len).map(|_| y.as_ptr()),
            None if wk == T::default() => Ok(std::ptr::null()),
            None => Err(KernelError::Geometry(
                "an option with a non-zero weight has no output".into(),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Geom;

    #[test]
    fn lengths_past_an_i32_do_not_wrap() {
        // 65,536 examples of 65,536 channels: 2^32 values, each field an i32.
        let g = Geom::conv(1 << 16, 1 << 16, 1, 1, 1 << 15, 1, 1, 0, 1, 1).unwrap();
        assert_eq!(g.input_len(), 1 << 32);
        assert_eq!(g.output_len(), 1 << 31);
        assert_eq!(g.weight_len(), 1 << 31);
        let d = Geom::conv(2, 8, 9, 9, 8, 3, 1, 1, 1, 8).unwrap();
        assert_eq!(
            (d.input_len(), d.output_len(), d.weight_len()),
            (1296, 1296, 72)
        );
    }
}
