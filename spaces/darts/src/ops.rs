//! The candidate operations of the DARTS space, exactly as the DARTS reference code defines
//! them (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019;
//! quark0/darts `cnn/operations.py`). Every tensor operation comes from `nas-ops`.
use candle_core::{Result as CResult, Tensor};
use nas_core::{NasError, Result};
use nas_model::{Init, ParamStore};
use nas_ops::BatchNorm2d;

use candle_core::Var;

/// The DARTS primitives in the reference order (`genotypes.py` PRIMITIVES).
pub const PRIMITIVES: [&str; 8] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
];

/// Every operation name this space can build (the primitives plus `sep_conv_7x7` and
/// `conv_7x1_1x7` of the reference OPS table).
pub const KNOWN_OPS: [&str; 10] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "conv_7x1_1x7",
];

/// Batch-norm epsilon and momentum of PyTorch's `BatchNorm2d` defaults, used by DARTS.
pub const BN_EPS: f64 = 1e-5;
/// See [`BN_EPS`].
pub const BN_MOMENTUM: f64 = 0.1;

/// Creates a batch norm with optional affine parameters registered in `store`.
pub fn batch_norm(
    store: &mut ParamStore,
    name: &str,
    c: usize,
    affine: bool,
) -> Result<BatchNorm2d> {
    let params = if affine {
        let w = store.var(&format!("{name}.weight"), &[c], Init::Const(1.0))?;
        let b = store.var(&format!("{name}.bias"), &[c], Init::Const(0.0))?;
        Some((w, b))
    } else {
        None
    };
    Ok(BatchNorm2d::new(c, params, BN_EPS, Some(BN_MOMENTUM)))
}

/// A convolution weight `[out, in/groups, kh, kw]` with PyTorch's default initialisation.
pub fn conv_weight(
    store: &mut ParamStore,
    name: &str,
    c_out: usize,
    c_in_per_group: usize,
    kh: usize,
    kw: usize,
) -> Result<Var> {
    store.var(
        &format!("{name}.weight"),
        &[c_out, c_in_per_group, kh, kw],
        Init::FanInUniform {
            fan_in: c_in_per_group * kh * kw,
        },
    )
}

/// Output size of a convolution or pool (`floor((h + 2p - d(k-1) - 1)/s) + 1`).
pub fn out_size(h: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (h + 2 * p - d * (k - 1) - 1) / s + 1
}

/// One operation of the space.
pub enum Op {
    /// `Zero`: outputs zeros (strided when stride 2).
    Zero {
        /// Stride.
        stride: usize,
    },
    /// `Identity` (skip_connect with stride 1).
    Identity,
    /// 3x3 max pool, padding 1 (optionally followed by an affine-free batch norm, as inside
    /// the search's MixedOp).
    MaxPool {
        /// Stride.
        stride: usize,
        /// BN after the pool (search only).
        bn: Option<BatchNorm2d>,
    },
    /// 3x3 average pool, padding 1, `count_include_pad=False`.
    AvgPool {
        /// Stride.
        stride: usize,
        /// BN after the pool (search only).
        bn: Option<BatchNorm2d>,
    },
    /// `SepConv`: (ReLU, depthwise k, pointwise, BN) twice, the first depthwise strided.
    SepConv {
        /// Kernel.
        k: usize,
        /// Stride of the first depthwise conv.
        stride: usize,
        /// dw1, pw1, dw2, pw2 weights.
        w: [Var; 4],
        /// The two batch norms.
        bn: [BatchNorm2d; 2],
    },
    /// `DilConv`: ReLU, depthwise k with dilation, pointwise, BN.
    DilConv {
        /// Kernel.
        k: usize,
        /// Stride.
        stride: usize,
        /// Dilation.
        dilation: usize,
        /// dw, pw weights.
        w: [Var; 2],
        /// The batch norm.
        bn: BatchNorm2d,
    },
    /// `conv_7x1_1x7`: ReLU, 1x7 conv, 7x1 conv, BN.
    Conv7x1x7 {
        /// Stride.
        stride: usize,
        /// The two weights.
        w: [Var; 2],
        /// The batch norm.
        bn: BatchNorm2d,
    },
    /// `FactorizedReduce`: ReLU, two stride-2 1x1 convs (the second on the input shifted by
    /// one pixel), concatenated, BN.
    FactorizedReduce {
        /// conv_1, conv_2 weights.
        w: [Var; 2],
        /// The batch norm.
        bn: BatchNorm2d,
    },
    /// `ReLUConvBN`: ReLU, conv k, BN.
    ReluConvBn {
        /// Kernel.
        k: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
        /// The weight.
        w: Var,
        /// The batch norm.
        bn: BatchNorm2d,
    },
}

impl Op {
    /// Builds operation `name` for `c` channels with `stride`. `affine` is false during the
    /// search (DARTS searches with affine-free BN); `pool_bn` adds the BN that the search's
    /// MixedOp puts after each pool.
    pub fn build(
        store: &mut ParamStore,
        prefix: &str,
        name: &str,
        c: usize,
        stride: usize,
        affine: bool,
        pool_bn: bool,
    ) -> Result<Op> {
        let pbn = |store: &mut ParamStore| -> Result<Option<BatchNorm2d>> {
            if pool_bn {
                Ok(Some(batch_norm(store, &format!("{prefix}.1"), c, false)?))
            } else {
                Ok(None)
            }
        };
        Ok(match name {
            "none" => Op::Zero { stride },
            "max_pool_3x3" => Op::MaxPool {
                stride,
                bn: pbn(store)?,
            },
            "avg_pool_3x3" => Op::AvgPool {
                stride,
                bn: pbn(store)?,
            },
            "skip_connect" if stride == 1 => Op::Identity,
            "skip_connect" => Op::factorized_reduce(store, prefix, c, c, affine)?,
            "sep_conv_3x3" | "sep_conv_5x5" | "sep_conv_7x7" => {
                let k = match name {
                    "sep_conv_3x3" => 3,
                    "sep_conv_5x5" => 5,
                    _ => 7,
                };
                let p = format!("{prefix}.op");
                Op::SepConv {
                    k,
                    stride,
                    w: [
                        conv_weight(store, &format!("{p}.1"), c, 1, k, k)?,
                        conv_weight(store, &format!("{p}.2"), c, c, 1, 1)?,
                        conv_weight(store, &format!("{p}.5"), c, 1, k, k)?,
                        conv_weight(store, &format!("{p}.6"), c, c, 1, 1)?,
                    ],
                    bn: [
                        batch_norm(store, &format!("{p}.3"), c, affine)?,
                        batch_norm(store, &format!("{p}.7"), c, affine)?,
                    ],
                }
            }
            "dil_conv_3x3" | "dil_conv_5x5" => {
                let k = if name == "dil_conv_3x3" { 3 } else { 5 };
                let p = format!("{prefix}.op");
                Op::DilConv {
                    k,
                    stride,
                    dilation: 2,
                    w: [
                        conv_weight(store, &format!("{p}.1"), c, 1, k, k)?,
                        conv_weight(store, &format!("{p}.2"), c, c, 1, 1)?,
                    ],
                    bn: batch_norm(store, &format!("{p}.3"), c, affine)?,
                }
            }
            "conv_7x1_1x7" => {
                let p = prefix;
                Op::Conv7x1x7 {
                    stride,
                    w: [
                        conv_weight(store, &format!("{p}.1"), c, c, 1, 7)?,
                        conv_weight(store, &format!("{p}.2"), c, c, 7, 1)?,
                    ],
                    bn: batch_norm(store, &format!("{p}.3"), c, affine)?,
                }
            }
            other => {
                return Err(NasError::Architecture(format!(
                    "unknown DARTS operation `{other}`; known: {}",
                    KNOWN_OPS.join(", ")
                )))
            }
        })
    }

    /// `FactorizedReduce(c_in, c_out)`; `c_out` must be even.
    pub fn factorized_reduce(
        store: &mut ParamStore,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        affine: bool,
    ) -> Result<Op> {
        if !c_out.is_multiple_of(2) {
            return Err(NasError::Architecture(format!(
                "FactorizedReduce needs an even channel count, got {c_out}"
            )));
        }
        Ok(Op::FactorizedReduce {
            w: [
                conv_weight(store, &format!("{prefix}.conv_1"), c_out / 2, c_in, 1, 1)?,
                conv_weight(store, &format!("{prefix}.conv_2"), c_out / 2, c_in, 1, 1)?,
            ],
            bn: batch_norm(store, &format!("{prefix}.bn"), c_out, affine)?,
        })
    }

    /// `ReLUConvBN(c_in, c_out, k, stride, padding)`.
    #[allow(clippy::too_many_arguments)]
    pub fn relu_conv_bn(
        store: &mut ParamStore,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        affine: bool,
    ) -> Result<Op> {
        Ok(Op::ReluConvBn {
            k,
            stride,
            padding,
            w: conv_weight(store, &format!("{prefix}.op.1"), c_out, c_in, k, k)?,
            bn: batch_norm(store, &format!("{prefix}.op.2"), c_out, affine)?,
        })
    }

    /// True for the operations that drop-path skips (`Identity`, as in DARTS `model.py`).
    pub fn is_identity(&self) -> bool {
        matches!(self, Op::Identity)
    }

    /// True for `Zero`.
    pub fn is_zero(&self) -> bool {
        matches!(self, Op::Zero { .. })
    }

    /// Forward pass.
    pub fn forward(&self, x: &Tensor, train: bool) -> CResult<Tensor> {
        use nas_ops::*;
        match self {
            Op::Zero { stride } => {
                let (n, c, h, w) = x.dims4()?;
                let (ho, wo) = if *stride == 1 {
                    (h, w)
                } else {
                    (h.div_ceil(*stride), w.div_ceil(*stride))
                };
                Tensor::zeros((n, c, ho, wo), x.dtype(), x.device())
            }
            Op::Identity => Ok(x.clone()),
            Op::MaxPool { stride, bn } => {
                let y = max_pool2d(x, 3, *stride, 1)?;
                match bn {
                    Some(bn) => bn.forward(&y, train),
                    None => Ok(y),
                }
            }
            Op::AvgPool { stride, bn } => {
                let y = avg_pool2d(x, 3, *stride, 1, false)?;
                match bn {
                    Some(bn) => bn.forward(&y, train),
                    None => Ok(y),
                }
            }
            Op::SepConv { k, stride, w, bn } => {
                let p = k / 2;
                // Each ReLU -> depthwise -> pointwise -> BN as one op (the same values and
                // gradients as the four).
                let (w0, w1) = (w[0].as_tensor(), w[1].as_tensor());
                let y = relu_dw_pw_bn(x, w0, w1, &bn[0], *stride, p, 1, train)?;
                let (w2, w3) = (w[2].as_tensor(), w[3].as_tensor());
                relu_dw_pw_bn(&y, w2, w3, &bn[1], 1, p, 1, train)
            }
            Op::DilConv {
                k,
                stride,
                dilation,
                w,
                bn,
            } => {
                let p = dilation * (k - 1) / 2;
                let (w0, w1) = (w[0].as_tensor(), w[1].as_tensor());
                relu_dw_pw_bn(x, w0, w1, bn, *stride, p, *dilation, train)
            }
            Op::Conv7x1x7 { stride, w, bn } => {
                // (1,7) conv with stride (1,s), padding (0,3); then (7,1) with stride (s,1),
                // padding (3,0): expressed with candle's conv2d on padded inputs.
                let y = relu(x)?;
                let y = y.pad_with_zeros(3, 3, 3)?;
                let y = y.conv2d(w[0].as_tensor(), 0, 1, 1, 1)?;
                let y = if *stride > 1 {
                    subsample(&y, 1, *stride)?
                } else {
                    y
                };
                let y = y.pad_with_zeros(2, 3, 3)?;
                let y = y.conv2d(w[1].as_tensor(), 0, 1, 1, 1)?;
                let y = if *stride > 1 {
                    subsample(&y, *stride, 1)?
                } else {
                    y
                };
                bn.forward(&y, train)
            }
            // One op (the same values and gradients as ReLU, the two convolutions, the
            // concatenation and the batch norm).
            Op::FactorizedReduce { w, bn } => {
                factorized_reduce_bn(x, w[0].as_tensor(), w[1].as_tensor(), bn, train)
            }
            Op::ReluConvBn {
                k,
                stride,
                padding,
                w,
                bn,
            } => {
                if (*k, *stride, *padding) == (1, 1, 0) {
                    // The cells' preprocessing: one op (the same values and gradients as the
                    // three).
                    return relu_conv1x1_bn(x, w.as_tensor(), bn, train);
                }
                let y = relu(x)?;
                let y = conv2d(&y, w.as_tensor(), *stride, *padding)?;
                bn.forward(&y, train)
            }
        }
    }

    /// The operation as an option of a fused mixed edge ([`nas_ops::mixed_edge`]), where it
    /// has that form: pools with their batch norm, identity, `FactorizedReduce`, separable and
    /// dilated convolutions. `None` for the others (`none`, `conv_7x1_1x7`, pools without batch
    /// norm, `ReLUConvBN`).
    pub fn edge_option(&self) -> Option<nas_ops::EdgeOption<'_>> {
        use nas_ops::EdgeOption;
        Some(match self {
            Op::MaxPool {
                stride,
                bn: Some(bn),
            } => EdgeOption::MaxPoolBn {
                kernel: 3,
                stride: *stride,
                padding: 1,
                bn,
            },
            Op::AvgPool {
                stride,
                bn: Some(bn),
            } => EdgeOption::AvgPoolBn {
                kernel: 3,
                stride: *stride,
                padding: 1,
                bn,
            },
            Op::Identity => EdgeOption::Identity,
            Op::FactorizedReduce { w, bn } => EdgeOption::FactorizedReduce {
                w_a: w[0].as_tensor(),
                w_b: w[1].as_tensor(),
                bn,
            },
            Op::SepConv { k, stride, w, bn } => EdgeOption::Units(vec![
                unit(w, 0, &bn[0], *stride, k / 2, 1),
                unit(w, 2, &bn[1], 1, k / 2, 1),
            ]),
            Op::DilConv {
                k,
                stride,
                dilation,
                w,
                bn,
            } => EdgeOption::Units(vec![unit(
                w,
                0,
                bn,
                *stride,
                dilation * (k - 1) / 2,
                *dilation,
            )]),
            _ => return None,
        })
    }

    /// Every batch norm of the operation.
    pub fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        match self {
            Op::Zero { .. } | Op::Identity => vec![],
            Op::MaxPool { bn, .. } | Op::AvgPool { bn, .. } => bn.iter().collect(),
            Op::SepConv { bn, .. } => bn.iter().collect(),
            Op::DilConv { bn, .. }
            | Op::Conv7x1x7 { bn, .. }
            | Op::FactorizedReduce { bn, .. }
            | Op::ReluConvBn { bn, .. } => vec![bn],
        }
    }

    /// Multiply-accumulates for one example with input `c x h x w`; returns them with the
    /// output spatial size.
    pub fn macs(&self, c: usize, h: usize, w: usize) -> (f64, usize, usize) {
        let f = |x: usize| x as f64;
        match self {
            Op::Zero { stride } => (0.0, h.div_ceil(*stride), w.div_ceil(*stride)),
            Op::Identity => (0.0, h, w),
            Op::MaxPool { stride, .. } | Op::AvgPool { stride, .. } => {
                let (ho, wo) = (out_size(h, 3, *stride, 1, 1), out_size(w, 3, *stride, 1, 1));
                (f(c * ho * wo * 9), ho, wo)
            }
            Op::SepConv { k, stride, .. } => {
                let p = k / 2;
                let (ho, wo) = (
                    out_size(h, *k, *stride, p, 1),
                    out_size(w, *k, *stride, p, 1),
                );
                let per = f(c * k * k + c * c) * f(ho * wo);
                (2.0 * per, ho, wo)
            }
            Op::DilConv {
                k,
                stride,
                dilation,
                ..
            } => {
                let p = dilation * (k - 1) / 2;
                let (ho, wo) = (
                    out_size(h, *k, *stride, p, *dilation),
                    out_size(w, *k, *stride, p, *dilation),
                );
                (f(c * k * k + c * c) * f(ho * wo), ho, wo)
            }
            Op::Conv7x1x7 { stride, .. } => {
                let (ho, wo) = (h.div_ceil(*stride), w.div_ceil(*stride));
                (f(c * c * 7) * f(h * wo) + f(c * c * 7) * f(ho * wo), ho, wo)
            }
            Op::FactorizedReduce { w: ws, .. } => {
                let c_half = ws[0].dims()[0];
                let (ho, wo) = (out_size(h, 1, 2, 0, 1), out_size(w, 1, 2, 0, 1));
                (2.0 * f(c_half * c * ho * wo), ho, wo)
            }
            Op::ReluConvBn {
                k,
                stride,
                padding,
                w: wt,
                ..
            } => {
                let c_out = wt.dims()[0];
                let (ho, wo) = (
                    out_size(h, *k, *stride, *padding, 1),
                    out_size(w, *k, *stride, *padding, 1),
                );
                (f(c_out * c * k * k) * f(ho * wo), ho, wo)
            }
        }
    }
}

/// The unit of weights `w[i]` (depthwise), `w[i + 1]` (pointwise) and `bn`.
fn unit<'a>(
    w: &'a [Var],
    i: usize,
    bn: &'a BatchNorm2d,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> nas_ops::UnitSpec<'a> {
    nas_ops::UnitSpec {
        w_dw: w[i].as_tensor(),
        w_pw: w[i + 1].as_tensor(),
        bn,
        stride,
        padding,
        dilation,
    }
}

/// Keeps every `sh`-th row and `sw`-th column (a strided view made contiguous).
fn subsample(x: &Tensor, sh: usize, sw: usize) -> CResult<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let rows: Vec<u32> = (0..h).step_by(sh).map(|i| i as u32).collect();
    let cols: Vec<u32> = (0..w).step_by(sw).map(|i| i as u32).collect();
    let r = Tensor::new(rows.as_slice(), x.device())?;
    let c = Tensor::new(cols.as_slice(), x.device())?;
    x.index_select(&r, 2)?.index_select(&c, 3)
}

/// Number of parameters operation `name` has at `c` channels and `stride` (affine BN adds
/// 2c per BN; the search uses affine-free BN, the standalone network affine BN).
pub fn op_param_count(name: &str, c: usize, stride: usize, affine: bool) -> usize {
    let bn = if affine { 2 * c } else { 0 };
    match name {
        "none" | "max_pool_3x3" | "avg_pool_3x3" => 0,
        "skip_connect" if stride == 1 => 0,
        "skip_connect" => c * c + bn,
        "sep_conv_3x3" => 2 * (c * 9 + c * c + bn),
        "sep_conv_5x5" => 2 * (c * 25 + c * c + bn),
        "sep_conv_7x7" => 2 * (c * 49 + c * c + bn),
        "dil_conv_3x3" => c * 9 + c * c + bn,
        "dil_conv_5x5" => c * 25 + c * c + bn,
        "conv_7x1_1x7" => 2 * 7 * c * c + bn,
        _ => 0,
    }
}
