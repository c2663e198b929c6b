//! A safe, bounds-checked wrapper over the `gemm` crate (the GEMM library candle's CPU matmul
//! uses) for single-threaded calls on strided row-major views; the callers parallelise over the
//! batch themselves, which is much cheaper than candle's per-batch calls at DARTS sizes.
use crate::cpu::Float;

/// A read-only `rows x cols` matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<T> Mat<'_, T> {
    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m x n, row-major, contiguous) = [dst +] lhs (m x k) * rhs (k x n)`, single-threaded.
///
/// # Panics
/// If the shapes do not agree or a view reaches outside its slice (a bug in the caller).
pub(crate) fn matmul<T: Float>(dst: &mut [T], accumulate: bool, lhs: Mat<'_, T>, rhs: Mat<'_, T>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "gemm: inner dimensions differ");
    assert_eq!(dst.len(), m * n, "gemm: destination size");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "gemm: view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return;
    }
    // SAFETY: `dst` holds exactly m*n elements addressed as (i, j) -> i*n + j; every element
    // of `lhs` and `rhs` addressed by their strides lies inside their slices (checked above);
    // `dst` is a unique borrow, so it aliases neither input; T is f32 or f64, which gemm
    // supports (it panics on anything else, it does not misbehave).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
