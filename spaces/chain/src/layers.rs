//! The layers every chain space is made of, each built from `nas-ops`: convolution (dense,
//! depthwise or grouped) with batch norm and activation, the linear classifier, ReLU6,
//! channel shuffle and the ShuffleNetV2 channel split (the last two are pure reshapes).
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{Init, ParamStore};
use nas_ops::BatchNorm2d;
use serde::{Deserialize, Serialize};

use crate::{CostSum, Shape};

/// Batch-norm epsilon (PyTorch's default, used by the SPOS and FBNet reference code).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm running-average factor (PyTorch's default 0.1).
pub const BN_MOMENTUM: f64 = 0.1;

/// The activation after a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// None (a linear projection).
    None,
    /// `max(x, 0)` (SPOS, FBNet).
    Relu,
    /// `min(max(x, 0), 6)` (ProxylessNAS, MobileNetV2).
    Relu6,
}

impl Act {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Act::None => Ok(x.clone()),
            Act::Relu => nas_ops::relu(x),
            Act::Relu6 => relu6(x),
        }
    }
}

/// `min(max(x, 0), 6)` written as `relu(x) - relu(x - 6)`, so that both the value and the
/// gradient (1 on `(0, 6)`, 0 elsewhere) come from `nas_ops::relu`.
pub fn relu6(x: &Tensor) -> CResult<Tensor> {
    let a = nas_ops::relu(x)?;
    let b = nas_ops::relu(&x.affine(1.0, -6.0)?)?;
    a - b
}

/// Channel shuffle with `groups` groups (ShuffleNet; FBNet's grouped blocks):
/// `[N, C, H, W] -> [N, g, C/g, H, W] -> [N, C/g, g, H, W] -> [N, C, H, W]`, i.e. output
/// channel `i * g + j` is input channel `j * C/g + i`.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> CResult<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if groups <= 1 {
        return Ok(x.clone());
    }
    if !c.is_multiple_of(groups) {
        candle_core::bail!("channel_shuffle: {c} channels do not split into {groups} groups");
    }
    x.reshape((n, groups, c / groups, h, w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, c, h, w))
}

/// The channel split of a stride-1 ShuffleNetV2 block as the SPOS reference writes it
/// (`channel_shuffle` in `blocks.py`): the even channels `0, 2, 4, ...` pass through, the odd
/// channels `1, 3, 5, ...` enter the block's main branch. Returns `(even, odd)`.
pub fn split_even_odd(x: &Tensor) -> CResult<(Tensor, Tensor)> {
    let (n, c, h, w) = x.dims4()?;
    if !c.is_multiple_of(2) {
        candle_core::bail!("split_even_odd: {c} channels is odd");
    }
    let r = x.reshape((n, c / 2, 2, h, w))?;
    let even = r.narrow(2, 0, 1)?.reshape((n, c / 2, h, w))?;
    let odd = r.narrow(2, 1, 1)?.reshape((n, c / 2, h, w))?;
    Ok((even, odd))
}

/// A batch norm; when `store.affine_bn()` (the default) affine, registered in `store` as
/// `{name}.weight` / `{name}.bias` (ones and zeros, as PyTorch initialises them), else
/// without parameters (PyTorch's `affine=False`).
pub fn batch_norm(store: &mut ParamStore, name: &str, c: usize) -> Result<BatchNorm2d> {
    if !store.affine_bn() {
        return Ok(BatchNorm2d::new(c, None, BN_EPS, Some(BN_MOMENTUM)));
    }
    let w = store.var(&format!("{name}.weight"), &[c], Init::Const(1.0))?;
    let b = store.var(&format!("{name}.bias"), &[c], Init::Const(0.0))?;
    Ok(BatchNorm2d::new(c, Some((w, b)), BN_EPS, Some(BN_MOMENTUM)))
}

/// A `k x k` convolution without bias (padding `k / 2`), an affine batch norm and an
/// activation: the `ConvBNReLU` unit of all three spaces. The convolution is dense
/// (`groups == 1`), depthwise (`groups == c_in == c_out`) or grouped.
pub struct ConvBn {
    w: Var,
    bn: BatchNorm2d,
    k: usize,
    stride: usize,
    groups: usize,
    c_in: usize,
    act: Act,
}

impl ConvBn {
    /// Builds the unit; parameters are `{name}.conv.weight` (PyTorch's default
    /// initialisation) and `{name}.bn.{weight,bias}`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        act: Act,
    ) -> Result<Self> {
        if groups == 0
            || !c_in.is_multiple_of(groups)
            || !c_out.is_multiple_of(groups)
            || k == 0
            || stride == 0
        {
            return Err(NasError::Other(format!(
                "{name}: a {k}x{k} convolution {c_in} -> {c_out} with {groups} groups and stride {stride} is not possible"
            )));
        }
        let fan_in = (c_in / groups) * k * k;
        let w = store.var(
            &format!("{name}.conv.weight"),
            &[c_out, c_in / groups, k, k],
            Init::FanInUniform { fan_in },
        )?;
        Ok(ConvBn {
            w,
            bn: batch_norm(store, &format!("{name}.bn"), c_out)?,
            k,
            stride,
            groups,
            c_in,
            act,
        })
    }

    /// A depthwise unit (`groups == channels`).
    pub fn depthwise(
        store: &mut ParamStore,
        name: &str,
        c: usize,
        k: usize,
        stride: usize,
        act: Act,
    ) -> Result<Self> {
        Self::new(store, name, c, c, k, stride, c, act)
    }

    /// Convolution, batch norm, activation.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let w = self.w.as_tensor();
        let pad = self.k / 2;
        let y = if self.groups == 1 {
            nas_ops::conv2d(x, w, self.stride, pad)?
        } else if self.groups == self.c_in && w.dims()[0] == self.c_in {
            nas_ops::depthwise_conv2d(x, w, self.stride, pad, 1)?
        } else {
            nas_ops::grouped_conv2d(x, w, self.stride, pad, self.groups)?
        };
        let y = self.bn.forward(&y, train)?;
        self.act.apply(&y)
    }

    /// Its batch norm.
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }

    /// Adds the unit's cost to `sum` (see [`CostSum::conv`]); returns the output shape.
    pub fn cost(
        sum: &mut CostSum,
        input: Shape,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> Shape {
        sum.conv(input, c_out, k, stride, groups, true)
    }
}

/// A linear classifier `[classes, features]`, with or without bias; PyTorch's `nn.Linear`
/// initialisation (`U(-1/sqrt(in), 1/sqrt(in))`).
pub struct Linear {
    w: Var,
    b: Option<Var>,
}

impl Linear {
    /// Builds `{name}.weight` (and `{name}.bias`).
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        bias: bool,
    ) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: c_in };
        let w = store.var(&format!("{name}.weight"), &[c_out, c_in], init)?;
        let b = if bias {
            Some(store.var(&format!("{name}.bias"), &[c_out], init)?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }

    /// `x w^T (+ b)` for `x` `[N, features]`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = x.matmul(&self.w.as_tensor().t()?)?;
        match &self.b {
            Some(b) => y.broadcast_add(b.as_tensor()),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn relu6_clips_both_ends_and_its_gradient_is_the_indicator() {
        let x = Var::from_tensor(&t(vec![-1.0, 0.5, 3.0, 6.5, 9.0], &[5])).unwrap();
        let y = relu6(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0.0, 0.5, 3.0, 6.0, 6.0]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(gx, vec![0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn shuffle_interleaves_groups() {
        // Channels 0..6 in 2 groups: [0 1 2 | 3 4 5] -> 0 3 1 4 2 5 (ShuffleNet's shuffle).
        let x = t((0..6).map(|v| v as f32).collect(), &[1, 6, 1, 1]);
        let y = channel_shuffle(&x, 2).unwrap().flatten_all().unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
        // 3 groups of 2: [0 1 | 2 3 | 4 5] -> 0 2 4 1 3 5.
        let y = channel_shuffle(&x, 3).unwrap().flatten_all().unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![0., 2., 4., 1., 3., 5.]);
    }

    #[test]
    fn split_takes_even_then_odd_channels() {
        // Two pixels per channel so the reshape has to keep planes together.
        let x = t((0..12).map(|v| v as f32).collect(), &[1, 6, 1, 2]);
        let (e, o) = split_even_odd(&x).unwrap();
        let e = e.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let o = o.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(e, vec![0., 1., 4., 5., 8., 9.]);
        assert_eq!(o, vec![2., 3., 6., 7., 10., 11.]);
    }

    #[test]
    fn conv_bn_counts_and_shapes() {
        let mut store = ParamStore::new(Device::Cpu, DType::F32, nas_core::component_rng(0, "t"));
        let dw = ConvBn::depthwise(&mut store, "dw", 4, 5, 2, Act::None).unwrap();
        let g = ConvBn::new(&mut store, "g", 4, 6, 1, 1, 2, Act::Relu).unwrap();
        let d = ConvBn::new(&mut store, "d", 6, 3, 3, 1, 1, Act::Relu6).unwrap();
        let mut sum = CostSum::default();
        let s = ConvBn::cost(&mut sum, Shape::new(4, 7, 7), 4, 5, 2, 4);
        let s = ConvBn::cost(&mut sum, s, 6, 1, 1, 2);
        let s = ConvBn::cost(&mut sum, s, 3, 3, 1, 1);
        assert_eq!(sum.params, store.count());
        let x = Tensor::ones((2, 4, 7, 7), DType::F32, &Device::Cpu).unwrap();
        let y = d
            .forward(
                &g.forward(&dw.forward(&x, true).unwrap(), true).unwrap(),
                true,
            )
            .unwrap();
        assert_eq!(y.dims(), &[2, s.c, s.h, s.w]);
        assert!(ConvBn::new(&mut store, "bad", 4, 6, 1, 1, 3, Act::Relu).is_err());
    }
}
