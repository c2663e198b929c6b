//! The fast ops against PyTorch's float64 goldens (`shared/data/golden`, see its README):
//! every primitive case (depthwise conv, 1x1 conv, pools, batch norm, none), the ReLUConvBN
//! composite and, built from the primitives exactly as quark0/darts `operations.py` builds
//! them, the SepConv / DilConv / FactorizedReduce operations and both MixedOps (which checks
//! `weighted_sum` end to end). Each case runs in f64 (tolerance 1e-10 normwise) and f32 (1e-5).
use crate::common;

use candle_core::{DType, Tensor, Var};
use common::*;
use nas_ops::*;

const DTYPES: [DType; 2] = [DType::F64, DType::F32];

/// One golden case being rebuilt: its parameters (as `Var`s) and batch norms, by PyTorch name.
struct Ctx<'a> {
    g: &'a Golden,
    case: String,
    dtype: DType,
    vars: Vec<(String, Var)>,
    bns: Vec<(String, BatchNorm2d)>,
}

impl<'a> Ctx<'a> {
    fn new(g: &'a Golden, case: &str, dtype: DType) -> Self {
        Ctx {
            g,
            case: case.to_string(),
            dtype,
            vars: vec![],
            bns: vec![],
        }
    }

    fn input(&self) -> Var {
        self.g.var(&format!("{}.x", self.case), self.dtype)
    }

    fn param(&mut self, p: &str) -> Tensor {
        let v = self.g.var(&format!("{}.w.{p}", self.case), self.dtype);
        self.vars.push((p.to_string(), v.clone()));
        v.as_tensor().clone()
    }

    fn bn(&mut self, p: &str, x: &Tensor, affine: bool) -> Tensor {
        let c = x.dims4().unwrap().1;
        let aff = affine.then(|| {
            let dot = if p.is_empty() {
                String::new()
            } else {
                format!("{p}.")
            };
            let w = self
                .g
                .var(&format!("{}.w.{dot}weight", self.case), self.dtype);
            let b = self
                .g
                .var(&format!("{}.w.{dot}bias", self.case), self.dtype);
            self.vars.push((format!("{dot}weight"), w.clone()));
            self.vars.push((format!("{dot}bias"), b.clone()));
            (w, b)
        });
        let bn = BatchNorm2d::new(c, aff, 1e-5, Some(0.1));
        let y = bn.forward(x, true).unwrap();
        self.bns.push((p.to_string(), bn));
        y
    }

    /// Checks y, gx, every parameter gradient and every running statistic.
    fn finish(&self, x: &Var, y: &Tensor) {
        let t = tol(self.dtype);
        let c = &self.case;
        check(self.g, &format!("{c}.y"), y, t);
        let gy = self.g.tensor(&format!("{c}.gy"), self.dtype);
        let grads = loss(y, &gy).backward().unwrap();
        let gx = grads.get(x.as_tensor()).expect("gx");
        check(self.g, &format!("{c}.gx"), gx, t);
        for (p, v) in &self.vars {
            let gw = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{c}: no gradient for {p}"));
            check(self.g, &format!("{c}.gw.{p}"), gw, t);
        }
        for (p, bn) in &self.bns {
            let dot = if p.is_empty() {
                String::new()
            } else {
                format!("{p}.")
            };
            let (m, v) = bn.running_stats();
            assert_close(
                &format!("{c}.{dot}running_mean"),
                &m,
                &self.g.get(&format!("{c}.{dot}running_mean")).1,
                t,
            );
            assert_close(
                &format!("{c}.{dot}running_var"),
                &v,
                &self.g.get(&format!("{c}.{dot}running_var")).1,
                t,
            );
        }
    }
}

fn sep_conv(cx: &mut Ctx, pre: &str, x: &Tensor, k: usize, stride: usize, affine: bool) -> Tensor {
    let pad = k / 2;
    let h = relu(x).unwrap();
    let h = depthwise_conv2d(&h, &cx.param(&format!("{pre}op.1.weight")), stride, pad, 1).unwrap();
    let h = conv2d(&h, &cx.param(&format!("{pre}op.2.weight")), 1, 0).unwrap();
    let h = cx.bn(&format!("{pre}op.3"), &h, affine);
    let h = relu(&h).unwrap();
    let h = depthwise_conv2d(&h, &cx.param(&format!("{pre}op.5.weight")), 1, pad, 1).unwrap();
    let h = conv2d(&h, &cx.param(&format!("{pre}op.6.weight")), 1, 0).unwrap();
    cx.bn(&format!("{pre}op.7"), &h, affine)
}

fn dil_conv(cx: &mut Ctx, pre: &str, x: &Tensor, k: usize, stride: usize, affine: bool) -> Tensor {
    let pad = k - 1; // DARTS: dil_conv_3x3 padding 2, dil_conv_5x5 padding 4, dilation 2
    let h = relu(x).unwrap();
    let h = depthwise_conv2d(&h, &cx.param(&format!("{pre}op.1.weight")), stride, pad, 2).unwrap();
    let h = conv2d(&h, &cx.param(&format!("{pre}op.2.weight")), 1, 0).unwrap();
    cx.bn(&format!("{pre}op.3"), &h, affine)
}

fn factorized_reduce(cx: &mut Ctx, pre: &str, x: &Tensor, affine: bool) -> Tensor {
    let (_, _, h, w) = x.dims4().unwrap();
    let r = relu(x).unwrap();
    let a = conv2d(&r, &cx.param(&format!("{pre}conv_1.weight")), 2, 0).unwrap();
    let shifted = r.narrow(2, 1, h - 1).unwrap().narrow(3, 1, w - 1).unwrap();
    let b = conv2d(&shifted, &cx.param(&format!("{pre}conv_2.weight")), 2, 0).unwrap();
    let cat = Tensor::cat(&[&a, &b], 1).unwrap();
    cx.bn(&format!("{pre}bn"), &cat, affine)
}

fn zero_op(x: &Tensor, stride: usize) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let (oh, ow) = (
        out_size(h, 1, stride, 0, 1).unwrap(),
        out_size(w, 1, stride, 0, 1).unwrap(),
    );
    Tensor::zeros((n, c, oh, ow), x.dtype(), x.device()).unwrap()
}

/// One DARTS operation by name (quark0/darts `OPS`), inside a MixedOp when `in_mixed` (pools
/// are then followed by an affine-free batch norm, as in `model_search.py`).
fn darts_op(
    cx: &mut Ctx,
    pre: &str,
    op: &str,
    x: &Tensor,
    stride: usize,
    affine: bool,
    in_mixed: bool,
) -> Tensor {
    match op {
        "none" => zero_op(x, stride),
        "max_pool_3x3" | "avg_pool_3x3" => {
            let y = if op == "max_pool_3x3" {
                max_pool2d(x, 3, stride, 1).unwrap()
            } else {
                avg_pool2d(x, 3, stride, 1, false).unwrap()
            };
            if in_mixed {
                cx.bn(&format!("{pre}1"), &y, false)
            } else {
                y
            }
        }
        "skip_connect" if stride == 1 => x.clone(),
        "skip_connect" => factorized_reduce(cx, pre, x, affine),
        "sep_conv_3x3" => sep_conv(cx, pre, x, 3, stride, affine),
        "sep_conv_5x5" => sep_conv(cx, pre, x, 5, stride, affine),
        "dil_conv_3x3" => dil_conv(cx, pre, x, 3, stride, affine),
        "dil_conv_5x5" => dil_conv(cx, pre, x, 5, stride, affine),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn depthwise_conv_cases() {
    let g = Golden::load();
    let cases = g.cases_of_kind("dwconv");
    assert_eq!(cases.len(), 12);
    for dtype in DTYPES {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let mut cx = Ctx::new(&g, name, dtype);
            let x = cx.input();
            let w = cx.param("weight");
            let y = depthwise_conv2d(
                &x,
                &w,
                usize_of(case, "stride"),
                usize_of(case, "padding"),
                usize_of(case, "dilation"),
            )
            .unwrap();
            cx.finish(&x, &y);
        }
    }
}

#[test]
fn conv1x1_cases() {
    let g = Golden::load();
    let cases = g.cases_of_kind("conv1x1");
    assert_eq!(cases.len(), 3);
    for dtype in DTYPES {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let mut cx = Ctx::new(&g, name, dtype);
            let x = cx.input();
            let w = cx.param("weight");
            let y = conv2d(&x, &w, usize_of(case, "stride"), 0).unwrap();
            cx.finish(&x, &y);
            // The same weights through the grouped entry point (groups = 1).
            let y2 = grouped_conv2d(&x, &w, usize_of(case, "stride"), 0, 1).unwrap();
            assert_close(name, &values(&y2), &values(&y), 0.0);
        }
    }
}

#[test]
fn batch_norm_cases() {
    let g = Golden::load();
    let cases = g.cases_of_kind("bn");
    assert_eq!(cases.len(), 2);
    for dtype in DTYPES {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let mut cx = Ctx::new(&g, name, dtype);
            let x = cx.input();
            let y = cx.bn("", &x, case["affine"].as_bool().unwrap());
            cx.finish(&x, &y);
        }
    }
}

#[test]
fn relu_conv_bn_case() {
    let g = Golden::load();
    for dtype in DTYPES {
        let mut cx = Ctx::new(&g, "relu_conv_bn_h8", dtype);
        let x = cx.input();
        let h = relu(&x).unwrap();
        let h = conv2d(&h, &cx.param("op.1.weight"), 1, 0).unwrap();
        let y = cx.bn("op.2", &h, false);
        cx.finish(&x, &y);
    }
}

/// The stand-alone operation cases: none, bare pools, and the composite ops built from the
/// primitives of this crate.
#[test]
fn darts_op_cases() {
    let g = Golden::load();
    let cases = g.cases_of_kind("op");
    assert_eq!(cases.len(), 26);
    for dtype in DTYPES {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let op = case["op"].as_str().unwrap();
            let mut cx = Ctx::new(&g, name, dtype);
            let x = cx.input();
            let y = darts_op(
                &mut cx,
                "",
                op,
                &x,
                usize_of(case, "stride"),
                case["affine"].as_bool().unwrap(),
                false,
            );
            if op == "none" {
                // Zero output, zero gradient: nothing to differentiate.
                check(&g, &format!("{name}.y"), &y, 0.0);
                assert!(g.get(&format!("{name}.gx")).1.iter().all(|&v| v == 0.0));
                continue;
            }
            cx.finish(&x, &y);
        }
    }
}

/// Both MixedOps: all eight operations on one input, mixed by `weighted_sum` with the golden
/// softmax weights; checks y, gx, every parameter gradient, every running statistic, dL/dweights
/// and (through the softmax chain rule) dL/dalpha.
#[test]
fn mixed_op_cases() {
    const PRIMITIVES: [&str; 8] = [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    ];
    let g = Golden::load();
    let cases = g.cases_of_kind("mixed_op");
    assert_eq!(cases.len(), 2);
    for dtype in DTYPES {
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let stride = usize_of(case, "stride");
            let mut cx = Ctx::new(&g, name, dtype);
            let x = cx.input();
            let outs: Vec<Tensor> = PRIMITIVES
                .iter()
                .enumerate()
                .map(|(i, op)| darts_op(&mut cx, &format!("{i}."), op, &x, stride, false, true))
                .collect();
            let weights = g.var(&format!("{name}.weights"), dtype);
            let y = weighted_sum(&outs, &weights).unwrap();
            cx.finish(&x, &y);
            let gy = g.tensor(&format!("{name}.gy"), dtype);
            let grads = loss(&y, &gy).backward().unwrap();
            let gw = values(grads.get(weights.as_tensor()).unwrap());
            assert_close(
                &format!("{name}.gweights"),
                &gw,
                &g.get(&format!("{name}.gweights")).1,
                tol(dtype),
            );
            let w = values(&weights);
            let s: f64 = w.iter().zip(&gw).map(|(a, b)| a * b).sum();
            let galpha: Vec<f64> = w.iter().zip(&gw).map(|(a, b)| a * (b - s)).collect();
            assert_close(
                &format!("{name}.galpha"),
                &galpha,
                &g.get(&format!("{name}.galpha")).1,
                tol(dtype),
            );
        }
    }
}

/// Every case in the file is covered by one of the tests above.
#[test]
fn all_cases_are_known() {
    let g = Golden::load();
    assert_eq!(g.cases.len(), 46);
    for c in &g.cases {
        let kind = c["kind"].as_str().unwrap();
        assert!(
            ["op", "dwconv", "conv1x1", "bn", "relu_conv_bn", "mixed_op"].contains(&kind),
            "unknown kind {kind}"
        );
    }
}
