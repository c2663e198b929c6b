//! The portable (non-AVX2) build of the depthwise kernels against the reference, forward and
//! backward, on random shapes. One test in its own binary, because the switch is process-wide.
use crate::common;

use candle_core::{DType, Var};
use common::*;
use nas_ops::reference::{self as r, ConvSpec};
use nas_ops::*;
use rand::Rng;

#[test]
fn portable_depthwise_kernels_match_reference() {
    force_portable_kernels(true);
    let mut rg = rng(7);
    let mut done = 0;
    while done < 40 {
        let (n, c) = (rg.random_range(1..3), rg.random_range(1..4));
        let (h, w) = (rg.random_range(1..12), rg.random_range(1..20));
        let k = [1, 3, 5][rg.random_range(0..3)];
        let (s, d) = (rg.random_range(1..3), rg.random_range(1..3));
        let p = rg.random_range(0..(d * (k - 1) / 2 + 2));
        if r::out_len(h, k, s, p, d).is_none() || r::out_len(w, k, s, p, d).is_none() {
            continue;
        }
        done += 1;
        let (xd, wd) = ([n, c, h, w], [c, 1, k, k]);
        let x = uniform(&mut rg, n * c * h * w);
        let wt = uniform(&mut rg, c * k * k);
        let cs = ConvSpec {
            stride: s,
            padding: p,
            dilation: d,
            groups: c,
        };
        let (yr, _) = r::conv2d_forward(&x, xd, &wt, wd, cs);
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let xv = Var::from_tensor(&tensor(&x, &xd, dtype)).unwrap();
            let wv = Var::from_tensor(&tensor(&wt, &wd, dtype)).unwrap();
            let y = depthwise_conv2d(&xv, &wv, s, p, d).unwrap();
            let what = format!("portable dwconv {xd:?} k{k} s{s} p{p} d{d} {dtype:?}");
            assert_close(&format!("{what} y"), &values(&y), &yr, tol);
            let gy = uniform(&mut rng(done as u64), y.elem_count());
            let grads = loss(&y, &tensor(&gy, y.dims(), dtype)).backward().unwrap();
            let (gxr, gwr) = r::conv2d_backward(&x, xd, &wt, wd, &gy, cs);
            assert_close(
                &format!("{what} gx"),
                &values(grads.get(xv.as_tensor()).unwrap()),
                &gxr,
                tol,
            );
            assert_close(
                &format!("{what} gw"),
                &values(grads.get(wv.as_tensor()).unwrap()),
                &gwr,
                tol,
            );
        }
    }
    force_portable_kernels(false);
}
