//! The building blocks of the ENAS micro networks (melodyguan/enas `micro_child.py`), each
//! composed from `nas-ops`: separable convolutions stacked twice, the factorized reduction,
//! ReLU-1x1 conv-BN, and the classifier. Every batch norm has a scale and an offset, as the
//! reference's `batch_norm` (decay 0.9 = momentum 0.1, epsilon 1e-5).
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::{NasError, Result};
use nas_model::{Init, ParamStore};
use nas_ops::BatchNorm2d;

/// Batch-norm epsilon of the reference (`image_ops.batch_norm`).
pub const BN_EPS: f64 = 1e-5;
/// Momentum (PyTorch sense) = 1 - the reference's decay 0.9.
pub const BN_MOMENTUM: f64 = 0.1;

/// A batch norm with scale and offset registered in `store`.
pub fn batch_norm(store: &mut ParamStore, name: &str, c: usize) -> Result<BatchNorm2d> {
    let w = store.var(&format!("{name}.scale"), &[c], Init::Const(1.0))?;
    let b = store.var(&format!("{name}.offset"), &[c], Init::Const(0.0))?;
    Ok(BatchNorm2d::new(c, Some((w, b)), BN_EPS, Some(BN_MOMENTUM)))
}

/// A convolution weight `[out, in_per_group, k, k]` (fan-in uniform initialisation).
pub fn conv_weight(
    store: &mut ParamStore,
    name: &str,
    c_out: usize,
    c_in: usize,
    k: usize,
) -> Result<Var> {
    store.var(
        name,
        &[c_out, c_in, k, k],
        Init::FanInUniform {
            fan_in: c_in * k * k,
        },
    )
}

/// ReLU, 1x1 convolution, BN (`calibrate` / `layer_base` / `final_conv` of the reference).
pub struct ReluConvBn {
    w: Var,
    bn: BatchNorm2d,
}

impl ReluConvBn {
    /// A new block from `c_in` to `c_out` channels.
    pub fn new(store: &mut ParamStore, name: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(ReluConvBn {
            w: conv_weight(store, &format!("{name}.w"), c_out, c_in, 1)?,
            bn: batch_norm(store, &format!("{name}.bn"), c_out)?,
        })
    }

    /// Forward pass.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = nas_ops::conv2d(&nas_ops::relu(x)?, self.w.as_tensor(), 1, 0)?;
        self.bn.forward(&y, train)
    }

    /// Its batch norm.
    pub fn bn(&self) -> &BatchNorm2d {
        &self.bn
    }
}

/// `_factorized_reduction` (stride 2): two 1x1 convolutions to `c_out / 2` channels each,
/// one on the even pixels, one on the odd pixels (the input shifted by one, zero padded on
/// the right and bottom as TensorFlow's `SAME`), concatenated, BN. `relu` puts a ReLU
/// first (the reference does where it calls it from `calibrate`).
pub struct FactorizedReduction {
    w: [Var; 2],
    bn: BatchNorm2d,
    relu: bool,
}

impl FactorizedReduction {
    /// A new block; `c_out` must be even.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        relu: bool,
    ) -> Result<Self> {
        if !c_out.is_multiple_of(2) {
            return Err(NasError::Architecture(format!(
                "the factorized reduction needs an even channel count, got {c_out}"
            )));
        }
        Ok(FactorizedReduction {
            w: [
                conv_weight(store, &format!("{name}.path1.w"), c_out / 2, c_in, 1)?,
                conv_weight(store, &format!("{name}.path2.w"), c_out / 2, c_in, 1)?,
            ],
            bn: batch_norm(store, &format!("{name}.bn"), c_out)?,
            relu,
        })
    }

    /// Forward pass (output `ceil(h/2) x ceil(w/2)`).
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let x = if self.relu {
            nas_ops::relu(x)?
        } else {
            x.clone()
        };
        let (_, _, h, w) = x.dims4()?;
        let a = nas_ops::conv2d(&x, self.w[0].as_tensor(), 2, 0)?;
        let shifted = x
            .pad_with_zeros(2, 0, 1)?
            .pad_with_zeros(3, 0, 1)?
            .narrow(2, 1, h)?
            .narrow(3, 1, w)?;
        let b = nas_ops::conv2d(&shifted, self.w[1].as_tensor(), 2, 0)?;
        self.bn.forward(&Tensor::cat(&[a, b], 1)?, train)
    }

    /// Its batch norm.
    pub fn bn(&self) -> &BatchNorm2d {
        &self.bn
    }
}

/// Two stacked (ReLU, depthwise `k x k`, pointwise, BN), the first depthwise strided
/// (`_enas_conv` / `_fixed_conv` with `stack_conv=2`).
pub struct SepConv {
    k: usize,
    stride: usize,
    dw: [Var; 2],
    pw: [Var; 2],
    bn: [BatchNorm2d; 2],
}

impl SepConv {
    /// A new block from `c_in` to `c_out` channels.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        k: usize,
        stride: usize,
        c_in: usize,
        c_out: usize,
    ) -> Result<Self> {
        Ok(SepConv {
            k,
            stride,
            dw: [
                conv_weight(store, &format!("{name}.s0.w_depth"), c_in, 1, k)?,
                conv_weight(store, &format!("{name}.s1.w_depth"), c_out, 1, k)?,
            ],
            pw: [
                conv_weight(store, &format!("{name}.s0.w_point"), c_out, c_in, 1)?,
                conv_weight(store, &format!("{name}.s1.w_point"), c_out, c_out, 1)?,
            ],
            bn: [
                batch_norm(store, &format!("{name}.s0.bn"), c_out)?,
                batch_norm(store, &format!("{name}.s1.bn"), c_out)?,
            ],
        })
    }

    /// Forward pass.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let mut y = x.clone();
        for s in 0..2 {
            let stride = if s == 0 { self.stride } else { 1 };
            let (dw, pw) = (self.dw[s].as_tensor(), self.pw[s].as_tensor());
            y = nas_ops::relu_dw_pw_bn(&y, dw, pw, &self.bn[s], stride, self.k / 2, 1, train)?;
        }
        Ok(y)
    }

    /// Its batch norms.
    pub fn bns(&self) -> Vec<&BatchNorm2d> {
        self.bn.iter().collect()
    }
}

/// The reference's op indices: 0 sep conv 3x3, 1 sep conv 5x5, 2 avg pool 3x3, 3 max pool
/// 3x3, 4 identity.
pub fn pool(x: &Tensor, op: usize, stride: usize) -> CResult<Tensor> {
    match op {
        2 => nas_ops::avg_pool2d(x, 3, stride, 1, false),
        _ => nas_ops::max_pool2d(x, 3, stride, 1),
    }
}

/// The classifier: a weight without bias (the reference's `fc/w`).
pub struct Classifier {
    w: Var,
}

impl Classifier {
    /// A new classifier.
    pub fn new(store: &mut ParamStore, c_in: usize, classes: usize) -> Result<Self> {
        Ok(Classifier {
            w: store.var(
                "fc.w",
                &[classes, c_in],
                Init::FanInUniform { fan_in: c_in },
            )?,
        })
    }

    /// ReLU, global average pooling, linear map.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = nas_ops::global_avg_pool(&nas_ops::relu(x)?)?;
        let y = y.flatten_from(1)?;
        y.matmul(&self.w.as_tensor().t()?)
    }
}
