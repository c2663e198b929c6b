//! `lookahead_direction` must predict the next real step: p_next = p - lr * d.
use super::assert_close;
use crate::*;

/// Runs two warm-up steps, asks for the direction, takes the real step and compares.
fn check_predicts_next_step(mut opt: Box<dyn Optimizer>) {
    let lr = 0.05;
    let mut a = vec![0.3, -1.2, 2.0];
    let mut b = vec![0.7];
    let grads: [[&[f64]; 2]; 2] = [[&[0.4, 0.1, -0.6], &[1.5]], [&[-0.2, 0.3, 0.5], &[-0.5]]];
    for g in grads {
        opt.step(&mut [&mut a[..], &mut b[..]], &g, lr).unwrap();
    }
    let (ga, gb) = ([0.25, -0.75, 0.05], [0.9]);
    let da = opt.lookahead_direction(0, &a, &ga);
    let db = opt.lookahead_direction(1, &b, &gb);
    let pred_a: Vec<f64> = a.iter().zip(&da).map(|(p, d)| p - lr * d).collect();
    let pred_b: Vec<f64> = b.iter().zip(&db).map(|(p, d)| p - lr * d).collect();
    opt.step(&mut [&mut a[..], &mut b[..]], &[&ga, &gb], lr)
        .unwrap();
    assert_close(&a, &pred_a, 1e-14);
    assert_close(&b, &pred_b, 1e-14);
    // Before any step (no state) the prediction holds too.
    let fresh = opt.lookahead_direction(7, &[1.0], &[0.5]);
    assert_eq!(fresh.len(), 1);
}

#[test]
fn every_optimizer_predicts_its_next_step() {
    let configs = [
        (
            "sgd",
            serde_json::json!({"momentum": 0.9, "weight_decay": 0.01}),
        ),
        (
            "sgd",
            serde_json::json!({"momentum": 0.9, "nesterov": true}),
        ),
        (
            "sgd",
            serde_json::json!({"momentum": 0.0, "weight_decay": 0.1}),
        ),
        ("adam", serde_json::json!({"weight_decay": 0.1})),
        ("adamw", serde_json::json!({"weight_decay": 0.1})),
        (
            "rmsprop",
            serde_json::json!({"momentum": 0.5, "centered": true, "weight_decay": 0.1}),
        ),
        ("rmsprop", serde_json::json!({})),
    ];
    for (name, params) in configs {
        check_predicts_next_step(build_optimizer(name, &params).unwrap());
    }
}

#[test]
fn sgd_direction_is_the_darts_virtual_step() {
    // DARTS `_compute_unrolled_model`: moment = momentum * buf (0 before the first step),
    // dtheta = grad + wd * theta; unrolled = theta - eta * (moment + dtheta).
    let mut opt = Sgd::new(SgdParams {
        lr: 0.025,
        momentum: 0.9,
        weight_decay: 3e-4,
        nesterov: false,
    })
    .unwrap();
    let (theta, g) = ([0.5, -0.25], [0.2, 0.4]);
    // no buffer yet: d = g + wd * theta
    let d0 = opt.lookahead_direction(0, &theta, &g);
    assert_close(&d0, &[0.2 + 3e-4 * 0.5, 0.4 - 3e-4 * 0.25], 1e-15);
    let mut p = theta;
    opt.step(&mut [&mut p[..]], &[&[1.0, -2.0]], 0.025).unwrap();
    // buf = [1 + 3e-4*0.5, -2 - 3e-4*0.25]
    let buf = [1.0 + 3e-4 * 0.5, -2.0 - 3e-4 * 0.25];
    assert_close(opt.momentum_buffer(0).unwrap(), &buf, 1e-15);
    let d = opt.lookahead_direction(0, &p, &g);
    let want: Vec<f64> = (0..2).map(|j| 0.9 * buf[j] + g[j] + 3e-4 * p[j]).collect();
    assert_close(&d, &want, 1e-15);
}
