//! Pointwise (1x1, no padding, any stride) convolution as one custom op: per example a GEMM
//! `y[n] (O x OH*OW) = W (O x I) * x[n] (I x OH*OW)` through the `gemm` crate, the batch spread
//! over rayon tasks. The backward produces `dL/dx[n] = W^T g[n]` and `dL/dW = sum_n g[n] x[n]^T`
//! in one sweep (per-example weight partials, reduced in batch order, so results do not depend
//! on thread scheduling). A stride > 1 reads every `stride`-th row and column of each plane
//! (DARTS' `FactorizedReduce`, quark0/darts `operations.py`).
use crate::cpu::{dispatch_float, slice, Float};
use crate::fresh::{par_chunks_zeroed, par_chunks_zeroed_with, Split};
use crate::gemm::{matmul, Mat};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// Sizes of one pointwise convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv1x1 {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    pub h: usize,
    pub w: usize,
    pub stride: usize,
}

impl Conv1x1 {
    fn oh(&self) -> usize {
        (self.h - 1) / self.stride + 1
    }

    fn ow(&self) -> usize {
        (self.w - 1) / self.stride + 1
    }

    /// Output positions per plane.
    pub(crate) fn l(&self) -> usize {
        self.oh() * self.ow()
    }

    /// The `ci x L` input matrix of example `n`: the planes themselves (stride 1) or their
    /// subsampled copy in `scratch`.
    fn input<'a, T: Float>(&self, x: &'a [T], n: usize, scratch: &'a mut Vec<T>) -> &'a [T] {
        let hw = self.h * self.w;
        let xn = &x[n * self.ci * hw..(n + 1) * self.ci * hw];
        if self.stride == 1 {
            return xn;
        }
        scratch.clear();
        for plane in xn.chunks_exact(hw) {
            for oy in 0..self.oh() {
                let row = &plane[oy * self.stride * self.w..][..self.w];
                scratch.extend(row.iter().step_by(self.stride));
            }
        }
        scratch
    }

    pub(crate) fn forward<T: Float>(&self, x: &[T], wt: &[T]) -> Vec<T> {
        let l = self.l();
        let split = Split::chunks(self.n * self.co * l, self.co * l);
        par_chunks_zeroed(
            split,
            || (),
            |_, n, yn| {
                let mut scratch = Vec::new();
                self.forward_example(self.input(x, n, &mut scratch), wt, yn);
            },
        )
    }

    /// The output of one example, `yn = W xn` (`co x L`), from its input matrix `xn` (`ci x
    /// L`, already subsampled for a stride).
    pub(crate) fn forward_example<T: Float>(&self, xn: &[T], wt: &[T], yn: &mut [T]) {
        let l = self.l();
        let lhs = Mat {
            data: wt,
            rows: self.co,
            cols: self.ci,
            rs: self.ci,
            cs: 1,
        };
        let rhs = Mat {
            data: xn,
            rows: self.ci,
            cols: l,
            rs: l,
            cs: 1,
        };
        matmul(yn, false, lhs, rhs);
    }

    /// `[dL/dx, dL/dW]` flat.
    pub(crate) fn backward<T: Float>(&self, x: &[T], wt: &[T], g: &[T]) -> Vec<T> {
        self.backward_with(x, wt, g, true)
    }

    /// The backward of example `n`: `dL/dx_n` into `gxn` (zeroed, `ci * h * w`) and, when
    /// `weights`, the example's `dL/dW` (`co * ci`) into `pw`, from its output gradient `gn`
    /// (`co * L`). `x` is the whole input (only read when `weights`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_example<T: Float>(
        &self,
        x: &[T],
        n: usize,
        wt: &[T],
        gn: &[T],
        gxn: &mut [T],
        pw: &mut [T],
        weights: bool,
    ) {
        let (l, hw) = (self.l(), self.h * self.w);
        let (ci, co) = (self.ci, self.co);
        // dW_n (co x ci) = g_n (co x L) * x_n^T (L x ci)
        let gm = Mat {
            data: gn,
            rows: co,
            cols: l,
            rs: l,
            cs: 1,
        };
        if weights {
            let mut scratch = Vec::new();
            let xn = self.input(x, n, &mut scratch);
            matmul(
                pw,
                false,
                gm,
                Mat {
                    data: xn,
                    rows: l,
                    cols: ci,
                    rs: 1,
                    cs: l,
                },
            );
        }
        // dx_n (ci x L) = W^T (ci x co) * g_n (co x L)
        let wt_t = Mat {
            data: wt,
            rows: ci,
            cols: co,
            rs: 1,
            cs: ci,
        };
        if self.stride == 1 {
            matmul(gxn, false, wt_t, gm);
        } else {
            let mut sub = vec![T::ZERO; ci * l];
            matmul(&mut sub, false, wt_t, gm);
            let (s, w, ow) = (self.stride, self.w, self.ow());
            for (plane, src) in gxn.chunks_exact_mut(hw).zip(sub.chunks_exact(l)) {
                for (oy, sr) in src.chunks_exact(ow).enumerate() {
                    let row = &mut plane[oy * s * w..][..w];
                    for (d, &v) in row.iter_mut().step_by(s).zip(sr) {
                        *d = v;
                    }
                }
            }
        }
    }

    /// [`Self::backward`]; without `weights` the dL/dW part is left zero and not computed
    /// (nobody asked for it: [`crate::with_frozen_weights`]).
    pub(crate) fn backward_with<T: Float>(
        &self,
        x: &[T],
        wt: &[T],
        g: &[T],
        weights: bool,
    ) -> Vec<T> {
        let (l, hw) = (self.l(), self.h * self.w);
        let (ci, co) = (self.ci, self.co);
        let nx = self.n * ci * hw;
        let mut partial = vec![T::ZERO; self.n * co * ci];
        let split = Split {
            len: nx,
            chunk: ci * hw,
            min_chunks: 1,
            tail: co * ci,
        };
        let mut out = par_chunks_zeroed_with(
            split,
            &mut partial,
            co * ci,
            || (),
            |_, n, gxn, pw| {
                let gn = &g[n * co * l..(n + 1) * co * l];
                self.backward_example(x, n, wt, gn, gxn, pw, weights);
            },
        );
        let gw = &mut out[nx..];
        for (j, d) in gw.iter_mut().enumerate().filter(|_| weights) {
            *d = batch_sum(&partial, self.n, co * ci, j);
        }
        out
    }
}

/// Value `j` of per-example partial results laid out `per_example` apart, summed over the `n`
/// examples in example order in `f64` from +0.0 (so a weight gradient does not depend on how
/// the examples were spread over the workers).
pub(crate) fn batch_sum<T: Float>(partial: &[T], n: usize, per_example: usize, j: usize) -> T {
    let acc = (0..n).fold(0f64, |acc, e| acc + partial[e * per_example + j].to_f64());
    T::from_f64(acc)
}

impl CustomOp2 for Conv1x1 {
    fn name(&self) -> &'static str {
        "nas-conv1x1"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2| crate::device::conv(
        s1,
        l1,
        s2,
        l2,
        crate::device::pointwise_geom(op.n, op.ci, op.h, op.w, op.co, op.stride)?,
        false
    ));

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("conv2d 1x1", s1, |T| {
            let y = self.forward::<T>(slice(s1, l1)?, slice(s2, l2)?);
            Ok((
                T::to_cpu_storage_owned(y),
                Shape::from((self.n, self.co, self.oh(), self.ow())),
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
        crate::cpu::input_and_weight_grads(x, w, g, &Conv1x1Bwd(*self))
    }
}

/// Backward of [`Conv1x1`]: inputs (x, W, dL/dy), output `[dL/dx, dL/dW]` flat.
struct Conv1x1Bwd(Conv1x1);

impl CustomOp3 for Conv1x1Bwd {
    fn name(&self) -> &'static str {
        "nas-conv1x1-bwd"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2, s3, l3| {
        let c = &op.0;
        let g = crate::device::pointwise_geom(c.n, c.ci, c.h, c.w, c.co, c.stride)?;
        crate::device::conv_bwd([(s1, l1), (s2, l2), (s3, l3)], g, false)
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
        dispatch_float!("conv2d 1x1 backward", s1, |T| {
            let out = self
                .0
                .backward::<T>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}
