//! The backward pass of every op against central finite differences of `L = sum(y * gy)` in
//! f64 on small random inputs (step 1e-6; tolerance 1e-6 normwise, far above the ~1e-9 that
//! the differencing leaves and far below any real mistake).
use crate::common;

use candle_core::{DType, Tensor, Var};
use common::*;
use nas_ops::*;

/// Checks d/d(input i) of `sum(f(inputs) * gy)` for every input against finite differences.
fn fd_check(what: &str, inputs: &[(Vec<f64>, Vec<usize>)], f: &dyn Fn(&[Tensor]) -> Tensor) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(d, s)| Var::from_tensor(&tensor(d, s, DType::F64)).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let gy = uniform(&mut rng(99), y.elem_count());
    let grads = loss(&y, &tensor(&gy, y.dims(), DType::F64))
        .backward()
        .unwrap();
    for (i, v) in vars.iter().enumerate() {
        let analytic = values(
            grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{what}: no gradient for input {i}")),
        );
        let numeric = finite_diff(&inputs[i].0, 1e-6, &gy, &|p| {
            let mut ts: Vec<Tensor> = inputs
                .iter()
                .map(|(d, s)| tensor(d, s, DType::F64))
                .collect();
            ts[i] = tensor(p, &inputs[i].1, DType::F64);
            values(&f(&ts))
        });
        assert_close(&format!("{what}: input {i}"), &analytic, &numeric, 1e-6);
    }
}

fn input(seed: u64, shape: &[usize]) -> (Vec<f64>, Vec<usize>) {
    (
        uniform(&mut rng(seed), shape.iter().product()),
        shape.to_vec(),
    )
}

#[test]
fn depthwise_conv_backward() {
    for (k, s, p, d, h, w) in [
        (3, 1, 1, 1, 5, 6),
        (5, 2, 2, 1, 7, 6),
        (3, 2, 2, 2, 7, 7),
        (5, 1, 4, 2, 6, 5),
        (2, 3, 0, 1, 7, 8),
    ] {
        let x = input(1, &[2, 3, h, w]);
        let wt = input(2, &[3, 1, k, k]);
        fd_check(&format!("dwconv k{k} s{s} p{p} d{d}"), &[x, wt], &|t| {
            depthwise_conv2d(&t[0], &t[1], s, p, d).unwrap()
        });
    }
}

#[test]
fn conv_backward() {
    for (k, s, p, h, w) in [
        (1, 1, 0, 4, 5),
        (1, 2, 0, 5, 4),
        (3, 1, 1, 4, 4),
        (3, 2, 1, 5, 6),
    ] {
        let x = input(3, &[2, 3, h, w]);
        let wt = input(4, &[4, 3, k, k]);
        fd_check(&format!("conv2d k{k} s{s} p{p}"), &[x, wt], &|t| {
            conv2d(&t[0], &t[1], s, p).unwrap()
        });
    }
    let x = input(5, &[2, 4, 5, 5]);
    let wt = input(6, &[6, 2, 3, 3]);
    fd_check("grouped conv g2", &[x, wt], &|t| {
        grouped_conv2d(&t[0], &t[1], 2, 1, 2).unwrap()
    });
}

#[test]
fn pool_backward() {
    for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 2, 0), (5, 2, 2)] {
        // Distinct values (spacing 1/64 >> step), so no window's max changes under the step.
        let x = (distinct(&mut rng(7), 2 * 2 * 7 * 6), vec![2, 2, 7, 6]);
        fd_check(
            &format!("max_pool k{k} s{s} p{p}"),
            std::slice::from_ref(&x),
            &|t| max_pool2d(&t[0], k, s, p).unwrap(),
        );
        for include in [false, true] {
            fd_check(
                &format!("avg_pool k{k} s{s} p{p} {include}"),
                std::slice::from_ref(&x),
                &|t| avg_pool2d(&t[0], k, s, p, include).unwrap(),
            );
        }
    }
}

#[test]
fn batch_norm_backward() {
    let x = input(8, &[3, 2, 3, 4]);
    let gamma = (vec![0.7, 1.3], vec![2]);
    let beta = (vec![0.1, -0.2], vec![2]);
    fd_check("bn train", std::slice::from_ref(&x), &|t| {
        BatchNorm2d::new(2, None, 1e-5, Some(0.1))
            .forward(&t[0], true)
            .unwrap()
    });
    // `Var::from_tensor` of a variable is that variable, so gamma and beta stay graph inputs.
    fd_check(
        "bn train affine",
        &[x.clone(), gamma.clone(), beta.clone()],
        &|t| {
            let bn = BatchNorm2d::new(
                2,
                Some((
                    Var::from_tensor(&t[1]).unwrap(),
                    Var::from_tensor(&t[2]).unwrap(),
                )),
                1e-5,
                Some(0.1),
            );
            bn.forward(&t[0], true).unwrap()
        },
    );
    // Parameter gradients in both modes, with preset running statistics.
    let gv = Var::from_tensor(&tensor(&gamma.0, &[2], DType::F64)).unwrap();
    let bv = Var::from_tensor(&tensor(&beta.0, &[2], DType::F64)).unwrap();
    for train in [true, false] {
        let bn = BatchNorm2d::new(2, Some((gv.clone(), bv.clone())), 1e-5, Some(0.1));
        bn.set_running_stats(&[0.3, -0.1], &[0.8, 1.7]);
        let xt = tensor(&x.0, &x.1, DType::F64);
        let y = bn.forward(&xt, train).unwrap();
        bn.set_running_stats(&[0.3, -0.1], &[0.8, 1.7]);
        let gy = uniform(&mut rng(10), y.elem_count());
        let grads = loss(&y, &tensor(&gy, y.dims(), DType::F64))
            .backward()
            .unwrap();
        for (which, var, base) in [("gamma", &gv, &gamma.0), ("beta", &bv, &beta.0)] {
            let analytic = values(grads.get(var.as_tensor()).unwrap());
            let numeric = finite_diff(base, 1e-6, &gy, &|p| {
                let (g, b) = if which == "gamma" {
                    (p.to_vec(), beta.0.clone())
                } else {
                    (gamma.0.clone(), p.to_vec())
                };
                let bn = BatchNorm2d::new(
                    2,
                    Some((
                        Var::from_tensor(&tensor(&g, &[2], DType::F64)).unwrap(),
                        Var::from_tensor(&tensor(&b, &[2], DType::F64)).unwrap(),
                    )),
                    1e-5,
                    Some(0.1),
                );
                bn.set_running_stats(&[0.3, -0.1], &[0.8, 1.7]);
                values(&bn.forward(&xt, train).unwrap())
            });
            assert_close(
                &format!("bn train={train} d{which}"),
                &analytic,
                &numeric,
                1e-6,
            );
        }
    }
    fd_check("bn eval", &[x], &|t| {
        let bn = BatchNorm2d::new(2, None, 1e-5, Some(0.1));
        bn.set_running_stats(&[0.3, -0.1], &[0.8, 1.7]);
        bn.forward(&t[0], false).unwrap()
    });
}

#[test]
fn relu_and_global_pool_backward() {
    // Keep inputs away from the kink at 0.
    let (mut x, s) = input(11, &[2, 3, 4, 5]);
    x.iter_mut().for_each(|v| *v += 0.1 * v.signum());
    fd_check("relu", &[(x.clone(), s.clone())], &|t| relu(&t[0]).unwrap());
    fd_check("global_avg_pool", &[(x, s)], &|t| {
        global_avg_pool(&t[0]).unwrap()
    });
}

#[test]
fn weighted_sum_backward() {
    let shape = [3, 2, 4, 4];
    let ys: Vec<_> = (0..4).map(|i| input(20 + i, &shape)).collect();
    let shared = (vec![0.5, 0.0, -0.25, 1.5], vec![4]);
    let per_example = input(30, &[3, 4]);
    for (name, w) in [("shared", shared), ("per-example", per_example)] {
        let mut inputs = ys.clone();
        inputs.push(w);
        fd_check(&format!("weighted_sum {name}"), &inputs, &|t| {
            weighted_sum(&t[..4], &t[4]).unwrap()
        });
    }
}
