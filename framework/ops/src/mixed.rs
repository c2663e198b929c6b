//! The DARTS mixed-operation sum `y = sum_k w_k * ys[k]` (Liu et al. 2019, DARTS, eq. 2;
//! quark0/darts `model_search.py` `MixedOp.forward`) as one fused kernel, with shared weights
//! `[K]` or per-example weights `[N, K]` (GDAS/hypernet-style per-sample mixing).
//!
//! The K candidate outputs are stacked once (`[K, ...]`, candle's `stack`), then one pass writes
//! the sum; the backward produces every `dL/dys[k] = w_k * g` and every `dL/dw_k = <g, ys[k]>`
//! in one pass over `g`, block by block.
use crate::cpu::{dispatch_float, dot, slice, Float};
use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per rayon task when the weights are shared.
const BLOCK: usize = 8192;

/// Mixed-op weighted sum: `sum_k weights[k] * ys[k]` (shared weights `[K]`) or, per example n,
/// `sum_k weights[n, k] * ys[k][n]` (weights `[N, K]`, N the first dimension of every `ys[k]`).
///
/// All `ys` must have the same shape and dtype. Differentiable with respect to every `ys[k]` and
/// `weights` (a weight that is exactly 0 still gets its gradient `<g, ys[k]>`).
pub fn weighted_sum(ys: &[Tensor], weights: &Tensor) -> Result<Tensor> {
    let Some(first) = ys.first() else {
        bail!("weighted_sum: no operands");
    };
    let k = ys.len();
    let shape = first.shape().clone();
    for (i, y) in ys.iter().enumerate() {
        if y.shape() != &shape || y.dtype() != first.dtype() {
            bail!(
                "weighted_sum: operand {i} is {:?} {:?}, operand 0 is {:?} {:?}",
                y.dims(),
                y.dtype(),
                shape.dims(),
                first.dtype()
            );
        }
    }
    crate::cpu::check_float("weighted_sum", first.dtype())?;
    if weights.dtype() != first.dtype() {
        bail!(
            "weighted_sum: weights are {:?}, operands {:?}",
            weights.dtype(),
            first.dtype()
        );
    }
    let numel = shape.elem_count();
    let per_example = match weights.dims() {
        [kw] if *kw == k => None,
        [n, kw] if *kw == k && shape.rank() >= 1 && shape.dims()[0] == *n => Some(*n),
        d => bail!(
            "weighted_sum: weights must be [{k}] or [N, {k}] with N = {:?}, got {d:?}",
            shape.dims().first()
        ),
    };
    let chunk = match per_example {
        Some(n) => numel / n.max(1),
        None => BLOCK,
    };
    let op = WeightedSum {
        k,
        numel,
        chunk: chunk.max(1),
        per_example: per_example.is_some(),
        shape,
    };
    let stacked = Tensor::stack(ys, 0)?;
    stacked.apply_op2(&weights.contiguous()?, op)
}

#[derive(Clone)]
struct WeightedSum {
    k: usize,
    numel: usize,
    /// Elements per block: one example when `per_example`, else [`BLOCK`].
    chunk: usize,
    per_example: bool,
    shape: Shape,
}

impl WeightedSum {
    #[inline]
    fn weight<T: Float>(&self, w: &[T], block: usize, k: usize) -> T {
        if self.per_example {
            w[block * self.k + k]
        } else {
            w[k]
        }
    }

    fn forward<T: Float>(&self, ys: &[T], w: &[T]) -> Vec<T> {
        let mut y = vec![T::ZERO; self.numel];
        y.par_chunks_mut(self.chunk)
            .enumerate()
            .for_each(|(b, yb)| {
                let start = b * self.chunk;
                for k in 0..self.k {
                    let wk = self.weight(w, b, k);
                    let src = &ys[k * self.numel + start..k * self.numel + start + yb.len()];
                    if k == 0 {
                        for (d, &s) in yb.iter_mut().zip(src) {
                            *d = wk * s;
                        }
                    } else {
                        for (d, &s) in yb.iter_mut().zip(src) {
                            *d += wk * s;
                        }
                    }
                }
            });
        y
    }

    /// `[dL/dys (K * numel), dL/dw (K or N * K)]`.
    fn backward<T: Float>(&self, ys: &[T], w: &[T], g: &[T]) -> Vec<T> {
        let (k, numel, chunk) = (self.k, self.numel, self.chunk);
        let blocks = numel.div_ceil(chunk);
        let nw = w.len();
        let mut out = vec![T::ZERO; k * numel + nw];
        let (dys, dw) = out.split_at_mut(k * numel);
        // pieces[b][k] = the block-b part of dL/dys[k]: disjoint borrows handed to one task per block.
        let mut pieces: Vec<Vec<&mut [T]>> = (0..blocks).map(|_| Vec::with_capacity(k)).collect();
        for dk in dys.chunks_mut(numel.max(1)) {
            for (b, piece) in dk.chunks_mut(chunk).enumerate() {
                pieces[b].push(piece);
            }
        }
        let partial: Vec<Vec<f64>> = pieces
            .into_par_iter()
            .enumerate()
            .map(|(b, ks)| {
                let start = b * chunk;
                ks.into_iter()
                    .enumerate()
                    .map(|(kk, d)| {
                        let gb = &g[start..start + d.len()];
                        let wk = self.weight(w, b, kk);
                        for (dv, &gv) in d.iter_mut().zip(gb) {
                            *dv = wk * gv;
                        }
                        let yb = &ys[kk * numel + start..kk * numel + start + gb.len()];
                        dot(gb, yb).to_f64()
                    })
                    .collect()
            })
            .collect();
        if self.per_example {
            for (b, p) in partial.iter().enumerate() {
                for (kk, &v) in p.iter().enumerate() {
                    dw[b * k + kk] = T::from_f64(v);
                }
            }
        } else {
            for (kk, d) in dw.iter_mut().enumerate() {
                *d = T::from_f64(partial.iter().map(|p| p[kk]).sum());
            }
        }
        out
    }
}

impl CustomOp2 for WeightedSum {
    fn name(&self) -> &'static str {
        "nas-weighted-sum"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch_float!("weighted_sum", s1, |T| {
            let y = self.forward::<T>(slice(s1, l1)?, slice(s2, l2)?);
            Ok((T::to_cpu_storage_owned(y), self.shape.clone()))
        })
    }

    fn bwd(
        &self,
        stacked: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let all = stacked.apply_op3_no_bwd(w, &g.contiguous()?, &WeightedSumBwd(self.clone()))?;
        let n = stacked.elem_count();
        let gys = all.narrow(0, 0, n)?.reshape(stacked.shape())?;
        let gw = all.narrow(0, n, w.elem_count())?.reshape(w.shape())?;
        Ok((Some(gys), Some(gw)))
    }
}

/// Inputs (stacked ys, weights, dL/dy); output `[dL/dys, dL/dw]` flat.
struct WeightedSumBwd(WeightedSum);

impl CustomOp3 for WeightedSumBwd {
    fn name(&self) -> &'static str {
        "nas-weighted-sum-bwd"
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
        dispatch_float!("weighted_sum backward", s1, |T| {
            let out = self
                .0
                .backward::<T>(slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }
}
