//! Forward + backward timings of the nas-ops kernels against stock candle equivalents at DARTS
//! search sizes (batch 64; C=16 at 32x32, C=32 at 16x16, C=64 at 8x8; f32).
//!
//! Run: `cargo bench -p nas-ops --bench ops` (optionally `-- QUICK` for fewer repetitions).
//! Each figure is the fastest of the timed runs (see `best_ms`).
//! Stock candle has no padded pooling with a backward for kernel != stride and no
//! `count_include_pad=False`, so its pools are built the way a candle user would: the maximum
//! or sum of the k*k shifted slices of a padded input.
use candle_core::{DType, Device, Result, Tensor, Var, D};
use nas_ops::*;
use std::time::Instant;

/// The fastest of `reps` timed runs (after a warm-up), in ms: on a shared machine the minimum
/// estimates the uncontended time far more stably than the median.
fn best_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[0])
}

fn randn(shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::randn(0f32, 1f32, shape, &Device::Cpu)?)
}

/// Forward, then backward from `y` (seed gradient: ones).
fn fwd_bwd(y: Result<Tensor>) -> Result<()> {
    let g = y?.backward()?;
    std::hint::black_box(g);
    Ok(())
}

/// Stock max/avg pool (kernel k, stride 1 or 2, padding k/2) from shifted slices.
fn stock_pool(
    x: &Tensor,
    k: usize,
    stride: usize,
    max: bool,
    inv_count: &Tensor,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let p = k / 2;
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    let xp = if max {
        // Padding must never win: push the border to -1e30.
        let border = Tensor::ones((1, 1, h, w), DType::F32, x.device())?
            .pad_with_zeros(2, p, p)?
            .pad_with_zeros(3, p, p)?
            .affine(1e30, -1e30)?;
        xp.broadcast_add(&border)?
    } else {
        xp
    };
    let mut acc: Option<Tensor> = None;
    for i in 0..k {
        for j in 0..k {
            let s = xp.narrow(2, i, h)?.narrow(3, j, w)?;
            acc = Some(match acc {
                None => s,
                Some(a) if max => a.maximum(&s)?,
                Some(a) => (a + s)?,
            });
        }
    }
    let y = acc.expect("k >= 1");
    let y = if max { y } else { y.broadcast_mul(inv_count)? };
    if stride == 1 {
        Ok(y)
    } else {
        // Stride 2 by reshaping: keep every other row and column.
        let (n, c, _, _) = y.dims4()?;
        y.reshape((n, c, h / 2, 2, w / 2, 2))?
            .narrow(3, 0, 1)?
            .narrow(5, 0, 1)?
            .reshape((n, c, h / 2, w / 2))
    }
}

fn stock_bn(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc
        .sqr()?
        .mean_keepdim(0)?
        .mean_keepdim(2)?
        .mean_keepdim(3)?;
    xc.broadcast_div(&(var + 1e-5)?.sqrt()?)
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "QUICK");
    // FUSED: only the fused relu + depthwise rows.
    let fused_only = std::env::args().any(|a| a == "FUSED");
    let reps = if quick { 5 } else { 15 };
    println!("threads: {}", rayon::current_num_threads());
    println!("| size | op | nas-ops ms | stock candle ms | stock / ours |");
    println!("|---|---|---|---|---|");
    for (c, h) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let n = 64;
        let x = randn(&[n, c, h, h])?;
        let size = format!("{n}x{c}x{h}x{h}");
        let row = |op: &str, ours: f64, stock: Option<f64>| match stock {
            Some(s) => println!("| {size} | {op} | {ours:.2} | {s:.2} | {:.1}x |", s / ours),
            None => println!("| {size} | {op} | {ours:.2} | - | - |"),
        };
        for (k, s, d) in [
            (3, 1, 1),
            (5, 1, 1),
            (3, 1, 2),
            (5, 1, 2),
            (3, 2, 1),
            (5, 2, 2),
        ] {
            let p = d * (k - 1) / 2;
            let w = randn(&[c, 1, k, k])?;
            let fused = best_ms(reps, || fwd_bwd(relu_depthwise_conv2d(&x, &w, s, p, d)))?;
            let two = best_ms(reps, || fwd_bwd(depthwise_conv2d(&relu(&x)?, &w, s, p, d)))?;
            println!(
                "| {size} | relu+depthwise {k}x{k} s{s} d{d}: fused {fused:.2} ms, two ops {two:.2} ms | | | |"
            );
            if fused_only {
                continue;
            }
            let ours = best_ms(reps, || fwd_bwd(depthwise_conv2d(&x, &w, s, p, d)))?;
            let stock = best_ms(reps.min(5), || fwd_bwd(x.conv2d(&w, p, s, d, c)))?;
            row(&format!("depthwise {k}x{k} s{s} d{d}"), ours, Some(stock));
        }
        if fused_only {
            continue;
        }
        let w1 = randn(&[c, c, 1, 1])?;
        let ours = best_ms(reps, || fwd_bwd(conv2d(&x, &w1, 1, 0)))?;
        let stock = best_ms(reps, || fwd_bwd(x.conv2d(&w1, 0, 1, 1, 1)))?;
        row("conv 1x1", ours, Some(stock));
        for s in [1, 2] {
            let (oh, _) = (out_size(h, 3, s, 1, 1)?, 0);
            let inv = Tensor::ones((1, 1, h, h), DType::F32, &Device::Cpu)?;
            let inv = avg_pool2d(&inv, 3, 1, 1, false)?
                .affine(9.0, 0.0)?
                .recip()?;
            let _ = oh;
            let ours = best_ms(reps, || fwd_bwd(max_pool2d(&x, 3, s, 1)))?;
            let stock = best_ms(reps, || fwd_bwd(stock_pool(&x, 3, s, true, &inv)))?;
            row(&format!("max pool 3x3 s{s}"), ours, Some(stock));
            let ours = best_ms(reps, || fwd_bwd(avg_pool2d(&x, 3, s, 1, false)))?;
            let stock = best_ms(reps, || fwd_bwd(stock_pool(&x, 3, s, false, &inv)))?;
            row(&format!("avg pool 3x3 s{s} (excl. pad)"), ours, Some(stock));
        }
        let bn = BatchNorm2d::new(c, None, 1e-5, Some(0.1));
        let ours = best_ms(reps, || fwd_bwd(bn.forward(&x, true)))?;
        let stock = best_ms(reps, || fwd_bwd(stock_bn(&x)))?;
        row("batch norm (train)", ours, Some(stock));
        let ours = best_ms(reps, || fwd_bwd(relu(&x)))?;
        let stock = best_ms(reps, || fwd_bwd(x.relu()))?;
        row("relu", ours, Some(stock));
        let ours = best_ms(reps, || fwd_bwd(global_avg_pool(&x)))?;
        let stock = best_ms(reps, || fwd_bwd(x.mean(D::Minus1)?.mean(D::Minus1)))?;
        row("global avg pool", ours, Some(stock));
        let ys: Vec<Var> = (0..8)
            .map(|_| randn(&[n, c, h, h]))
            .collect::<Result<_>>()?;
        let ys: Vec<Tensor> = ys.iter().map(|v| v.as_tensor().clone()).collect();
        let wts = randn(&[8])?;
        let ours = best_ms(reps, || fwd_bwd(weighted_sum(&ys, &wts)))?;
        let stock = best_ms(reps, || {
            let mut acc = ys[0].broadcast_mul(&wts.narrow(0, 0, 1)?)?;
            for (k, y) in ys.iter().enumerate().skip(1) {
                acc = (acc + y.broadcast_mul(&wts.narrow(0, k, 1)?)?)?;
            }
            fwd_bwd(Ok(acc))
        })?;
        row("weighted sum (K=8)", ours, Some(stock));
        for s in [1, 2] {
            let ours = best_ms(reps, || fwd_bwd(mixed_op(&x, s)))?;
            row(&format!("DARTS MixedOp s{s} (8 ops)"), ours, None);
        }
    }
    Ok(())
}

/// One DARTS MixedOp (quark0/darts `model_search.py`) built from nas-ops, with fresh weights.
fn mixed_op(x: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let bn = |t: &Tensor| BatchNorm2d::new(c, None, 1e-5, Some(0.1)).forward(t, true);
    let param = |shape: &[usize]| -> Result<Tensor> { Ok(randn(shape)?.as_tensor().clone()) };
    let sep = |k: usize| -> Result<Tensor> {
        let t = depthwise_conv2d(&relu(x)?, &param(&[c, 1, k, k])?, stride, k / 2, 1)?;
        let t = bn(&conv2d(&t, &param(&[c, c, 1, 1])?, 1, 0)?)?;
        let t = depthwise_conv2d(&relu(&t)?, &param(&[c, 1, k, k])?, 1, k / 2, 1)?;
        bn(&conv2d(&t, &param(&[c, c, 1, 1])?, 1, 0)?)
    };
    let dil = |k: usize| -> Result<Tensor> {
        let t = depthwise_conv2d(&relu(x)?, &param(&[c, 1, k, k])?, stride, k - 1, 2)?;
        bn(&conv2d(&t, &param(&[c, c, 1, 1])?, 1, 0)?)
    };
    let (oh, ow) = (out_size(h, 1, stride, 0, 1)?, out_size(w, 1, stride, 0, 1)?);
    let skip = if stride == 1 {
        x.clone()
    } else {
        let r = relu(x)?;
        let a = conv2d(&r, &param(&[c / 2, c, 1, 1])?, 2, 0)?;
        let shifted = r.narrow(2, 1, h - 1)?.narrow(3, 1, w - 1)?;
        let b = conv2d(&shifted, &param(&[c / 2, c, 1, 1])?, 2, 0)?;
        bn(&Tensor::cat(&[&a, &b], 1)?)?
    };
    let ops = vec![
        Tensor::zeros((n, c, oh, ow), x.dtype(), x.device())?,
        bn(&max_pool2d(x, 3, stride, 1)?)?,
        bn(&avg_pool2d(x, 3, stride, 1, false)?)?,
        skip,
        sep(3)?,
        sep(5)?,
        dil(3)?,
        dil(5)?,
    ];
    weighted_sum(&ops, randn(&[8])?.as_tensor())
}
