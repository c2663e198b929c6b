//! ReLU and global average pooling, and a probe that records what every ReLU sees.
use std::cell::RefCell;

use crate::cpu::{dispatch_float, slice, sum, Float};
use crate::fresh::par_planes_zeroed;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

thread_local! {
    static RELU_PROBE: RefCell<Option<Vec<Tensor>>> = const { RefCell::new(None) };
}

/// Elementwise `max(x, 0)` (NaN passes through, as in PyTorch). The gradient flows where the
/// output is positive. Inside [`with_relu_probe`] on this thread, its input is recorded.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    crate::cpu::check_float("relu", x.dtype())?;
    probe_relu_input(x);
    x.contiguous()?.apply_op1(Relu)
}

/// Records `x` as a ReLU input inside [`with_relu_probe`] on this thread (else nothing).
pub(crate) fn probe_relu_input(x: &Tensor) {
    RELU_PROBE.with(|p| {
        if let Some(v) = p.borrow_mut().as_mut() {
            v.push(x.detach());
        }
    });
}

/// Runs `f` and returns, beside its result, the input of every [`relu`] called on this
/// thread meanwhile, in call order (the forward hooks of NASWOT, Mellor et al. 2021, which
/// read each ReLU's input). Probes do not nest: an inner probe takes the calls it sees.
pub fn with_relu_probe<R>(f: impl FnOnce() -> R) -> (R, Vec<Tensor>) {
    let outer = RELU_PROBE.with(|p| p.borrow_mut().replace(Vec::new()));
    let r = f();
    let seen = RELU_PROBE.with(|p| {
        let mut p = p.borrow_mut();
        let seen = p.take().unwrap_or_default();
        *p = outer;
        seen
    });
    (r, seen)
}

/// Global average pooling `[N, C, H, W] -> [N, C]` (the mean of each plane).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    crate::cpu::check_float("global_avg_pool", x.dtype())?;
    if !x.device().is_cpu() {
        // candle's reduction on the device (its gradient included).
        return x.reshape((n, c, h * w))?.mean(2);
    }
    x.contiguous()?.apply_op1(GlobalAvgPool { n, c, hw: h * w })
}

/// Elements per rayon task for the flat elementwise kernels.
const BLOCK: usize = 8192;

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "nas-relu"
    }

    crate::host_fallback::cuda_via_device!(|_op, s, l| crate::device::relu(s, l));

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("relu", s, |T| {
            let x: &[T] = slice(s, l)?;
            let y = par_planes_zeroed(x.len(), BLOCK, |b, yb| {
                for (yv, &xv) in yb.iter_mut().zip(&x[b * BLOCK..]) {
                    *yv = if xv < T::ZERO { T::ZERO } else { xv };
                }
            });
            Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
        })
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.contiguous()?
                .apply_op2_no_bwd(&g.contiguous()?, &ReluBwd)?,
        ))
    }
}

/// Inputs (y, dL/dy), output `dL/dy * (y > 0)`.
struct ReluBwd;

impl CustomOp2 for ReluBwd {
    fn name(&self) -> &'static str {
        "nas-relu-bwd"
    }

    crate::host_fallback::cuda_via_device!(|_op, s1, l1, s2, l2| crate::device::relu_bwd(
        s1, l1, s2, l2
    ));

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        dispatch_float!("relu backward", s1, |T| {
            let (y, g): (&[T], &[T]) = (slice(s1, l1)?, slice(s2, l2)?);
            let gx = par_planes_zeroed(y.len(), BLOCK, |b, gb| {
                let r = b * BLOCK..;
                for ((d, &yv), &gv) in gb.iter_mut().zip(&y[r.clone()]).zip(&g[r]) {
                    *d = if yv > T::ZERO { gv } else { T::ZERO };
                }
            });
            Ok((T::to_cpu_storage_owned(gx), l1.shape().clone()))
        })
    }
}

#[derive(Clone, Copy)]
struct GlobalAvgPool {
    n: usize,
    c: usize,
    hw: usize,
}

impl CustomOp1 for GlobalAvgPool {
    fn name(&self) -> &'static str {
        "nas-global-avg-pool"
    }

    crate::host_fallback::cuda_via_host!(1);

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let hw = self.hw;
        dispatch_float!("global_avg_pool", s, |T| {
            let x: &[T] = slice(s, l)?;
            let inv = T::from_f64(1.0 / hw.max(1) as f64);
            let y: Vec<T> = (0..self.n * self.c)
                .into_par_iter()
                .with_min_len(crate::cpu::planes_per_task(hw))
                .map(|p| sum(&x[p * hw..(p + 1) * hw]) * inv)
                .collect();
            Ok((T::to_cpu_storage_owned(y), Shape::from((self.n, self.c))))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            g.contiguous()?
                .apply_op1_no_bwd(&GlobalAvgPoolBwd(*self))?
                .reshape(x.shape())?,
        ))
    }
}

/// Input dL/dy `[N, C]`, output dL/dx `[N, C, H, W]` (each plane `g / (H * W)`).
struct GlobalAvgPoolBwd(GlobalAvgPool);

impl CustomOp1 for GlobalAvgPoolBwd {
    fn name(&self) -> &'static str {
        "nas-global-avg-pool-bwd"
    }

    crate::host_fallback::cuda_via_host!(1);

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(self.name());
        let GlobalAvgPool { n, c, hw } = self.0;
        dispatch_float!("global_avg_pool backward", s, |T| {
            let g: &[T] = slice(s, l)?;
            let inv = T::from_f64(1.0 / hw.max(1) as f64);
            let gx = par_planes_zeroed(n * c * hw, hw, |p, gp| gp.fill(g[p] * inv));
            Ok((T::to_cpu_storage_owned(gx), Shape::from(n * c * hw)))
        })
    }
}
