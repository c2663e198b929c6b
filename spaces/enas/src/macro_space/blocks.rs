//! The macro layers' ops (melodyguan/enas `general_child.py`): a convolution + BN unit,
//! the six branch ops in the search order (`_conv_branch` / `_pool_branch`: 1x1 conv-BN-ReLU,
//! then conv-BN-ReLU or a pool) and in the standalone order (`_fixed_layer`: ReLU-1x1
//! conv-BN, then ReLU-conv-BN), and the bias-free classifier without ReLU.
use candle_core::{Result as CResult, Tensor, Var};
use nas_core::Result;
use nas_model::{Init, ParamStore};
use nas_ops::BatchNorm2d;

use crate::blocks::{batch_norm, conv_weight};

/// A `k x k` convolution (plain, or separable: depthwise `k x k` then pointwise 1x1 with
/// channel multiplier 1, `tf.nn.separable_conv2d`), stride 1, `SAME` padding, then BN.
pub struct ConvBn {
    k: usize,
    depthwise: Option<Var>,
    w: Var,
    bn: BatchNorm2d,
}

impl ConvBn {
    /// A plain convolution from `c_in` to `c_out` channels.
    pub fn plain(
        store: &mut ParamStore,
        name: &str,
        k: usize,
        c_in: usize,
        c_out: usize,
    ) -> Result<Self> {
        Ok(ConvBn {
            k,
            depthwise: None,
            w: conv_weight(store, &format!("{name}.w"), c_out, c_in, k)?,
            bn: batch_norm(store, &format!("{name}.bn"), c_out)?,
        })
    }

    /// A separable convolution on `c` channels.
    pub fn separable(store: &mut ParamStore, name: &str, k: usize, c: usize) -> Result<Self> {
        Ok(ConvBn {
            k,
            depthwise: Some(conv_weight(store, &format!("{name}.w_depth"), c, 1, k)?),
            w: conv_weight(store, &format!("{name}.w_point"), c, c, 1)?,
            bn: batch_norm(store, &format!("{name}.bn"), c)?,
        })
    }

    /// Convolution then BN.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = match &self.depthwise {
            Some(dw) => {
                let y = nas_ops::depthwise_conv2d(x, dw.as_tensor(), 1, self.k / 2, 1)?;
                nas_ops::conv2d(&y, self.w.as_tensor(), 1, 0)?
            }
            None => nas_ops::conv2d(x, self.w.as_tensor(), 1, self.k / 2)?,
        };
        self.bn.forward(&y, train)
    }

    /// Its batch norm.
    pub fn bn(&self) -> &BatchNorm2d {
        &self.bn
    }

    /// Multiply-accumulates per output pixel.
    pub fn macs_per_pixel(&self) -> usize {
        let (co, ci, k, _) = self.w.as_tensor().dims4().unwrap_or((0, 0, 0, 0));
        let dw = self.depthwise.as_ref().map_or(0, |d| d.elem_count());
        co * ci * k * k + dw
    }
}

/// Where the ReLUs sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The search network (`_conv_branch`, `_pool_branch`): conv-BN-ReLU.
    Search,
    /// The standalone network (`_fixed_layer`): ReLU-conv-BN.
    Fixed,
}

/// One op of a macro layer: a 1x1 conv-BN to the layer's width, then a `k x k` conv-BN or a
/// 3x3 stride-1 pool.
pub struct MacroOp {
    order: Order,
    inp: ConvBn,
    out: Option<ConvBn>,
    /// `Some(true)` avg pool (padding excluded from the count, as TensorFlow's `SAME`
    /// average pool), `Some(false)` max pool.
    pool: Option<bool>,
}

impl MacroOp {
    /// Op `op` (index into [`super::MACRO_OPS`]) from `c_in` to `c` channels; with
    /// `sep_as_conv` the separable ops are built as plain convolutions (the reference's
    /// `_fixed_layer`).
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        op: usize,
        c_in: usize,
        c: usize,
        order: Order,
        sep_as_conv: bool,
    ) -> Result<Self> {
        let inp = ConvBn::plain(store, &format!("{name}.inp"), 1, c_in, c)?;
        let k = if op < 2 { 3 } else { 5 };
        let (out, pool) = match op {
            0 | 2 => (
                Some(ConvBn::plain(store, &format!("{name}.conv"), k, c, c)?),
                None,
            ),
            1 | 3 if sep_as_conv => (
                Some(ConvBn::plain(store, &format!("{name}.conv"), k, c, c)?),
                None,
            ),
            1 | 3 => (
                Some(ConvBn::separable(store, &format!("{name}.sep"), k, c)?),
                None,
            ),
            4 => (None, Some(true)),
            _ => (None, Some(false)),
        };
        Ok(MacroOp {
            order,
            inp,
            out,
            pool,
        })
    }

    /// Forward pass (same size, `c` channels).
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        let y = match self.order {
            Order::Search => nas_ops::relu(&self.inp.forward(x, train)?)?,
            Order::Fixed => self.inp.forward(&nas_ops::relu(x)?, train)?,
        };
        match (&self.out, self.pool) {
            (Some(conv), _) => match self.order {
                Order::Search => nas_ops::relu(&conv.forward(&y, train)?),
                Order::Fixed => conv.forward(&nas_ops::relu(&y)?, train),
            },
            (None, Some(true)) => nas_ops::avg_pool2d(&y, 3, 1, 1, false),
            (None, _) => nas_ops::max_pool2d(&y, 3, 1, 1),
        }
    }

    /// Its batch norms.
    pub fn bns(&self) -> Vec<&BatchNorm2d> {
        let mut v = vec![self.inp.bn()];
        if let Some(o) = &self.out {
            v.push(o.bn());
        }
        v
    }

    /// Multiply-accumulates per output pixel (a pool counts its 9 taps per channel).
    pub fn macs_per_pixel(&self, c: usize) -> usize {
        self.inp.macs_per_pixel() + self.out.as_ref().map_or(9 * c, |o| o.macs_per_pixel())
    }
}

/// The classifier of `general_child.py`: global average pooling of the last layer (no
/// ReLU), a bias-free linear map (the reference's dropout before it is not applied).
pub struct MacroHead {
    w: Var,
}

impl MacroHead {
    /// A new head.
    pub fn new(store: &mut ParamStore, c: usize, classes: usize) -> Result<Self> {
        Ok(MacroHead {
            w: store.var("fc.w", &[classes, c], Init::FanInUniform { fan_in: c })?,
        })
    }

    /// Logits.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = nas_ops::global_avg_pool(x)?.flatten_from(1)?;
        y.matmul(&self.w.as_tensor().t()?)
    }
}
