//! A convolution computed directly, one output element at a time, for tensors off the CPU: the
//! dense and grouped convolutions that the CPU runs as im2col + matmul ([`crate::conv2d`]) run
//! on a CUDA device through the convolution kernels of `nas-kernels` ([`crate::device`]),
//! without the host round trip of the im2col op. The CPU forward of these ops (reached only if
//! a device launch declines its input) is the plain loop of [`crate::reference`] in f64.
#![cfg_attr(not(feature = "cuda"), allow(dead_code))]
use crate::cpu::{dispatch_float, slice, Float};
use crate::reference::{conv2d_backward, conv2d_forward, ConvSpec};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// Sizes of one direct convolution: input `[n, ci, h, w]`, weight `[co, ci/groups, k, k]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectConv {
    pub xd: [usize; 4],
    pub wd: [usize; 4],
    pub spec: ConvSpec,
}

/// `conv(x, weight)` through [`DirectConv`] (both contiguous), differentiable in both.
pub(crate) fn direct_conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (n, ci, h, w) = x.dims4()?;
    let (co, cig, k, _) = weight.dims4()?;
    let op = DirectConv {
        xd: [n, ci, h, w],
        wd: [co, cig, k, k],
        spec: ConvSpec {
            stride,
            padding,
            dilation: 1,
            groups,
        },
    };
    x.contiguous()?.apply_op2(&weight.contiguous()?, op)
}

impl DirectConv {
    #[cfg(feature = "cuda")]
    fn geom(&self) -> Result<nas_kernels::Geom> {
        let ([n, ci, h, w], [co, _, k, _], s) = (self.xd, self.wd, self.spec);
        nas_kernels::Geom::conv(
            n, ci, h, w, co, k, s.stride, s.padding, s.dilation, s.groups,
        )
        .map_err(|e| candle_core::Error::Msg(format!("conv2d on CUDA: {e}")))
    }
}

fn to_f64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn from_f64<T: Float>(v: Vec<f64>) -> Vec<T> {
    v.into_iter().map(T::from_f64).collect()
}

impl CustomOp2 for DirectConv {
    fn name(&self) -> &'static str {
        "nas-direct-conv2d"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2| crate::device::conv(
        s1,
        l1,
        s2,
        l2,
        op.geom()?,
        false
    ));

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch_float!("conv2d", s1, |T| {
            let x = to_f64::<T>(slice(s1, l1)?);
            let w = to_f64::<T>(slice(s2, l2)?);
            let (y, yd) = conv2d_forward(&x, self.xd, &w, self.wd, self.spec);
            Ok((
                T::to_cpu_storage_owned(from_f64(y)),
                Shape::from(yd.to_vec()),
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
        crate::cpu::input_and_weight_grads(x, w, g, &DirectConvBwd(*self))
    }
}

/// Backward of [`DirectConv`]: inputs (x, weight, dL/dy), output `[dL/dx, dL/dweight]` flat.
struct DirectConvBwd(DirectConv);

impl CustomOp3 for DirectConvBwd {
    fn name(&self) -> &'static str {
        "nas-direct-conv2d-bwd"
    }

    crate::host_fallback::cuda_via_device!(|op, s1, l1, s2, l2, s3, l3| {
        crate::device::conv_bwd([(s1, l1), (s2, l2), (s3, l3)], op.0.geom()?, false)
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
        let c = &self.0;
        dispatch_float!("conv2d backward", s1, |T| {
            let x = to_f64::<T>(slice(s1, l1)?);
            let w = to_f64::<T>(slice(s2, l2)?);
            let g = to_f64::<T>(slice(s3, l3)?);
            let (mut gx, gw) = conv2d_backward(&x, c.xd, &w, c.wd, &g, c.spec);
            gx.extend(gw);
            let len = gx.len();
            Ok((T::to_cpu_storage_owned(from_f64(gx)), Shape::from(len)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The direct op's CPU path (the reference loops) against the im2col convolution: values
    /// and both gradients, dense and grouped, strided and padded.
    #[test]
    fn the_direct_convolution_matches_the_unfolded_one() {
        let dev = Device::Cpu;
        let fill = |len: usize, seed: usize| -> Vec<f64> {
            (0..len)
                .map(|i| ((i * 31 + seed * 17) % 23) as f64 / 11.0 - 1.0)
                .collect()
        };
        for (groups, stride, padding) in [(1, 1, 1), (1, 2, 0), (2, 2, 1)] {
            let x = Var::from_vec(fill(2 * 4 * 7 * 7, 1), (2, 4, 7, 7), &dev).unwrap();
            let w =
                Var::from_vec(fill(6 * (4 / groups) * 9, 2), (6, 4 / groups, 3, 3), &dev).unwrap();
            let run = |y: Tensor| {
                let r = Tensor::arange(0f64, y.elem_count() as f64, &dev)
                    .unwrap()
                    .reshape(y.shape())
                    .unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                [
                    y,
                    grads.get(x.as_tensor()).unwrap().clone(),
                    grads.get(w.as_tensor()).unwrap().clone(),
                ]
                .map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            };
            let direct =
                run(direct_conv2d(x.as_tensor(), w.as_tensor(), stride, padding, groups).unwrap());
            let unfolded =
                run(
                    crate::grouped_conv2d(x.as_tensor(), w.as_tensor(), stride, padding, groups)
                        .unwrap(),
                );
            for (a, b) in direct.iter().zip(&unfolded) {
                assert_eq!(a.len(), b.len());
                for (p, q) in a.iter().zip(b) {
                    assert!(
                        (p - q).abs() < 1e-9,
                        "groups {groups} stride {stride}: {p} vs {q}"
                    );
                }
            }
        }
    }
}
