//! Geometries the goldens do not cover (dense and grouped k3 convolutions with stride and
//! dilation, odd sizes, pools with stride 3), checked against central finite differences of
//! L = sum(y * gy) in f64; the mixed-op sum with skipped options; hand-worked tie and error
//! cases.
use nas_kernels::host::{self, BnShape, Geom, KernelError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central differences of `f` at `x` (step 1e-6), element by element.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += h;
            let up = f(&p);
            p[i] -= 2.0 * h;
            (up - f(&p)) / (2.0 * h)
        })
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= tol * scale,
        "{what}: normwise error {:.2e}",
        err / scale
    );
}

#[test]
fn convolutions_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (n, cin, h, w, cout, k, stride, pad, dil, groups)
    let cases = [
        (2, 3, 7, 6, 5, 3, 1, 1, 1, 1),
        (2, 4, 9, 9, 6, 3, 2, 2, 2, 2),
        (1, 6, 8, 5, 6, 5, 3, 2, 1, 3),
        (2, 4, 6, 6, 4, 3, 2, 0, 1, 4),
    ];
    for (n, cin, h, w, cout, k, s, p, d, gr) in cases {
        let g = Geom::conv(n, cin, h, w, cout, k, s, p, d, gr).unwrap();
        let x = randn(&mut rng, n * cin * h * w);
        let wt = randn(&mut rng, cout * (cin / gr) * k * k);
        let gy = randn(&mut rng, n * cout * (g.oh * g.ow) as usize);
        let (gx, gw) = host::conv_bwd(&x, &wt, &gy, &g).unwrap();
        let loss_x = |xv: &[f64]| dot(&host::conv_fwd(xv, &wt, &g).unwrap(), &gy);
        let loss_w = |wv: &[f64]| dot(&host::conv_fwd(&x, wv, &g).unwrap(), &gy);
        assert_close(&format!("{g:?} gx"), &gx, &numeric_grad(&x, loss_x), 1e-7);
        assert_close(&format!("{g:?} gw"), &gw, &numeric_grad(&wt, loss_w), 1e-7);
    }
}

#[test]
fn pools_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (h, w, k, s, p) in [(7, 5, 3, 3, 1), (6, 6, 3, 2, 0), (5, 8, 2, 1, 1)] {
        let g = Geom::pool(2, 3, h, w, k, s, p).unwrap();
        // Distinct values: no ties, so max pool is differentiable at x.
        let x: Vec<f64> = randn(&mut rng, 2 * 3 * h * w)
            .iter()
            .enumerate()
            .map(|(i, v)| v + i as f64 * 1e-3)
            .collect();
        let gy = randn(&mut rng, 2 * 3 * (g.oh * g.ow) as usize);
        let (_, arg) = host::max_pool_fwd(&x, &g).unwrap();
        let gx_max = host::max_pool_bwd(&gy, &arg, &g).unwrap();
        let lmax = |xv: &[f64]| dot(&host::max_pool_fwd(xv, &g).unwrap().0, &gy);
        assert_close("max pool gx", &gx_max, &numeric_grad(&x, lmax), 1e-7);
        for include_pad in [false, true] {
            let gx_avg = host::avg_pool_bwd(&gy, &g, include_pad).unwrap();
            let lavg = |xv: &[f64]| dot(&host::avg_pool_fwd(xv, &g, include_pad).unwrap(), &gy);
            let what = format!("avg pool (include_pad {include_pad}) gx");
            assert_close(&what, &gx_avg, &numeric_grad(&x, lavg), 1e-7);
        }
    }
}

#[test]
fn batch_norm_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let s = BnShape { n: 3, c: 2, hw: 5 };
    let x: Vec<f64> = randn(&mut rng, 30).iter().map(|v| 3.0 + 2.0 * v).collect();
    let gamma = randn(&mut rng, 2);
    let beta = randn(&mut rng, 2);
    let gy = randn(&mut rng, 30);
    let loss = |xv: &[f64], ga: &[f64]| {
        let f = host::bn_fwd_train(xv, s, Some((ga, &beta)), 1e-5, 0.1, None).unwrap();
        dot(&f.y, &gy)
    };
    let f = host::bn_fwd_train(&x, s, Some((&gamma, &beta)), 1e-5, 0.1, None).unwrap();
    let (gx, gp) = host::bn_bwd_train(&x, &gy, s, Some(&gamma), &f).unwrap();
    let (gg, gb) = gp.unwrap();
    assert_close("bn gx", &gx, &numeric_grad(&x, |v| loss(v, &gamma)), 1e-6);
    assert_close(
        "bn ggamma",
        &gg,
        &numeric_grad(&gamma, |v| loss(&x, v)),
        1e-6,
    );
    // dL/dbeta = sum of gy over each channel, by hand.
    let want_gb: Vec<f64> = (0..2)
        .map(|c| {
            (0..3)
                .flat_map(|n| (0..5).map(move |j| (n * 2 + c) * 5 + j))
                .map(|i| gy[i])
                .sum()
        })
        .collect();
    assert_close("bn gbeta", &gb, &want_gb, 1e-12);
}

#[test]
fn mixed_sum_skips_zero_weights_and_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let len = 12;
    let ys: Vec<Vec<f64>> = (0..4).map(|_| randn(&mut rng, len)).collect();
    let w = vec![0.3, 0.0, -1.2, 0.5];
    let gy = randn(&mut rng, len);
    let all: Vec<Option<&[f64]>> = ys.iter().map(|y| Some(y.as_slice())).collect();
    let mut some = all.clone();
    some[1] = None;
    let full = host::mixed_fwd(&all, &w, len).unwrap();
    let skipped = host::mixed_fwd(&some, &w, len).unwrap();
    assert_eq!(full, skipped, "a zero-weight option changes nothing");
    let by_hand: Vec<f64> = (0..len)
        .map(|i| 0.3 * ys[0][i] - 1.2 * ys[2][i] + 0.5 * ys[3][i])
        .collect();
    assert_close("mixed y", &full, &by_hand, 1e-15);
    let (gys, gw) = host::mixed_bwd(&gy, &all, &w).unwrap();
    let lw = |wv: &[f64]| dot(&host::mixed_fwd(&all, wv, len).unwrap(), &gy);
    assert_close("mixed gw", &gw, &numeric_grad(&w, lw), 1e-8);
    for (k, g) in gys.iter().enumerate() {
        let want: Vec<f64> = gy.iter().map(|v| w[k] * v).collect();
        assert_close("mixed gy_k", g.as_ref().unwrap(), &want, 1e-15);
    }
    let (gys_s, gw_s) = host::mixed_bwd(&gy, &some, &w).unwrap();
    assert!(gys_s[1].is_none());
    assert_eq!(gw_s[1], 0.0);
    assert_eq!(gw_s[0], gw[0]);
    // A non-zero weight without an output is refused.
    let mut bad = all.clone();
    bad[0] = None;
    assert!(host::mixed_fwd(&bad, &w, len).is_err());
}

/// PyTorch's max pool: padding never wins, the first maximum in row-major window order wins a
/// tie, and the gradient goes to that cell only (worked by hand on a 1x1x2x2 input).
#[test]
fn max_pool_ties_and_padding_by_hand() {
    let g = Geom::pool(1, 1, 2, 2, 3, 1, 1).unwrap();
    let x = [-5.0f64, -5.0, -7.0, -5.0];
    let (y, arg) = host::max_pool_fwd(&x, &g).unwrap();
    assert_eq!(y, vec![-5.0; 4], "padding (0) never wins over -5");
    assert_eq!(
        arg,
        vec![0, 0, 0, 0],
        "the first of the tied cells wins every window"
    );
    let gx = host::max_pool_bwd(&[1.0, 2.0, 3.0, 4.0], &arg, &g).unwrap();
    assert_eq!(gx, vec![10.0, 0.0, 0.0, 0.0]);
    // count_include_pad=False: a corner window of a 2x2 input averages its 4 cells.
    let y = host::avg_pool_fwd(&[1.0f64, 2.0, 3.0, 6.0], &g, false).unwrap();
    assert_eq!(y, vec![3.0; 4]);
    // count_include_pad=True: the same windows divide by all 9 cells, padding included.
    let y = host::avg_pool_fwd(&[1.0f64, 2.0, 3.0, 6.0], &g, true).unwrap();
    assert_eq!(y, vec![12.0 / 9.0; 4]);
    // and each input cell lies in all four windows: dL/dx = sum(gy) / 9.
    let gx = host::avg_pool_bwd(&[1.0f64, 2.0, 3.0, 3.0], &g, true).unwrap();
    assert_eq!(gx, vec![1.0; 4]);
}

#[test]
fn bad_shapes_are_errors() {
    assert!(matches!(
        Geom::conv(1, 3, 4, 4, 4, 3, 1, 1, 1, 2),
        Err(KernelError::Geometry(_))
    ));
    assert!(matches!(
        Geom::conv(1, 2, 2, 2, 2, 5, 1, 0, 1, 1),
        Err(KernelError::Geometry(_))
    ));
    assert!(
        Geom::pool(1, 1, 4, 4, 3, 1, 2).is_err(),
        "padding above k/2"
    );
    let g = Geom::conv(1, 2, 4, 4, 2, 3, 1, 1, 1, 1).unwrap();
    let err = host::conv_fwd(&[0.0f64; 31], &[0.0; 36], &g).unwrap_err();
    assert_eq!(
        err,
        KernelError::Length {
            name: "x",
            got: 31,
            want: 32
        }
    );
    assert!(host::max_pool_bwd(
        &[0.0f64; 16],
        &[99; 16],
        &Geom::pool(1, 1, 4, 4, 3, 1, 1).unwrap()
    )
    .is_err());
}

/// PyTorch's ReLU keeps NaN (a diverging run shows it); its gradient mask is `x > 0`.
#[test]
fn relu_keeps_nan_and_masks_by_positive_input() {
    let y = host::relu_fwd(&[f64::NAN, -1.0, 0.0, 2.0]).unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[0.0, 0.0, 2.0]);
    let gx = host::relu_bwd(&[f64::NAN, -1.0, 0.0, 2.0], &[5.0; 4]).unwrap();
    assert_eq!(gx, vec![0.0, 0.0, 0.0, 5.0]);
}
