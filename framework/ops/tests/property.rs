//! Fast kernels against the plain reference implementations on random shapes, strides,
//! paddings and dilations, forward and backward, in f64 (1e-12 normwise) and f32 (1e-5).
use crate::common;

use candle_core::{DType, Tensor, Var};
use common::*;
use nas_ops::reference::{self as r, ConvSpec};
use nas_ops::*;
use rand::Rng;

const TRIALS: usize = 60;

fn t64(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

/// Forward and backward of `f` at `(x, w)` with upstream gradient `gy`: `(y, gx, gw)`.
fn run2(
    x: &Tensor,
    w: &Tensor,
    gy_seed: u64,
    f: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> (Tensor, Vec<f64>, Vec<f64>, Vec<f64>) {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = f(xv.as_tensor(), wv.as_tensor());
    let gy_data = uniform(&mut rng(gy_seed), y.elem_count());
    let gy = tensor(&gy_data, y.dims(), y.dtype());
    let grads = loss(&y, &gy).backward().unwrap();
    let gx = values(grads.get(xv.as_tensor()).unwrap());
    let gw = values(grads.get(wv.as_tensor()).unwrap());
    (y, gy_data, gx, gw)
}

#[test]
fn depthwise_conv_matches_reference() {
    let mut rg = rng(1);
    let mut done = 0;
    while done < TRIALS {
        let (n, c) = (rg.random_range(1..3), rg.random_range(1..5));
        let (h, w) = (rg.random_range(1..11), rg.random_range(1..11));
        let k = [1, 2, 3, 5][rg.random_range(0..4)];
        let (s, d) = (rg.random_range(1..4), rg.random_range(1..4));
        let p = rg.random_range(0..(d * (k - 1) / 2 + 2));
        let cs = ConvSpec {
            stride: s,
            padding: p,
            dilation: d,
            groups: c,
        };
        if r::out_len(h, k, s, p, d).is_none() || r::out_len(w, k, s, p, d).is_none() {
            assert!(depthwise_conv2d(
                &tensor(&vec![0.0; n * c * h * w], &[n, c, h, w], DType::F32),
                &tensor(&vec![0.0; c * k * k], &[c, 1, k, k], DType::F32),
                s,
                p,
                d
            )
            .is_err());
            continue;
        }
        done += 1;
        let xd = [n, c, h, w];
        let wd = [c, 1, k, k];
        let x = uniform(&mut rg, n * c * h * w);
        let wt = uniform(&mut rg, c * k * k);
        let (yr, yd) = r::conv2d_forward(&x, xd, &wt, wd, cs);
        for dtype in [DType::F64, DType::F32] {
            let (y, gy, gx, gw) = run2(
                &tensor(&x, &xd, dtype),
                &tensor(&wt, &wd, dtype),
                done as u64,
                |x, w| depthwise_conv2d(x, w, s, p, d).unwrap(),
            );
            let what = format!("dwconv {xd:?} k{k} s{s} p{p} d{d} {dtype:?}");
            assert_eq!(y.dims(), yd.as_slice(), "{what}");
            assert_close(&format!("{what} y"), &values(&y), &yr, t64(dtype));
            let (gxr, gwr) = r::conv2d_backward(&x, xd, &wt, wd, &gy, cs);
            assert_close(&format!("{what} gx"), &gx, &gxr, t64(dtype));
            assert_close(&format!("{what} gw"), &gw, &gwr, t64(dtype));
            // The grouped entry point with groups == C takes the same path.
            let y2 = grouped_conv2d(&tensor(&x, &xd, dtype), &tensor(&wt, &wd, dtype), s, p, c);
            if d == 1 {
                assert_close(
                    &format!("{what} grouped"),
                    &values(&y2.unwrap()),
                    &yr,
                    t64(dtype),
                );
            }
        }
    }
}

#[test]
fn dense_and_grouped_conv_match_reference() {
    let mut rg = rng(2);
    let mut done = 0;
    while done < TRIALS {
        let n = rg.random_range(1..3);
        let groups = [1, 1, 2, 3][rg.random_range(0..4)];
        let (ci, co) = (
            groups * rg.random_range(1..4),
            groups * rg.random_range(1..4),
        );
        let (h, w) = (rg.random_range(1..9), rg.random_range(1..9));
        let k = [1, 1, 2, 3][rg.random_range(0..4)];
        let s = rg.random_range(1..4);
        let p = if rg.random_bool(0.5) {
            0
        } else {
            rg.random_range(0..k + 1)
        };
        if r::out_len(h, k, s, p, 1).is_none() || r::out_len(w, k, s, p, 1).is_none() {
            continue;
        }
        done += 1;
        let (xd, wd) = ([n, ci, h, w], [co, ci / groups, k, k]);
        conv_matches_reference(&mut rg, xd, wd, s, p, groups, done as u64);
    }
}

/// A dense or grouped convolution of random `x` `[xd]` by random weights `[wd]` (stride `s`,
/// padding `p`), forward and both gradients, in f64 and f32, against the reference.
fn conv_matches_reference(
    rg: &mut rand_chacha::ChaCha8Rng,
    xd: [usize; 4],
    wd: [usize; 4],
    s: usize,
    p: usize,
    groups: usize,
    gy_seed: u64,
) {
    let cs = ConvSpec {
        stride: s,
        padding: p,
        dilation: 1,
        groups,
    };
    let x = uniform(rg, xd.iter().product());
    let wt = uniform(rg, wd.iter().product());
    let (yr, yd) = r::conv2d_forward(&x, xd, &wt, wd, cs);
    for dtype in [DType::F64, DType::F32] {
        let (y, gy, gx, gw) = run2(
            &tensor(&x, &xd, dtype),
            &tensor(&wt, &wd, dtype),
            gy_seed,
            |x, w| {
                if groups == 1 {
                    conv2d(x, w, s, p).unwrap()
                } else {
                    grouped_conv2d(x, w, s, p, groups).unwrap()
                }
            },
        );
        let what = format!("conv {xd:?} w{wd:?} s{s} p{p} g{groups} {dtype:?}");
        assert_eq!(y.dims(), yd.as_slice(), "{what}");
        assert_close(&format!("{what} y"), &values(&y), &yr, t64(dtype));
        let (gxr, gwr) = r::conv2d_backward(&x, xd, &wt, wd, &gy, cs);
        assert_close(&format!("{what} gx"), &gx, &gxr, t64(dtype));
        assert_close(&format!("{what} gw"), &gw, &gwr, t64(dtype));
    }
}

/// Dense convolutions with few output positions per weight (DARTS' auxiliary head: a 2x2
/// convolution of a 2x2 input into many channels, which multiplies the batch's columns by the
/// weight in one matmul instead of broadcasting the weight over the batch) and with many
/// (the stem's shape, the broadcast), forward and both gradients against the reference.
#[test]
fn dense_conv_with_few_or_many_output_positions_matches_reference() {
    let mut rg = rng(3);
    // (input, weight, stride, padding): one output position and 12 x 32 weights; 2x2 outputs
    // of a strided 3x3 convolution; the stem's 3 -> 8 channels over 6x6 positions.
    let cases: [([usize; 4], [usize; 4], usize, usize); 3] = [
        ([3, 8, 2, 2], [12, 8, 2, 2], 1, 0),
        ([2, 5, 4, 4], [9, 5, 3, 3], 2, 1),
        ([2, 3, 6, 6], [8, 3, 3, 3], 1, 1),
    ];
    for (xd, wd, s, p) in cases {
        conv_matches_reference(&mut rg, xd, wd, s, p, 1, 7);
    }
}

/// Runs a one-input op forward and backward: `(y, gy, gx)`.
fn run1(x: &Tensor, gy_seed: u64, f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Vec<f64>, Vec<f64>) {
    let xv = Var::from_tensor(x).unwrap();
    let y = f(xv.as_tensor());
    let gy_data = uniform(&mut rng(gy_seed), y.elem_count());
    let gy = tensor(&gy_data, y.dims(), y.dtype());
    let grads = loss(&y, &gy).backward().unwrap();
    (y, gy_data, values(grads.get(xv.as_tensor()).unwrap()))
}

#[test]
fn pools_match_reference() {
    let mut rg = rng(3);
    let mut done = 0;
    while done < TRIALS {
        let (n, c) = (rg.random_range(1..3), rg.random_range(1..4));
        let (h, w) = (rg.random_range(1..10), rg.random_range(1..10));
        let k = rg.random_range(1..6);
        let s = rg.random_range(1..4);
        let p = rg.random_range(0..k / 2 + 1);
        if r::out_len(h, k, s, p, 1).is_none() || r::out_len(w, k, s, p, 1).is_none() {
            continue;
        }
        done += 1;
        let xd = [n, c, h, w];
        let x = distinct(&mut rg, n * c * h * w);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("pool {xd:?} k{k} s{s} p{p} {dtype:?}");
            let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), done as u64, |x| {
                max_pool2d(x, k, s, p).unwrap()
            });
            let (yr, yd) = r::max_pool2d_forward(&x, xd, k, s, p);
            assert_eq!(y.dims(), yd.as_slice(), "{what}");
            assert_close(&format!("{what} max y"), &values(&y), &yr, 0.0);
            assert_close(
                &format!("{what} max gx"),
                &gx,
                &r::max_pool2d_backward(&x, xd, &gy, k, s, p),
                t64(dtype),
            );
            for include in [false, true] {
                let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), done as u64, |x| {
                    avg_pool2d(x, k, s, p, include).unwrap()
                });
                let (yr, _) = r::avg_pool2d_forward(&x, xd, k, s, p, include);
                assert_close(
                    &format!("{what} avg({include}) y"),
                    &values(&y),
                    &yr,
                    t64(dtype),
                );
                assert_close(
                    &format!("{what} avg({include}) gx"),
                    &gx,
                    &r::avg_pool2d_backward(xd, &gy, k, s, p, include),
                    t64(dtype),
                );
            }
        }
    }
}

/// Many ties (values in {0, 1, 2}): each gradient goes to the first maximal cell of its
/// window in row-major order, also when the maximum sits in several rows and columns of the
/// window and when windows are strided or cut by the padding.
#[test]
fn max_pool_with_many_ties_matches_the_reference() {
    let mut rg = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(11);
    // Widths 11 and 37: a partial block, and two whole blocks and a partial one, of the
    // stride-1 kernel's 16 outputs; f32 takes the vectorised path, f64 too.
    for xd in [[2, 3, 9, 11], [1, 2, 5, 37]] {
        for dtype in [DType::F64, DType::F32] {
            for (k, s, p) in [(3, 1, 1), (3, 2, 1), (5, 1, 2), (2, 2, 0), (3, 3, 0)] {
                let x: Vec<f64> = (0..xd.iter().product::<usize>())
                    .map(|_| rg.random_range(0..3) as f64)
                    .collect();
                let what = format!("ties {xd:?} {dtype:?} k{k} s{s} p{p}");
                let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), 3, |x| {
                    max_pool2d(x, k, s, p).unwrap()
                });
                let (yr, _) = r::max_pool2d_forward(&x, xd, k, s, p);
                assert_close(&format!("{what} y"), &values(&y), &yr, 0.0);
                // The upstream gradient is rounded to f32 on the way in.
                let gy: Vec<f64> = values(&tensor(&gy, &[gy.len()], dtype));
                // Gradients landing on one cell add up in f32 there.
                let gr = r::max_pool2d_backward(&x, xd, &gy, k, s, p);
                assert_close(&format!("{what} gx"), &gx, &gr, sum_tolerance(dtype));
            }
        }
    }
}

/// Tolerance of gradients that several outputs add into one cell: exact in f64 (the
/// reference adds in the same order), f32 rounding otherwise.
fn sum_tolerance(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        1e-6
    } else {
        0.0
    }
}

/// Windows of -inf only send their gradient to their first in-image cell (PyTorch), on the
/// stride-1 path (padded with -inf) as on the strided one; a NaN wins every window holding it
/// (PyTorch's `val > max || isnan(val)`), so those outputs are NaN.
#[test]
fn max_pool_of_infinities_and_nan_follows_pytorch() {
    let (h, w) = (4, 19);
    let mut x = vec![f64::NEG_INFINITY; h * w];
    x[2 * w + 7] = 1.0;
    for dtype in [DType::F64, DType::F32] {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1)] {
            let what = format!("{dtype:?} k{k} s{s} p{p}");
            let (y, gy, gx) = run1(&tensor(&x, &[1, 1, h, w], dtype), 5, |x| {
                max_pool2d(x, k, s, p).unwrap()
            });
            let (yr, _) = r::max_pool2d_forward(&x, [1, 1, h, w], k, s, p);
            assert_close(&format!("{what} y"), &values(&y), &yr, 0.0);
            let gy: Vec<f64> = values(&tensor(&gy, &[gy.len()], dtype));
            let gr = r::max_pool2d_backward(&x, [1, 1, h, w], &gy, k, s, p);
            assert_close(&format!("{what} gx"), &gx, &gr, sum_tolerance(dtype));
            // A NaN at (3, 15): the outputs whose window covers it are NaN, no other.
            let mut xn = x.clone();
            xn[3 * w + 15] = f64::NAN;
            let y = values(&max_pool2d(&tensor(&xn, &[1, 1, h, w], dtype), k, s, p).unwrap());
            let ow = (w + 2 * p - k) / s + 1;
            for (o, v) in y.iter().enumerate() {
                let (oy, ox) = ((o / ow) * s, (o % ow) * s);
                let covers = (oy..oy + k).contains(&(3 + p)) && (ox..ox + k).contains(&(15 + p));
                assert_eq!(v.is_nan(), covers, "{what} NaN at output {o}");
            }
        }
    }
}

#[test]
fn max_pool_ties_go_to_the_first_cell() {
    // All equal: each window's gradient goes to its first in-image cell (row-major).
    let x = Var::from_tensor(
        &Tensor::ones((1, 1, 3, 3), DType::F64, &candle_core::Device::Cpu).unwrap(),
    )
    .unwrap();
    let y = max_pool2d(&x, 3, 2, 1).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let gx = values(grads.get(x.as_tensor()).unwrap());
    let gy = vec![1.0; 4];
    assert_eq!(
        gx,
        r::max_pool2d_backward(&[1.0; 9], [1, 1, 3, 3], &gy, 3, 2, 1)
    );
    // Windows (rows/cols -1..1 and 1..3): first cells (0,0), (0,1), (1,0), (1,1).
    assert_eq!(gx, vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn batch_norm_matches_reference() {
    let mut rg = rng(4);
    for trial in 0..TRIALS {
        let (n, c) = (rg.random_range(1..4), rg.random_range(1..5));
        let (h, w) = (rg.random_range(1..7), rg.random_range(1..7));
        if n * h * w < 2 {
            continue;
        }
        let xd = [n, c, h, w];
        let shift = rg.random_range(-3.0..3.0);
        let x: Vec<f64> = uniform(&mut rg, n * c * h * w)
            .iter()
            .map(|v| 2.0 * v + shift)
            .collect();
        let gamma: Vec<f64> = uniform(&mut rg, c).iter().map(|v| v + 1.0).collect();
        let beta = uniform(&mut rg, c);
        let (mean, var) = r::channel_stats(&x, xd);
        for dtype in [DType::F64, DType::F32] {
            for affine in [false, true] {
                let what = format!("bn {xd:?} affine {affine} {dtype:?}");
                let (gv, bv) = (
                    Var::from_tensor(&tensor(&gamma, &[c], dtype)).unwrap(),
                    Var::from_tensor(&tensor(&beta, &[c], dtype)).unwrap(),
                );
                let bn =
                    BatchNorm2d::new(c, affine.then(|| (gv.clone(), bv.clone())), 1e-5, Some(0.1));
                let aff = affine.then_some((gamma.as_slice(), beta.as_slice()));
                let ga = affine.then_some(gamma.as_slice());
                // Training mode.
                let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), trial as u64, |x| {
                    bn.forward(x, true).unwrap()
                });
                assert_close(
                    &format!("{what} y"),
                    &values(&y),
                    &r::batch_norm_forward(&x, xd, &mean, &var, aff, 1e-5),
                    t64(dtype) * 10.0,
                );
                let (gxr, ggr, gbr) = r::batch_norm_train_backward(&x, xd, ga, &gy, 1e-5);
                assert_close_floor(&format!("{what} gx"), &gx, &gxr, t64(dtype) * 10.0, 1.0);
                if affine {
                    let (y, gy_data) = {
                        let y = bn.forward(&tensor(&x, &xd, dtype), true).unwrap();
                        (y, gy.clone())
                    };
                    let grads = loss(&y, &tensor(&gy_data, &xd, dtype)).backward().unwrap();
                    assert_close(
                        &format!("{what} ggamma"),
                        &values(grads.get(gv.as_tensor()).unwrap()),
                        &ggr,
                        t64(dtype) * 10.0,
                    );
                    assert_close(
                        &format!("{what} gbeta"),
                        &values(grads.get(bv.as_tensor()).unwrap()),
                        &gbr,
                        t64(dtype) * 10.0,
                    );
                }
                // Evaluation mode, with the running statistics left by the forward(s).
                let (rm, rv) = bn.running_stats();
                let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), trial as u64 + 1000, |x| {
                    bn.forward(x, false).unwrap()
                });
                assert_close(
                    &format!("{what} eval y"),
                    &values(&y),
                    &r::batch_norm_forward(&x, xd, &rm, &rv, aff, 1e-5),
                    t64(dtype) * 10.0,
                );
                let (gxr, _, _) = r::batch_norm_eval_backward(&x, xd, &rm, &rv, ga, &gy, 1e-5);
                assert_close(&format!("{what} eval gx"), &gx, &gxr, t64(dtype) * 10.0);
                assert_eq!(
                    bn.running_stats(),
                    (rm, rv),
                    "eval mode must not touch the running stats"
                );
            }
        }
    }
}

#[test]
fn relu_and_global_pool_match_reference() {
    let mut rg = rng(5);
    for trial in 0..TRIALS {
        let xd = [
            rg.random_range(1..3),
            rg.random_range(1..4),
            rg.random_range(1..6),
            rg.random_range(1..6),
        ];
        let x = uniform(&mut rg, xd.iter().product());
        for dtype in [DType::F64, DType::F32] {
            let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), trial as u64, |x| relu(x).unwrap());
            assert_close("relu y", &values(&y), &r::relu_forward(&x), t64(dtype));
            assert_close("relu gx", &gx, &r::relu_backward(&x, &gy), t64(dtype));
            let (y, gy, gx) = run1(&tensor(&x, &xd, dtype), trial as u64, |x| {
                global_avg_pool(x).unwrap()
            });
            assert_eq!(y.dims(), &[xd[0], xd[1]]);
            assert_close(
                "gap y",
                &values(&y),
                &r::global_avg_pool_forward(&x, xd),
                t64(dtype),
            );
            assert_close(
                "gap gx",
                &gx,
                &r::global_avg_pool_backward(xd, &gy),
                t64(dtype),
            );
        }
    }
}

#[test]
fn weighted_sum_matches_reference() {
    let mut rg = rng(6);
    for trial in 0..TRIALS {
        let k = rg.random_range(1..9);
        let xd = [
            rg.random_range(1..5),
            rg.random_range(1..4),
            rg.random_range(1..9),
            rg.random_range(1..9),
        ];
        let len: usize = xd.iter().product();
        let ys: Vec<Vec<f64>> = (0..k).map(|_| uniform(&mut rg, len)).collect();
        let per_example = rg.random_bool(0.5).then_some(xd[0]);
        let mut w = uniform(&mut rg, per_example.unwrap_or(1) * k);
        w[0] = 0.0; // an exactly-zero weight still gets its gradient
        let wd: Vec<usize> = match per_example {
            Some(n) => vec![n, k],
            None => vec![k],
        };
        let gy = uniform(&mut rg, len);
        let yr = r::weighted_sum_forward(&ys, &w, per_example);
        let (gysr, gwr) = r::weighted_sum_backward(&ys, &w, per_example, &gy);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("weighted_sum k{k} {xd:?} per_example {per_example:?} {dtype:?}");
            let vars: Vec<Var> = ys
                .iter()
                .map(|y| Var::from_tensor(&tensor(y, &xd, dtype)).unwrap())
                .collect();
            let wv = Var::from_tensor(&tensor(&w, &wd, dtype)).unwrap();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let y = weighted_sum(&ts, &wv).unwrap();
            assert_eq!(y.dims(), xd.as_slice());
            assert_close(&format!("{what} y"), &values(&y), &yr, t64(dtype));
            let grads = loss(&y, &tensor(&gy, &xd, dtype)).backward().unwrap();
            for (j, v) in vars.iter().enumerate() {
                assert_close(
                    &format!("{what} gys[{j}]"),
                    &values(grads.get(v.as_tensor()).unwrap()),
                    &gysr[j],
                    t64(dtype),
                );
            }
            let gw = values(grads.get(wv.as_tensor()).unwrap());
            assert_close(&format!("{what} gw"), &gw, &gwr, t64(dtype) * 10.0);
            assert!(
                gw[0] != 0.0 || gwr[0] == 0.0,
                "{what}: zero weight lost its gradient"
            );
        }
        let _ = trial;
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let d = &candle_core::Device::Cpu;
    let x = Tensor::zeros((1, 2, 4, 4), DType::F32, d).unwrap();
    assert!(depthwise_conv2d(
        &x,
        &Tensor::zeros((3, 1, 3, 3), DType::F32, d).unwrap(),
        1,
        1,
        1
    )
    .is_err());
    assert!(depthwise_conv2d(
        &x,
        &Tensor::zeros((2, 1, 3, 3), DType::F64, d).unwrap(),
        1,
        1,
        1
    )
    .is_err());
    assert!(depthwise_conv2d(
        &x,
        &Tensor::zeros((2, 1, 3, 3), DType::F32, d).unwrap(),
        0,
        1,
        1
    )
    .is_err());
    assert!(depthwise_conv2d(
        &x,
        &Tensor::zeros((2, 1, 9, 9), DType::F32, d).unwrap(),
        1,
        0,
        1
    )
    .is_err());
    assert!(conv2d(
        &x,
        &Tensor::zeros((3, 5, 1, 1), DType::F32, d).unwrap(),
        1,
        0
    )
    .is_err());
    assert!(grouped_conv2d(
        &x,
        &Tensor::zeros((3, 1, 1, 1), DType::F32, d).unwrap(),
        1,
        0,
        2
    )
    .is_err());
    assert!(max_pool2d(&x, 3, 1, 2).is_err());
    assert!(avg_pool2d(&x, 3, 0, 1, false).is_err());
    assert!(max_pool2d(&x.to_dtype(DType::U32).unwrap(), 3, 1, 1).is_err());
    assert!(weighted_sum(&[], &Tensor::zeros(0, DType::F32, d).unwrap()).is_err());
    assert!(weighted_sum(
        &[x.clone(), x.clone()],
        &Tensor::zeros(3, DType::F32, d).unwrap()
    )
    .is_err());
    assert!(weighted_sum(
        &[x.clone(), x.narrow(2, 0, 2).unwrap()],
        &Tensor::zeros(2, DType::F32, d).unwrap()
    )
    .is_err());
    let bn = BatchNorm2d::new(3, None, 1e-5, Some(0.1));
    assert!(bn.forward(&x, true).is_err());
    let bn = BatchNorm2d::new(2, None, 1e-5, Some(0.1));
    assert!(bn
        .forward(&Tensor::zeros((1, 2, 1, 1), DType::F32, d).unwrap(), true)
        .is_err());
    assert!(bn.try_set_running_stats(&[0.0], &[1.0, 1.0]).is_err());
}

/// The operands reach the graph through side taps: check the cases that could break that —
/// constant operands, constant weights, one tensor passed twice, an operand also used
/// elsewhere, and two backward passes over one graph.
#[test]
fn weighted_sum_graph_edge_cases() {
    let d = &candle_core::Device::Cpu;
    let a = Var::from_tensor(&tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F64)).unwrap();
    let b = tensor(&[0.5, -1.0, 2.0, 0.0], &[2, 2], DType::F64); // constant
    let w = Var::from_tensor(&tensor(&[0.25, 0.0, 2.0], &[3], DType::F64)).unwrap();
    // y = 0.25 a + 0 b + 2 a = 2.25 a;  L = sum(y) + sum(a * a)
    let y = weighted_sum(
        &[a.as_tensor().clone(), b.clone(), a.as_tensor().clone()],
        &w,
    )
    .unwrap();
    assert_eq!(values(&y), vec![2.25, 4.5, 6.75, 9.0]);
    let l = (y.sum_all().unwrap() + a.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
    for _ in 0..2 {
        let grads = l.backward().unwrap();
        assert_eq!(
            values(grads.get(a.as_tensor()).unwrap()),
            vec![4.25, 6.25, 8.25, 10.25]
        );
        assert_eq!(
            values(grads.get(w.as_tensor()).unwrap()),
            vec![10.0, 1.5, 10.0]
        );
    }
    // Constant weights: only the operands get gradients.
    let wc = Tensor::new(&[1.0f64, -1.0, 0.5], d).unwrap();
    let y = weighted_sum(
        &[a.as_tensor().clone(), b.clone(), a.as_tensor().clone()],
        &wc,
    )
    .unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(grads.get(a.as_tensor()).unwrap()), vec![1.5; 4]);
    // Nothing tracked at all: a plain forward.
    let y = weighted_sum(
        &[b.clone(), b.clone()],
        &Tensor::new(&[1.0f64, 2.0], d).unwrap(),
    )
    .unwrap();
    assert_eq!(values(&y), vec![1.5, -3.0, 6.0, 0.0]);
}

/// The fused `relu -> depthwise conv` against the reference convolution of the rectified
/// input (the input gradient masked where the input is not positive, exact zeros included),
/// and bit for bit against the two separate ops.
#[test]
fn relu_depthwise_conv_matches_reference_and_the_two_ops() {
    let mut rg = rng(7);
    for trial in 0..TRIALS {
        let (n, c) = (rg.random_range(1..3), rg.random_range(1..5));
        let (h, w) = (rg.random_range(4..11), rg.random_range(4..11));
        let k = [1, 3, 5][rg.random_range(0..3)];
        let (s, d) = (rg.random_range(1..3), rg.random_range(1..3));
        let p = d * (k - 1) / 2;
        let cs = ConvSpec {
            stride: s,
            padding: p,
            dilation: d,
            groups: c,
        };
        let xd = [n, c, h, w];
        let wd = [c, 1, k, k];
        let mut x = uniform(&mut rg, n * c * h * w);
        x.iter_mut().step_by(5).for_each(|v| *v = 0.0);
        let wt = uniform(&mut rg, c * k * k);
        let rect: Vec<f64> = x.iter().map(|&v| v.max(0.0)).collect();
        let (yr, _) = r::conv2d_forward(&rect, xd, &wt, wd, cs);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("relu+dwconv {xd:?} k{k} s{s} d{d} {dtype:?}");
            let (xt, wtt) = (tensor(&x, &xd, dtype), tensor(&wt, &wd, dtype));
            let (y, gy, gx, gw) = run2(&xt, &wtt, trial as u64, |x, w| {
                relu_depthwise_conv2d(x, w, s, p, d).unwrap()
            });
            assert_close(&format!("{what} y"), &values(&y), &yr, t64(dtype));
            let (gxr, gwr) = r::conv2d_backward(&rect, xd, &wt, wd, &gy, cs);
            let gxr: Vec<f64> = gxr
                .iter()
                .zip(&x)
                .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
                .collect();
            assert_close(&format!("{what} gx"), &gx, &gxr, t64(dtype));
            assert_close(&format!("{what} gw"), &gw, &gwr, t64(dtype));
            let (y2, _, gx2, gw2) = run2(&xt, &wtt, trial as u64, |x, w| {
                depthwise_conv2d(&relu(x).unwrap(), w, s, p, d).unwrap()
            });
            assert_eq!(
                values(&y),
                values(&y2),
                "{what}: y differs from relu + dwconv"
            );
            assert_eq!(gx, gx2, "{what}: gx differs from relu + dwconv");
            assert_eq!(gw, gw2, "{what}: gw differs from relu + dwconv");
        }
    }
}

/// What [`run3`] gives: `(y, gx, gw1, gw2, the gradients of the extra variables)`.
type Run3 = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

/// Forward and backward of `f` at `(x, w1, w2)`: `(y, gx, gw1, gw2, the gradients of
/// `extra`)`.
fn run3(
    x: &Tensor,
    w1: &Tensor,
    w2: &Tensor,
    extra: &[&Var],
    gy_seed: u64,
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
) -> Run3 {
    let (xv, v1, v2) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w1).unwrap(),
        Var::from_tensor(w2).unwrap(),
    );
    let y = f(xv.as_tensor(), v1.as_tensor(), v2.as_tensor());
    let gy = tensor(
        &uniform(&mut rng(gy_seed), y.elem_count()),
        y.dims(),
        y.dtype(),
    );
    let grads = loss(&y, &gy).backward().unwrap();
    let g = |v: &Var| values(grads.get(v.as_tensor()).unwrap());
    let extras = extra.iter().map(|v| g(v)).collect();
    (values(&y), g(&xv), g(&v1), g(&v2), extras)
}

/// The fused `relu -> depthwise -> pointwise -> BN` unit gives the values, gradients (of the
/// input, both weights and an affine batch norm's weight and bias) and running statistics of
/// the four separate ops bit for bit (affine-free and affine batch norm, training and
/// evaluation mode, strides 1 and 2, dilations 1 and 2).
#[test]
fn fused_separable_unit_equals_the_four_ops() {
    let mut rg = rng(11);
    for trial in 0..32 {
        let affine = trial % 2 == 1;
        let (n, c, o) = (
            rg.random_range(2..4),
            rg.random_range(1..5),
            rg.random_range(1..6),
        );
        let (h, w) = (rg.random_range(4..10), rg.random_range(4..10));
        let k = [3, 5][rg.random_range(0..2)];
        let (s, d) = (rg.random_range(1..3), rg.random_range(1..3));
        let p = d * (k - 1) / 2;
        let train = trial % 4 != 3;
        let x = uniform(&mut rg, n * c * h * w);
        let wd = uniform(&mut rg, c * k * k);
        let wp = uniform(&mut rg, o * c);
        for dtype in [DType::F64, DType::F32] {
            let what =
                format!("unit [{n},{c},{h},{w}]->{o} k{k} s{s} d{d} train {train} affine {affine} {dtype:?}");
            // Two copies of the same affine parameters (a gradient each), or none.
            let params: Vec<[Var; 2]> = (0..2)
                .map(|_| {
                    let gamma = uniform(&mut rng(trial + 100), o);
                    let beta = uniform(&mut rng(trial + 200), o);
                    [&gamma, &beta].map(|v| Var::from_tensor(&tensor(v, &[o], dtype)).unwrap())
                })
                .collect();
            let bns: Vec<BatchNorm2d> = params
                .iter()
                .map(|[g, b]| {
                    let p = affine.then(|| (g.clone(), b.clone()));
                    BatchNorm2d::new(o, p, 1e-5, Some(0.1))
                })
                .collect();
            let extra = |i: usize| -> Vec<&Var> {
                if affine {
                    params[i].iter().collect()
                } else {
                    Vec::new()
                }
            };
            for bn in &bns {
                // Non-trivial running statistics for evaluation mode.
                bn.set_running_stats(&vec![0.25; o], &vec![2.0; o]);
            }
            let args = (
                tensor(&x, &[n, c, h, w], dtype),
                tensor(&wd, &[c, 1, k, k], dtype),
                tensor(&wp, &[o, c, 1, 1], dtype),
            );
            let fused = run3(&args.0, &args.1, &args.2, &extra(0), trial, |x, a, b| {
                relu_dw_pw_bn(x, a, b, &bns[0], s, p, d, train).unwrap()
            });
            let apart = run3(&args.0, &args.1, &args.2, &extra(1), trial, |x, a, b| {
                let y = depthwise_conv2d(&relu(x).unwrap(), a, s, p, d).unwrap();
                bns[1]
                    .forward(&conv2d(&y, b, 1, 0).unwrap(), train)
                    .unwrap()
            });
            assert_eq!(fused.0, apart.0, "{what}: y");
            assert_eq!(fused.1, apart.1, "{what}: dL/dx");
            assert_eq!(fused.2, apart.2, "{what}: dL/dw_dw");
            assert_eq!(fused.3, apart.3, "{what}: dL/dw_pw");
            assert_eq!(fused.4, apart.4, "{what}: dL/dgamma, dL/dbeta");
            assert_eq!(fused.4.len(), if affine { 2 } else { 0 });
            assert_eq!(
                bns[0].running_stats(),
                bns[1].running_stats(),
                "{what}: running"
            );
            assert_eq!(bns[0].num_batches_tracked(), u64::from(train));
        }
    }
    // An affine batch norm's parameters are trained through the fused unit, and parameters
    // of the wrong shape are errors naming them.
    let ones = Var::from_tensor(&tensor(&[1.0; 3], &[3], DType::F64)).unwrap();
    let zeros = Var::from_tensor(&tensor(&[0.0; 3], &[3], DType::F64)).unwrap();
    let bn = BatchNorm2d::new(3, Some((ones.clone(), zeros.clone())), 1e-5, Some(0.1));
    let x = tensor(
        &uniform(&mut rng(3), 2 * 2 * 5 * 5),
        &[2, 2, 5, 5],
        DType::F64,
    );
    let wd = tensor(&uniform(&mut rng(4), 2 * 9), &[2, 1, 3, 3], DType::F64);
    let wp = tensor(&uniform(&mut rng(5), 6), &[3, 2, 1, 1], DType::F64);
    let y = relu_dw_pw_bn(&x, &wd, &wp, &bn, 1, 1, 1, true).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(ones.as_tensor()).is_some() && grads.get(zeros.as_tensor()).is_some());
    // Mismatched weights are errors, not panics.
    assert!(relu_dw_pw_bn(&x, &wp, &wd, &bn, 1, 1, 1, true).is_err());
    let four = Var::from_tensor(&tensor(&[1.0; 4], &[4], DType::F64)).unwrap();
    let bad = BatchNorm2d::new(3, Some((four, zeros.clone())), 1e-5, Some(0.1));
    let e = relu_dw_pw_bn(&x, &wd, &wp, &bad, 1, 1, 1, true).unwrap_err();
    assert!(
        e.to_string().contains("affine parameters must be [3]"),
        "{e}"
    );
}

/// The fused `relu -> 1x1 conv -> BN` (DARTS' `ReLUConvBN(C_prev, C, 1, 1, 0)`) gives the
/// values, the gradients of the input, the weight and an affine batch norm's weight and bias,
/// and the running statistics of the three separate ops bit for bit (affine-free and affine,
/// training and evaluation mode, inputs with exact zeros); under `with_frozen_weights` the
/// input's gradient is the same and the weights get none.
#[test]
fn fused_relu_conv_bn_equals_the_three_ops() {
    let mut rg = rng(12);
    for trial in 0..24 {
        let affine = trial % 2 == 1;
        let train = trial % 4 != 3;
        let (n, c, o) = (
            rg.random_range(2..4),
            rg.random_range(1..7),
            rg.random_range(1..6),
        );
        let (h, w) = (rg.random_range(1..8), rg.random_range(2..8));
        let mut x = uniform(&mut rg, n * c * h * w);
        for v in x.iter_mut().step_by(5) {
            *v = 0.0; // the ReLU's kink: no gradient flows through an exact zero
        }
        let wt = uniform(&mut rg, o * c);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("[{n},{c},{h},{w}]->{o} train {train} affine {affine} {dtype:?}");
            let run = |fused: bool, frozen: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let wv = Var::from_tensor(&tensor(&wt, &[o, c, 1, 1], dtype)).unwrap();
                let gamma = uniform(&mut rng(trial + 100), o);
                let beta = uniform(&mut rng(trial + 200), o);
                let params =
                    [&gamma, &beta].map(|v| Var::from_tensor(&tensor(v, &[o], dtype)).unwrap());
                let p = affine.then(|| (params[0].clone(), params[1].clone()));
                let bn = BatchNorm2d::new(o, p, 1e-5, Some(0.1));
                bn.set_running_stats(&vec![0.25; o], &vec![2.0; o]);
                let forward = || {
                    if fused {
                        relu_conv1x1_bn(xv.as_tensor(), wv.as_tensor(), &bn, train).unwrap()
                    } else {
                        let y =
                            conv2d(&relu(xv.as_tensor()).unwrap(), wv.as_tensor(), 1, 0).unwrap();
                        bn.forward(&y, train).unwrap()
                    }
                };
                let y = if frozen {
                    with_frozen_weights(forward)
                } else {
                    forward()
                };
                let gy = tensor(
                    &uniform(&mut rng(trial + 300), y.elem_count()),
                    y.dims(),
                    dtype,
                );
                let grads = loss(&y, &gy).backward().unwrap();
                let g = |v: &Var| grads.get(v.as_tensor()).map(values);
                let weight_grads: Vec<Option<Vec<f64>>> =
                    [&wv, &params[0], &params[1]].into_iter().map(g).collect();
                (
                    values(&y),
                    g(&xv).unwrap(),
                    weight_grads,
                    bn.running_stats(),
                )
            };
            let fused = run(true, false);
            let apart = run(false, false);
            assert_eq!(fused.0, apart.0, "{what}: y");
            assert_eq!(fused.1, apart.1, "{what}: dL/dx");
            assert_eq!(fused.2, apart.2, "{what}: dL/dw, dL/dgamma, dL/dbeta");
            assert_eq!(fused.2[1].is_some(), affine, "{what}: gamma's gradient");
            assert_eq!(fused.3, apart.3, "{what}: running statistics");
            let frozen = run(true, true);
            assert_eq!(frozen.0, fused.0, "{what}: frozen y");
            assert_eq!(frozen.1, fused.1, "{what}: frozen dL/dx");
            assert!(
                frozen.2.iter().all(Option::is_none),
                "{what}: frozen weights got gradients"
            );
        }
    }
    // Bad shapes are errors naming what is wrong, not panics.
    let x = tensor(&[0.5; 2 * 3 * 4], &[2, 3, 2, 2], DType::F64);
    let bn = BatchNorm2d::new(4, None, 1e-5, Some(0.1));
    let w = tensor(&[0.5; 4 * 2], &[4, 2, 1, 1], DType::F64);
    let e = relu_conv1x1_bn(&x, &w, &bn, true).unwrap_err();
    assert!(e.to_string().contains("[O, 3, 1, 1]"), "{e}");
    let w = tensor(&[0.5; 5 * 3], &[5, 3, 1, 1], DType::F64);
    let e = relu_conv1x1_bn(&x, &w, &bn, true).unwrap_err();
    assert!(e.to_string().contains("4 channels"), "{e}");
}

/// A fused mixed edge (pools with BN, identity, a two-unit separable and a one-unit dilated
/// convolution) against the same edge built from the separate ops and `weighted_sum`: values,
/// the gradients of the input, of the mixing weights and of every convolution weight, and the
/// running statistics, in f64 (1e-12 normwise, gradients relative to at least 1) and f32
/// (1e-5), stride 1 and 2, training and evaluation mode.
#[test]
fn fused_mixed_edge_equals_the_separate_ops() {
    let mut rg = rng(21);
    for trial in 0..12u64 {
        let (n, c) = (rg.random_range(2..4), rg.random_range(1..5));
        let (h, w) = (rg.random_range(4..10), rg.random_range(4..10));
        let stride = 1 + (trial as usize % 2);
        let train = trial % 3 != 2;
        let x = uniform(&mut rg, n * c * h * w);
        let wts: Vec<Vec<f64>> = [c * 9, c * c, c * 9, c * c, c * 25, c * c]
            .iter()
            .map(|&len| uniform(&mut rg, len))
            .collect();
        let k = if stride == 1 { 5 } else { 4 };
        let alpha = uniform(&mut rg, k);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("edge [{n},{c},{h},{w}] s{stride} train {train} {dtype:?}");
            let shapes: [&[usize]; 6] = [
                &[c, 1, 3, 3],
                &[c, c, 1, 1],
                &[c, 1, 3, 3],
                &[c, c, 1, 1],
                &[c, 1, 5, 5],
                &[c, c, 1, 1],
            ];
            let run = |fused: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let av = Var::from_tensor(&tensor(&alpha, &[k], dtype)).unwrap();
                let ws: Vec<Var> = wts
                    .iter()
                    .zip(shapes)
                    .map(|(v, s)| Var::from_tensor(&tensor(v, s, dtype)).unwrap())
                    .collect();
                let bns: Vec<BatchNorm2d> = (0..5)
                    .map(|_| {
                        let bn = BatchNorm2d::new(c, None, 1e-5, Some(0.1));
                        bn.set_running_stats(&vec![0.1; c], &vec![1.5; c]);
                        bn
                    })
                    .collect();
                let wsm = softmax(av.as_tensor());
                let xt = xv.as_tensor();
                let y = if fused {
                    let unit = |i: usize, b: usize, s: usize, p: usize, d: usize| UnitSpec {
                        w_dw: ws[i].as_tensor(),
                        w_pw: ws[i + 1].as_tensor(),
                        bn: &bns[b],
                        stride: s,
                        padding: p,
                        dilation: d,
                    };
                    let mut opts = vec![
                        EdgeOption::MaxPoolBn {
                            kernel: 3,
                            stride,
                            padding: 1,
                            bn: &bns[0],
                        },
                        EdgeOption::AvgPoolBn {
                            kernel: 3,
                            stride,
                            padding: 1,
                            bn: &bns[1],
                        },
                    ];
                    if stride == 1 {
                        opts.push(EdgeOption::Identity);
                    }
                    opts.push(EdgeOption::Units(vec![
                        unit(0, 2, stride, 1, 1),
                        unit(2, 3, 1, 1, 1),
                    ]));
                    opts.push(EdgeOption::Units(vec![unit(4, 4, stride, 4, 2)]));
                    assert!(fusable(xt, &opts, train));
                    mixed_edge(xt, &wsm, &opts, train).unwrap()
                } else {
                    let mut ys = vec![
                        bns[0]
                            .forward(&max_pool2d(xt, 3, stride, 1).unwrap(), train)
                            .unwrap(),
                        bns[1]
                            .forward(&avg_pool2d(xt, 3, stride, 1, false).unwrap(), train)
                            .unwrap(),
                    ];
                    if stride == 1 {
                        ys.push(xt.clone());
                    }
                    let (a, b) = (ws[0].as_tensor(), ws[1].as_tensor());
                    let u = relu_dw_pw_bn(xt, a, b, &bns[2], stride, 1, 1, train).unwrap();
                    let (a, b) = (ws[2].as_tensor(), ws[3].as_tensor());
                    ys.push(relu_dw_pw_bn(&u, a, b, &bns[3], 1, 1, 1, train).unwrap());
                    let (a, b) = (ws[4].as_tensor(), ws[5].as_tensor());
                    ys.push(relu_dw_pw_bn(xt, a, b, &bns[4], stride, 4, 2, train).unwrap());
                    weighted_sum(&ys, &wsm).unwrap()
                };
                let gy = tensor(&uniform(&mut rng(trial), y.elem_count()), y.dims(), dtype);
                let grads = loss(&y, &gy).backward().unwrap();
                let mut g = vec![
                    values(grads.get(xt).unwrap()),
                    values(grads.get(av.as_tensor()).unwrap()),
                ];
                g.extend(ws.iter().map(|v| values(grads.get(v.as_tensor()).unwrap())));
                let stats: Vec<(Vec<f64>, Vec<f64>)> =
                    bns.iter().map(|b| b.running_stats()).collect();
                (values(&y), g, stats)
            };
            let (yf, gf, sf) = run(true);
            let (ys, gs, ss) = run(false);
            assert_close(&format!("{what} y"), &yf, &ys, t64(dtype));
            for (i, (a, b)) in gf.iter().zip(&gs).enumerate() {
                // Relative to at least 1: a batch norm cancels some gradients to rounding
                // noise (with one channel, a pointwise weight is a scale it removes).
                assert_close_floor(&format!("{what} gradient {i}"), a, b, t64(dtype), 1.0);
            }
            for (i, ((m1, v1), (m2, v2))) in sf.iter().zip(&ss).enumerate() {
                assert_close(&format!("{what} running mean {i}"), m1, m2, 1e-12);
                assert_close(&format!("{what} running var {i}"), v1, v2, 1e-12);
            }
        }
    }
}

fn softmax(a: &Tensor) -> Tensor {
    let e = a.exp().unwrap();
    e.broadcast_div(&e.sum_all().unwrap()).unwrap()
}

/// A lone option of weight 1 (GDAS's hard sample): its output is the edge's output, and the
/// weight's gradient `<g, y>` is read from it; checked against the separate ops for a
/// two-unit chain and a pool, and against a weight other than 1 (the weighted-sum path).
#[test]
fn fused_edge_with_one_option_equals_the_separate_ops() {
    let (n, c, h, w) = (3, 3, 6, 5);
    let x = uniform(&mut rng(31), n * c * h * w);
    let wd = uniform(&mut rng(32), c * 9);
    let wp = uniform(&mut rng(33), c * c);
    for weight in [1.0, 0.75] {
        for pool in [false, true] {
            let what = format!("weight {weight} pool {pool}");
            let run = |fused: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], DType::F64)).unwrap();
                let av = Var::from_tensor(&tensor(&[weight], &[1], DType::F64)).unwrap();
                let dv = Var::from_tensor(&tensor(&wd, &[c, 1, 3, 3], DType::F64)).unwrap();
                let pv = Var::from_tensor(&tensor(&wp, &[c, c, 1, 1], DType::F64)).unwrap();
                let bns: Vec<BatchNorm2d> = (0..2)
                    .map(|_| BatchNorm2d::new(c, None, 1e-5, Some(0.1)))
                    .collect();
                let xt = xv.as_tensor();
                let unit = |b: usize| UnitSpec {
                    w_dw: dv.as_tensor(),
                    w_pw: pv.as_tensor(),
                    bn: &bns[b],
                    stride: 1,
                    padding: 1,
                    dilation: 1,
                };
                let y = if fused {
                    let opt = if pool {
                        EdgeOption::AvgPoolBn {
                            kernel: 3,
                            stride: 1,
                            padding: 1,
                            bn: &bns[0],
                        }
                    } else {
                        EdgeOption::Units(vec![unit(0), unit(1)])
                    };
                    mixed_edge(xt, av.as_tensor(), &[opt], true).unwrap()
                } else {
                    let y = if pool {
                        bns[0]
                            .forward(&avg_pool2d(xt, 3, 1, 1, false).unwrap(), true)
                            .unwrap()
                    } else {
                        let (a, b) = (dv.as_tensor(), pv.as_tensor());
                        let u = relu_dw_pw_bn(xt, a, b, &bns[0], 1, 1, 1, true).unwrap();
                        relu_dw_pw_bn(&u, a, b, &bns[1], 1, 1, 1, true).unwrap()
                    };
                    weighted_sum(&[y], av.as_tensor()).unwrap()
                };
                let gy = tensor(&uniform(&mut rng(34), y.elem_count()), y.dims(), DType::F64);
                let grads = loss(&y, &gy).backward().unwrap();
                let mut g = vec![values(&y)];
                for v in [&xv, &av] {
                    g.push(values(grads.get(v.as_tensor()).unwrap()));
                }
                if !pool {
                    for v in [&dv, &pv] {
                        g.push(values(grads.get(v.as_tensor()).unwrap()));
                    }
                }
                g
            };
            for (i, (a, b)) in run(true).iter().zip(&run(false)).enumerate() {
                assert_close_floor(&format!("{what} value {i}"), a, b, 1e-12, 1.0);
            }
        }
    }
}

/// `FactorizedReduce` inside a fused edge (beside a stride-2 max pool) against ReLU, two
/// stride-2 1x1 convolutions (the second on the input shifted by one row and column),
/// concatenation and batch norm as separate ops; odd sizes are an error.
#[test]
fn fused_edge_factorized_reduce_equals_the_separate_ops() {
    for (trial, (n, c, h, w)) in [(2, 2, 4, 6), (3, 4, 8, 8), (2, 6, 6, 4)]
        .into_iter()
        .enumerate()
    {
        let co = c / 2;
        let x = uniform(&mut rng(40 + trial as u64), n * c * h * w);
        let wa = uniform(&mut rng(50 + trial as u64), co * c);
        let wb = uniform(&mut rng(60 + trial as u64), co * c);
        for dtype in [DType::F64, DType::F32] {
            let what = format!("factorized reduce [{n},{c},{h},{w}] {dtype:?}");
            let run = |fused: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let av = Var::from_tensor(&tensor(&[0.3, 0.7], &[2], dtype)).unwrap();
                let va = Var::from_tensor(&tensor(&wa, &[co, c, 1, 1], dtype)).unwrap();
                let vb = Var::from_tensor(&tensor(&wb, &[co, c, 1, 1], dtype)).unwrap();
                let pool_bn = BatchNorm2d::new(c, None, 1e-5, Some(0.1));
                let fr_bn = BatchNorm2d::new(2 * co, None, 1e-5, Some(0.1));
                let xt = xv.as_tensor();
                let y = if fused {
                    let opts = [
                        EdgeOption::MaxPoolBn {
                            kernel: 3,
                            stride: 2,
                            padding: 1,
                            bn: &pool_bn,
                        },
                        EdgeOption::FactorizedReduce {
                            w_a: va.as_tensor(),
                            w_b: vb.as_tensor(),
                            bn: &fr_bn,
                        },
                    ];
                    mixed_edge(xt, av.as_tensor(), &opts, true).unwrap()
                } else {
                    let p = pool_bn
                        .forward(&max_pool2d(xt, 3, 2, 1).unwrap(), true)
                        .unwrap();
                    let r = relu(xt).unwrap();
                    let a = conv2d(&r, va.as_tensor(), 2, 0).unwrap();
                    let s = r.narrow(2, 1, h - 1).unwrap().narrow(3, 1, w - 1).unwrap();
                    let b = conv2d(&s, vb.as_tensor(), 2, 0).unwrap();
                    let z = Tensor::cat(&[a, b], 1).unwrap();
                    let f = fr_bn.forward(&z, true).unwrap();
                    weighted_sum(&[p, f], av.as_tensor()).unwrap()
                };
                let gy = tensor(&uniform(&mut rng(70), y.elem_count()), y.dims(), dtype);
                let grads = loss(&y, &gy).backward().unwrap();
                let mut out = vec![values(&y)];
                for v in [&xv, &av, &va, &vb] {
                    out.push(values(grads.get(v.as_tensor()).unwrap()));
                }
                out.push(fr_bn.running_stats().0);
                out.push(fr_bn.running_stats().1);
                out
            };
            for (i, (a, b)) in run(true).iter().zip(&run(false)).enumerate() {
                assert_close_floor(&format!("{what} value {i}"), a, b, t64(dtype), 1.0);
            }
        }
    }
    let odd = tensor(&[0.5; 2 * 5 * 4], &[1, 2, 5, 4], DType::F64);
    let (wa, wb) = (
        tensor(&[0.1; 2], &[1, 2, 1, 1], DType::F64),
        tensor(&[0.2; 2], &[1, 2, 1, 1], DType::F64),
    );
    let bn = BatchNorm2d::new(2, None, 1e-5, Some(0.1));
    let opt = EdgeOption::FactorizedReduce {
        w_a: &wa,
        w_b: &wb,
        bn: &bn,
    };
    let w = tensor(&[1.0], &[1], DType::F64);
    assert!(mixed_edge(&odd, &w, &[opt], true).is_err());
}

/// The stand-alone fused `FactorizedReduce` with its batch norm (`factorized_reduce_bn`: the
/// preprocessing after a reduction cell) against ReLU, two stride-2 1x1 convolutions (the
/// second on the input shifted by one row and column), concatenation and batch norm as
/// separate ops: values, the gradients of the input, both weights and an affine batch norm's
/// weight and bias, and the running statistics bit for bit (affine-free and affine, training
/// and evaluation, f64 and f32, inputs with exact zeros); under `with_frozen_weights` the
/// input's gradient is the same and the weights get none; bad shapes are errors.
#[test]
fn fused_factorized_reduce_equals_the_separate_ops() {
    let mut rg = rng(41);
    for trial in 0..16u64 {
        let affine = trial % 2 == 1;
        let train = trial % 4 != 3;
        let (n, c, co) = (
            rg.random_range(1..4),
            rg.random_range(1..6),
            rg.random_range(1..4),
        );
        let (h, w) = (2 * rg.random_range(1..5), 2 * rg.random_range(1..5));
        let mut x = uniform(&mut rg, n * c * h * w);
        for v in x.iter_mut().step_by(7) {
            *v = 0.0; // the ReLU's kink: no gradient flows through an exact zero
        }
        let (wa, wb) = (uniform(&mut rg, co * c), uniform(&mut rg, co * c));
        for dtype in [DType::F64, DType::F32] {
            let what = format!(
                "[{n},{c},{h},{w}]->{} train {train} affine {affine} {dtype:?}",
                2 * co
            );
            let run = |fused: bool, frozen: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let va = Var::from_tensor(&tensor(&wa, &[co, c, 1, 1], dtype)).unwrap();
                let vb = Var::from_tensor(&tensor(&wb, &[co, c, 1, 1], dtype)).unwrap();
                let gamma = uniform(&mut rng(trial + 100), 2 * co);
                let beta = uniform(&mut rng(trial + 200), 2 * co);
                let params = [&gamma, &beta]
                    .map(|v| Var::from_tensor(&tensor(v, &[2 * co], dtype)).unwrap());
                let p = affine.then(|| (params[0].clone(), params[1].clone()));
                let bn = BatchNorm2d::new(2 * co, p, 1e-5, Some(0.1));
                bn.set_running_stats(&vec![0.25; 2 * co], &vec![2.0; 2 * co]);
                let xt = xv.as_tensor();
                let forward = || {
                    if fused {
                        factorized_reduce_bn(xt, va.as_tensor(), vb.as_tensor(), &bn, train)
                            .unwrap()
                    } else {
                        let r = relu(xt).unwrap();
                        let a = conv2d(&r, va.as_tensor(), 2, 0).unwrap();
                        let s = r.narrow(2, 1, h - 1).unwrap().narrow(3, 1, w - 1).unwrap();
                        let b = conv2d(&s, vb.as_tensor(), 2, 0).unwrap();
                        bn.forward(&Tensor::cat(&[a, b], 1).unwrap(), train)
                            .unwrap()
                    }
                };
                let y = if frozen {
                    with_frozen_weights(forward)
                } else {
                    forward()
                };
                let gy = tensor(
                    &uniform(&mut rng(trial + 300), y.elem_count()),
                    y.dims(),
                    dtype,
                );
                let grads = loss(&y, &gy).backward().unwrap();
                let g = |v: &Var| grads.get(v.as_tensor()).map(values);
                let weight_grads: Vec<Option<Vec<f64>>> = [&va, &vb, &params[0], &params[1]]
                    .into_iter()
                    .map(g)
                    .collect();
                (
                    values(&y),
                    g(&xv).unwrap(),
                    weight_grads,
                    bn.running_stats(),
                )
            };
            let fused = run(true, false);
            let apart = run(false, false);
            assert_eq!(fused.0, apart.0, "{what}: y");
            assert_eq!(fused.1, apart.1, "{what}: dL/dx");
            assert_eq!(
                fused.2, apart.2,
                "{what}: dL/dw_a, dL/dw_b, dL/dgamma, dL/dbeta"
            );
            assert_eq!(fused.2[2].is_some(), affine, "{what}: gamma's gradient");
            assert_eq!(fused.3, apart.3, "{what}: running statistics");
            let frozen = run(true, true);
            assert_eq!(frozen.0, fused.0, "{what}: frozen y");
            assert_eq!(frozen.1, fused.1, "{what}: frozen dL/dx");
            assert!(
                frozen.2.iter().all(Option::is_none),
                "{what}: frozen weights got gradients"
            );
        }
    }
    // Bad shapes are errors naming what is wrong, not panics.
    let w = tensor(&[0.5; 2 * 3], &[2, 3, 1, 1], DType::F64);
    let bn = BatchNorm2d::new(4, None, 1e-5, Some(0.1));
    let odd = tensor(&[0.5; 3 * 5 * 4], &[1, 3, 5, 4], DType::F64);
    let e = factorized_reduce_bn(&odd, &w, &w, &bn, true).unwrap_err();
    assert!(e.to_string().contains("even input size"), "{e}");
    let x = tensor(&[0.5; 3 * 4 * 4], &[1, 3, 4, 4], DType::F64);
    let e =
        factorized_reduce_bn(&x, &w, &w, &BatchNorm2d::new(6, None, 1e-5, None), true).unwrap_err();
    assert!(e.to_string().contains("6 channels"), "{e}");
    let w4 = tensor(&[0.5; 2 * 4], &[2, 4, 1, 1], DType::F64);
    let e = factorized_reduce_bn(&x, &w, &w4, &bn, true).unwrap_err();
    assert!(e.to_string().contains("[C_out/2, 3, 1, 1]"), "{e}");
}

/// Under `with_frozen_weights` (an architecture step) the fused edge computes no weight
/// gradients, and the gradients of its input and mixing weights are bit for bit those of an
/// ordinary backward: separable units at strides 1 and 2 (both dwconv backward paths) and a
/// pooling option.
#[test]
fn frozen_weights_leave_input_and_mixing_gradients_unchanged() {
    let mut rg = rng(31);
    let (n, c, h, w) = (3, 4, 9, 8);
    let x = uniform(&mut rg, n * c * h * w);
    let wts: Vec<Vec<f64>> = [c * 9, c * c, c * 25, c * c]
        .iter()
        .map(|&len| uniform(&mut rg, len))
        .collect();
    let shapes: [&[usize]; 4] = [&[c, 1, 3, 3], &[c, c, 1, 1], &[c, 1, 5, 5], &[c, c, 1, 1]];
    let alpha = uniform(&mut rg, 3);
    for stride in [1, 2] {
        for dtype in [DType::F64, DType::F32] {
            let run = |frozen: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let av = Var::from_tensor(&tensor(&alpha, &[3], dtype)).unwrap();
                let ws: Vec<Var> = wts
                    .iter()
                    .zip(shapes)
                    .map(|(v, s)| Var::from_tensor(&tensor(v, s, dtype)).unwrap())
                    .collect();
                let bns: Vec<BatchNorm2d> = (0..3)
                    .map(|_| BatchNorm2d::new(c, None, 1e-5, Some(0.1)))
                    .collect();
                let unit = |i: usize, b: usize, p: usize, d: usize| UnitSpec {
                    w_dw: ws[i].as_tensor(),
                    w_pw: ws[i + 1].as_tensor(),
                    bn: &bns[b],
                    stride,
                    padding: p,
                    dilation: d,
                };
                let opts = vec![
                    EdgeOption::MaxPoolBn {
                        kernel: 3,
                        stride,
                        padding: 1,
                        bn: &bns[0],
                    },
                    EdgeOption::Units(vec![unit(0, 1, 1, 1)]),
                    EdgeOption::Units(vec![unit(2, 2, 4, 2)]),
                ];
                let wsm = softmax(av.as_tensor());
                let forward = || mixed_edge(xv.as_tensor(), &wsm, &opts, true).unwrap();
                let y = if frozen {
                    with_frozen_weights(forward)
                } else {
                    forward()
                };
                let gy = tensor(&uniform(&mut rng(5), y.elem_count()), y.dims(), dtype);
                let grads = loss(&y, &gy).backward().unwrap();
                let weight_grads = ws
                    .iter()
                    .filter(|v| grads.get(v.as_tensor()).is_some())
                    .count();
                (
                    values(&y),
                    values(grads.get(xv.as_tensor()).unwrap()),
                    values(grads.get(av.as_tensor()).unwrap()),
                    weight_grads,
                )
            };
            let (y0, gx0, ga0, nw0) = run(false);
            let (y1, gx1, ga1, nw1) = run(true);
            let what = format!("stride {stride} {dtype:?}");
            assert_eq!(nw0, 4, "{what}: an ordinary backward reaches every weight");
            assert_eq!(nw1, 0, "{what}: frozen weights got gradients");
            assert_eq!(y0, y1, "{what}: outputs differ");
            assert_eq!(gx0, gx1, "{what}: input gradients differ");
            assert_eq!(ga0, ga1, "{what}: mixing-weight gradients differ");
        }
    }
}

/// Under `with_frozen_weights` the fused separable unit gives its weights (and an affine batch
/// norm's) no gradient and its input the same gradient, bit for bit (a SepConv unit and a
/// strided dilated one).
#[test]
fn frozen_weights_leave_the_units_input_gradient_unchanged() {
    let mut rg = rng(41);
    let (n, c, h, w, o) = (2, 3, 9, 8, 5);
    let x = uniform(&mut rg, n * c * h * w);
    for (k, stride, padding, dilation) in [(3, 1, 1, 1), (5, 2, 4, 2)] {
        let wd = uniform(&mut rg, c * k * k);
        let wp = uniform(&mut rg, o * c);
        for (dtype, affine) in [(DType::F64, false), (DType::F32, false), (DType::F64, true)] {
            let run = |frozen: bool| {
                let xv = Var::from_tensor(&tensor(&x, &[n, c, h, w], dtype)).unwrap();
                let dv = Var::from_tensor(&tensor(&wd, &[c, 1, k, k], dtype)).unwrap();
                let pv = Var::from_tensor(&tensor(&wp, &[o, c, 1, 1], dtype)).unwrap();
                let params = [1.5, 0.25]
                    .map(|v| Var::from_tensor(&tensor(&vec![v; o], &[o], dtype)).unwrap());
                let p = affine.then(|| (params[0].clone(), params[1].clone()));
                let bn = BatchNorm2d::new(o, p, 1e-5, Some(0.1));
                let forward = || {
                    nas_ops::relu_dw_pw_bn(
                        xv.as_tensor(),
                        dv.as_tensor(),
                        pv.as_tensor(),
                        &bn,
                        stride,
                        padding,
                        dilation,
                        true,
                    )
                    .unwrap()
                };
                let y = if frozen {
                    with_frozen_weights(forward)
                } else {
                    forward()
                };
                let gy = tensor(&uniform(&mut rng(7), y.elem_count()), y.dims(), dtype);
                let grads = loss(&y, &gy).backward().unwrap();
                let weight_grads = [&dv, &pv, &params[0], &params[1]]
                    .iter()
                    .filter(|v| grads.get(v.as_tensor()).is_some())
                    .count();
                (
                    values(&y),
                    values(grads.get(xv.as_tensor()).unwrap()),
                    weight_grads,
                )
            };
            let (y0, gx0, nw0) = run(false);
            let (y1, gx1, nw1) = run(true);
            let what = format!("k{k} s{stride} d{dilation} {dtype:?} affine {affine}");
            let want = if affine { 4 } else { 2 };
            assert_eq!(
                nw0, want,
                "{what}: an ordinary backward reaches every weight"
            );
            assert_eq!(nw1, 0, "{what}: frozen weights got gradients");
            assert_eq!(y0, y1, "{what}: outputs differ");
            assert_eq!(gx0, gx1, "{what}: input gradients differ");
        }
    }
}
