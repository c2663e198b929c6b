//! The tensor-side building blocks of NAS-Bench-201's networks, built only from `nas-ops`.
//!
//! Source: the benchmark's reference code (AutoDL-Projects,
//! `xautodl/models/cell_operations.py` and `xautodl/models/cell_infers/tiny_network.py`):
//!
//! * `none`: zeros; `skip_connect`: identity (inside a cell input and output channels agree
//!   and the stride is 1); `avg_pool_3x3`: `AvgPool2d(3, 1, 1, count_include_pad=False)`;
//! * `nor_conv_kxk`: `ReLUConvBN`: ReLU, `k x k` convolution (padding `k / 2`), BN. The
//!   reference gives the convolution a bias when the BN is not affine (`bias = not affine`);
//!   a per-channel constant before a batch norm is cancelled by it (batch statistics subtract
//!   it, running means track it), so the convolutions here have none;
//! * `ResNetBasicblock(C, 2C, stride 2)` between stages: `ReLUConvBN(C, 2C, 3, stride 2)`,
//!   `ReLUConvBN(2C, 2C, 3)`, plus the shortcut `AvgPool2d(2, 2)` then a bias-free 1x1
//!   convolution; the block returns shortcut + main path;
//! * stem: 3x3 convolution (bias-free) and BN; head: BN, ReLU, global average pooling and a
//!   linear classifier.
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::Result;
use nas_model::{Init, ParamStore};
use nas_ops::BatchNorm2d;

/// PyTorch's `BatchNorm2d` defaults, as the benchmark uses them.
pub const BN_EPS: f64 = 1e-5;
/// See [`BN_EPS`].
pub const BN_MOMENTUM: f64 = 0.1;

/// A batch norm over `c` channels, with affine parameters registered under `name` when
/// `affine`.
pub fn batch_norm(
    store: &mut ParamStore,
    name: &str,
    c: usize,
    affine: bool,
) -> Result<BatchNorm2d> {
    let params = if affine {
        Some((
            store.var(&format!("{name}.weight"), &[c], Init::Const(1.0))?,
            store.var(&format!("{name}.bias"), &[c], Init::Const(0.0))?,
        ))
    } else {
        None
    };
    Ok(BatchNorm2d::new(c, params, BN_EPS, Some(BN_MOMENTUM)))
}

/// A bias-free convolution weight `[c_out, c_in, k, k]`, PyTorch's default initialisation.
pub fn conv_weight(
    store: &mut ParamStore,
    name: &str,
    c_out: usize,
    c_in: usize,
    k: usize,
) -> Result<Var> {
    store.var(
        &format!("{name}.weight"),
        &[c_out, c_in, k, k],
        Init::FanInUniform {
            fan_in: c_in * k * k,
        },
    )
}

/// `ReLUConvBN(c_in, c_out, k, stride, padding k/2)`.
pub struct ReluConvBn {
    k: usize,
    stride: usize,
    w: Var,
    bn: BatchNorm2d,
}

impl ReluConvBn {
    /// Registers the weights under `prefix.op.1` (conv) and `prefix.op.2` (BN), the
    /// reference's module names.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        affine: bool,
    ) -> Result<Self> {
        Ok(ReluConvBn {
            k,
            stride,
            w: conv_weight(store, &format!("{prefix}.op.1"), c_out, c_in, k)?,
            bn: batch_norm(store, &format!("{prefix}.op.2"), c_out, affine)?,
        })
    }

    /// Forward.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = nas_ops::relu(x)?;
        let y = nas_ops::conv2d(&y, self.w.as_tensor(), self.stride, self.k / 2)?;
        self.bn.forward(&y, train)
    }

    /// Its batch norm.
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }
}

/// One candidate operation on a cell edge.
pub enum EdgeOp {
    /// `none`.
    Zero,
    /// `skip_connect`.
    Identity,
    /// `avg_pool_3x3`.
    AvgPool,
    /// `nor_conv_1x1` or `nor_conv_3x3`.
    Conv(ReluConvBn),
}

impl EdgeOp {
    /// Builds operation `name` (one of [`crate::OPS`]) at `c` channels under `prefix`.
    pub fn build(
        store: &mut ParamStore,
        prefix: &str,
        name: &str,
        c: usize,
        affine: bool,
    ) -> Result<Self> {
        Ok(match name {
            "none" => EdgeOp::Zero,
            "skip_connect" => EdgeOp::Identity,
            "avg_pool_3x3" => EdgeOp::AvgPool,
            "nor_conv_1x1" => EdgeOp::Conv(ReluConvBn::new(store, prefix, c, c, 1, 1, affine)?),
            "nor_conv_3x3" => EdgeOp::Conv(ReluConvBn::new(store, prefix, c, c, 3, 1, affine)?),
            other => {
                return Err(nas_core::NasError::Architecture(format!(
                    "unknown NAS-Bench-201 operation `{other}`; known: {}",
                    crate::OPS.join(", ")
                )))
            }
        })
    }

    /// Whether it is `none`.
    pub fn is_zero(&self) -> bool {
        matches!(self, EdgeOp::Zero)
    }

    /// Forward; `None` for `none` (a zero contribution).
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Option<Tensor>> {
        Ok(match self {
            EdgeOp::Zero => None,
            EdgeOp::Identity => Some(x.clone()),
            EdgeOp::AvgPool => Some(nas_ops::avg_pool2d(x, 3, 1, 1, false)?),
            EdgeOp::Conv(c) => Some(c.forward(x, train)?),
        })
    }

    /// Its batch norms.
    pub fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        match self {
            EdgeOp::Conv(c) => vec![c.batch_norm()],
            _ => vec![],
        }
    }
}

/// `ResNetBasicblock(c_in, c_out, stride 2)` with its average-pool shortcut.
pub struct ResBlock {
    conv_a: ReluConvBn,
    conv_b: ReluConvBn,
    shortcut: Var,
}

impl ResBlock {
    /// Registers `prefix.conv_a`, `prefix.conv_b` and `prefix.downsample.1` (affine BNs).
    pub fn new(store: &mut ParamStore, prefix: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(ResBlock {
            conv_a: ReluConvBn::new(store, &format!("{prefix}.conv_a"), c_in, c_out, 3, 2, true)?,
            conv_b: ReluConvBn::new(store, &format!("{prefix}.conv_b"), c_out, c_out, 3, 1, true)?,
            shortcut: conv_weight(store, &format!("{prefix}.downsample.1"), c_out, c_in, 1)?,
        })
    }

    /// Forward: shortcut + main path.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let main = self
            .conv_b
            .forward(&self.conv_a.forward(x, train)?, train)?;
        let short = nas_ops::avg_pool2d(x, 2, 2, 0, true)?;
        let short = nas_ops::conv2d(&short, self.shortcut.as_tensor(), 1, 0)?;
        if short.dims() != main.dims() {
            candle_core::bail!(
                "the residual reduction block needs even feature maps, got {:?} (the reference fails the same way)",
                x.dims()
            );
        }
        short + main
    }

    /// Its batch norms.
    pub fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        vec![self.conv_a.batch_norm(), self.conv_b.batch_norm()]
    }
}

/// A linear classifier with bias (PyTorch `nn.Linear` initialisation).
pub struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    /// Registers `name.weight` `[c_out, c_in]` and `name.bias`.
    pub fn new(store: &mut ParamStore, name: &str, c_in: usize, c_out: usize) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: c_in };
        Ok(Linear {
            w: store.var(&format!("{name}.weight"), &[c_out, c_in], init)?,
            b: store.var(&format!("{name}.bias"), &[c_out], init)?,
        })
    }

    /// `x w^T + b`.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())
    }
}
