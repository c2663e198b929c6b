//! Small helpers shared by the CPU kernels: the float trait the kernels are generic over,
//! access to contiguous storage, plane-parallel loops and vectorisable row primitives.
use candle_core::{bail, CpuStorage, DType, Layout, Result, WithDType};
use rayon::prelude::*;

/// The element types the kernels support (`f32` and `f64`).
pub(crate) trait Float: WithDType + Default + std::ops::Neg<Output = Self> {
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Negative infinity, the identity of `max`.
    const NEG_INF: Self;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// `a * b + c`: one fused multiply-add when `FMA` (only inside code compiled with the `fma`
    /// target feature, where it is one instruction), else a multiply and an add.
    fn madd<const FMA: bool>(a: Self, b: Self, c: Self) -> Self;
    /// The slices as `f32` when `Self` is `f32` (for kernels with an `f32`-only vector path).
    fn as_f32<'a>(x: &'a [Self], y: &'a mut [Self]) -> Option<(&'a [f32], &'a mut [f32])>;
}

static PORTABLE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every kernel use its portable build even where the CPU has AVX2 and FMA (`true`), or
/// restores the run-time choice (`false`). For tests that cover both builds on one machine.
#[doc(hidden)]
pub fn force_portable_kernels(on: bool) {
    PORTABLE_ONLY.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether to run the AVX2 + FMA builds of the kernels compiled twice (see `dwconv`): the CPU
/// has both and [`force_portable_kernels`] is off.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    !PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f32::NEG_INFINITY;
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn as_f32<'a>(x: &'a [Self], y: &'a mut [Self]) -> Option<(&'a [f32], &'a mut [f32])> {
        Some((x, y))
    }
    #[inline(always)]
    fn madd<const FMA: bool>(a: Self, b: Self, c: Self) -> Self {
        if FMA {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f64::NEG_INFINITY;
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn as_f32<'a>(_: &'a [Self], _: &'a mut [Self]) -> Option<(&'a [f32], &'a mut [f32])> {
        None
    }
    #[inline(always)]
    fn madd<const FMA: bool>(a: Self, b: Self, c: Self) -> Self {
        if FMA {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
}

/// The contiguous data of a storage/layout pair as a slice of `T`.
pub(crate) fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("nas-ops: kernel input is not contiguous"),
    }
}

/// Fails unless `dtype` is one the kernels support.
pub(crate) fn check_float(op: &str, dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        d => bail!("nas-ops {op}: only f32 and f64 are supported, got {d:?}"),
    }
}

/// How many `plane`-sized chunks one rayon task takes at least: small planes are grouped so
/// that a task does ~4k elements of work.
pub(crate) fn planes_per_task(plane: usize) -> usize {
    (4096 / plane.max(1)).max(1)
}

/// Runs `f(plane_index, out_plane)` over the `plane`-sized chunks of `out` in parallel.
pub(crate) fn par_planes<T: Send>(
    out: &mut [T],
    plane: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    let min_len = planes_per_task(plane);
    out.par_chunks_mut(plane)
        .enumerate()
        .with_min_len(min_len)
        .for_each(|(i, p)| f(i, p));
}

/// `sum_i a[i] * b[i]`, with eight independent partial sums so that it vectorises.
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::ZERO; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += xa[l] * xb[l];
        }
    }
    let mut tail = T::ZERO;
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `sum_i a[i]`, with eight independent partial sums so that it vectorises.
#[inline(always)]
pub(crate) fn sum<T: Float>(a: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut ca = a.chunks_exact(8);
    for xa in &mut ca {
        for l in 0..8 {
            acc[l] += xa[l];
        }
    }
    let mut tail = T::ZERO;
    for &x in ca.remainder() {
        tail += x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dispatches a generic kernel call on the dtype of a [`CpuStorage`].
macro_rules! dispatch_float {
    ($op:expr, $storage:expr, |$t:ident| $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => {
                #[allow(unused_imports)]
                use candle_core::WithDType as _;
                type $t = f32;
                $body
            }
            candle_core::CpuStorage::F64(_) => {
                #[allow(unused_imports)]
                use candle_core::WithDType as _;
                type $t = f64;
                $body
            }
            _ => candle_core::bail!("nas-ops {}: only f32 and f64 are supported", $op),
        }
    };
}
pub(crate) use dispatch_float;

/// The backward of a two-input op from its `apply_op3_no_bwd` backward op, whose output is
/// the flat concatenation `[dL/dx, dL/dw]`: the two gradients in the shapes of `x` and `w`.
pub(crate) fn input_and_weight_grads(
    x: &candle_core::Tensor,
    w: &candle_core::Tensor,
    g: &candle_core::Tensor,
    op: &impl candle_core::CustomOp3,
) -> Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
    let both = x.apply_op3_no_bwd(w, &g.contiguous()?, op)?;
    let nx = x.elem_count();
    let gx = both.narrow(0, 0, nx)?.reshape(x.shape())?;
    let gw = both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?;
    Ok((Some(gx), Some(gw)))
}
