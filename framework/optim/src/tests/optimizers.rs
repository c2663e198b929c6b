use super::{assert_close, trajectory};
use crate::*;

fn sgd(momentum: f64, weight_decay: f64, nesterov: bool) -> Sgd {
    Sgd::new(SgdParams {
        lr: 0.1,
        momentum,
        weight_decay,
        nesterov,
    })
    .unwrap()
}

#[test]
fn sgd_plain_and_weight_decay() {
    // momentum 0, wd 0.5, lr 0.1, p0 = 2, g = 1 twice:
    // d1 = 1 + 0.5*2 = 2,   p1 = 2 - 0.1*2 = 1.8
    // d2 = 1 + 0.5*1.8 = 1.9, p2 = 1.8 - 0.19 = 1.61
    let p = trajectory(&mut sgd(0.0, 0.5, false), 2.0, &[1.0, 1.0], 0.1);
    assert_close(&p, &[1.8, 1.61], 1e-12);
}

#[test]
fn sgd_momentum_buffer_starts_as_first_gradient() {
    // momentum 0.9, lr 0.1, p0 = 1, grads 1, 2, 0.5 (PyTorch: buf = g on the first step):
    // buf1 = 1,                 p1 = 1 - 0.1*1 = 0.9
    // buf2 = 0.9*1 + 2 = 2.9,   p2 = 0.9 - 0.29 = 0.61
    // buf3 = 0.9*2.9 + 0.5 = 3.11, p3 = 0.61 - 0.311 = 0.299
    let mut opt = sgd(0.9, 0.0, false);
    let p = trajectory(&mut opt, 1.0, &[1.0, 2.0, 0.5], 0.1);
    assert_close(&p, &[0.9, 0.61, 0.299], 1e-12);
    assert_close(opt.momentum_buffer(0).unwrap(), &[3.11], 1e-12);
}

#[test]
fn sgd_nesterov() {
    // Same run with Nesterov: direction = g + 0.9*buf
    // buf1 = 1,    dir1 = 1 + 0.9 = 1.9,         p1 = 1 - 0.19 = 0.81
    // buf2 = 2.9,  dir2 = 2 + 2.61 = 4.61,       p2 = 0.81 - 0.461 = 0.349
    // buf3 = 3.11, dir3 = 0.5 + 2.799 = 3.299,   p3 = 0.349 - 0.3299 = 0.0191
    let p = trajectory(&mut sgd(0.9, 0.0, true), 1.0, &[1.0, 2.0, 0.5], 0.1);
    assert_close(&p, &[0.81, 0.349, 0.0191], 1e-12);
}

#[test]
fn sgd_momentum_with_weight_decay() {
    // momentum 0.9, wd 0.5, lr 0.1, p0 = 2, g = 1 twice:
    // d1 = 1 + 1 = 2,       buf1 = 2,                 p1 = 2 - 0.2 = 1.8
    // d2 = 1 + 0.9 = 1.9,   buf2 = 0.9*2 + 1.9 = 3.7, p2 = 1.8 - 0.37 = 1.43
    let p = trajectory(&mut sgd(0.9, 0.5, false), 2.0, &[1.0, 1.0], 0.1);
    assert_close(&p, &[1.8, 1.43], 1e-12);
}

#[test]
fn sgd_updates_several_tensors_independently() {
    // Two tensors, momentum 0.9, lr 0.1, each sees its own buffer.
    let mut opt = sgd(0.9, 0.0, false);
    let (mut a, mut b) = (vec![1.0, 1.0], vec![0.0]);
    for _ in 0..2 {
        opt.step(&mut [&mut a[..], &mut b[..]], &[&[1.0, -1.0], &[2.0]], 0.1)
            .unwrap();
    }
    // a[0]: buf 1 then 1.9 -> 1 - 0.1 - 0.19 = 0.71; a[1] mirrored; b: buf 2 then 3.8 -> -0.58
    assert_close(&a, &[0.71, 1.29], 1e-12);
    assert_close(&b, &[-0.58], 1e-12);
}

#[test]
fn adam_bias_corrected_steps() {
    // lr 0.1, betas (0.9, 0.999), eps 1e-8, p0 = 1, grads 0.5, -1, 0.25.
    // t=1: m = 0.1*0.5 = 0.05, v = 0.001*0.25 = 2.5e-4,
    //      m_hat = 0.05/0.1 = 0.5, sqrt(v_hat) = sqrt(2.5e-4/0.001) = 0.5,
    //      p1 = 1 - 0.1*0.5/(0.5 + 1e-8) = 0.900000002
    // t=2: m = 0.045 - 0.1 = -0.055, v = 0.999*2.5e-4 + 0.001 = 0.00124975,
    //      m_hat = -0.055/0.19 = -0.2894737, v_hat = 0.00124975/0.001999 = 0.6251876,
    //      p2 = p1 + 0.1*0.2894737/0.7906881 = 0.9366104
    // t=3: (same recurrences) p3 = 0.9502794
    let mut opt = Adam::new(AdamParams {
        lr: 0.1,
        ..AdamParams::default()
    })
    .unwrap();
    let p = trajectory(&mut opt, 1.0, &[0.5, -1.0, 0.25], 0.1);
    assert_close(
        &p,
        &[0.900000002, 0.9366103542405654, 0.9502794203389762],
        1e-12,
    );
}

#[test]
fn adam_coupled_weight_decay_enters_the_moments() {
    // lr 0.1, betas (0.5, 0.999), wd 0.5, p0 = 2, grads 0.1, -0.3, 0.2.
    // t=1: g = 0.1 + 0.5*2 = 1.1, m_hat = 1.1, sqrt(v_hat) = 1.1, p1 = 2 - 0.1*1.1/(1.1+1e-8)
    //      = 1.9000000009
    // t=2: g = -0.3 + 0.5*1.9000000009 = 0.65, m = 0.275 + 0.325 = 0.6 -> m_hat = 0.6/0.75 = 0.8,
    //      v = 0.999*0.00121 + 0.001*0.4225 = 0.00163129 -> v_hat = 0.8160530, sqrt = 0.9033565,
    //      p2 = 1.9 - 0.1*0.8/0.9033565 = 1.8114414
    let mut opt = Adam::new(AdamParams {
        lr: 0.1,
        betas: [0.5, 0.999],
        eps: 1e-8,
        weight_decay: 0.5,
    })
    .unwrap();
    let p = trajectory(&mut opt, 2.0, &[0.1, -0.3, 0.2], 0.1);
    assert_close(
        &p,
        &[1.900000000909091, 1.8114413906941809, 1.7115294345031673],
        1e-12,
    );
}

#[test]
fn adam_darts_alpha_settings() {
    // DARTS alphas: lr 3e-4, betas (0.5, 0.999), wd 1e-3, p0 = 2, grads 0.1, -0.3, 0.2.
    // t=1: g = 0.1 + 0.002 = 0.102, the bias-corrected step is lr * 0.102/(0.102 + 1e-8):
    //      p1 = 2 - 3e-4 * 0.99999990196 = 1.99970000003
    let mut opt = build_optimizer(
        "adam",
        &serde_json::json!({"lr": 3e-4, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
    )
    .unwrap();
    let p = trajectory(opt.as_mut(), 2.0, &[0.1, -0.3, 0.2], 3e-4);
    assert_close(
        &p,
        &[1.9997000000294118, 1.9999217598639416, 1.9998594750436427],
        1e-13,
    );
}

#[test]
fn adamw_decays_the_weights_not_the_gradient() {
    // lr 0.1, wd 0.1, p0 = 1, grads 0.5, -1, 0.25 (the plain Adam run above):
    // t=1: p <- 1*(1 - 0.01) = 0.99, then the Adam update 0.1*0.5/(0.5+1e-8): p1 = 0.890000002
    // t=2: p <- 0.890000002*0.99 = 0.88110000198, Adam update +0.0366103522 -> p2 = 0.9177103542
    let mut opt = AdamW::new(AdamWParams {
        lr: 0.1,
        weight_decay: 0.1,
        ..AdamWParams::default()
    })
    .unwrap();
    let p = trajectory(&mut opt, 1.0, &[0.5, -1.0, 0.25], 0.1);
    assert_close(
        &p,
        &[0.890000002, 0.9177103542205653, 0.9222023167767704],
        1e-12,
    );
}

#[test]
fn rmsprop_pytorch_defaults() {
    // lr 0.01, alpha 0.99, eps 1e-8, p0 = 1, grads 0.5, -1, 0.25.
    // s1: sq = 0.01*0.25 = 0.0025, avg = 0.05 + 1e-8, p1 = 1 - 0.01*0.5/0.05000001 = 0.90000002
    // s2: sq = 0.99*0.0025 + 0.01 = 0.012475, sqrt = 0.1116915, p2 = p1 + 0.01/0.1116915 = 0.9895323
    let mut opt = RmsProp::new(RmsPropParams::default()).unwrap();
    let p = trajectory(&mut opt, 1.0, &[0.5, -1.0, 0.25], 0.01);
    assert_close(
        &p,
        &[0.900000019999996, 0.9895323081911337, 0.9675849574904029],
        1e-12,
    );
}

#[test]
fn rmsprop_centered_with_momentum_and_weight_decay() {
    // lr 0.01, alpha 0.9, wd 0.1, momentum 0.5, centered, p0 = 1, grads 0.5, -1, 0.25.
    // s1: g = 0.5 + 0.1 = 0.6, sq = 0.1*0.36 = 0.036, ga = 0.06, sqrt(0.036 - 0.0036) = 0.18,
    //     buf = 0.6/0.18 = 3.333333, p1 = 1 - 0.0333333 = 0.96666667
    let mut opt = RmsProp::new(RmsPropParams {
        lr: 0.01,
        alpha: 0.9,
        eps: 1e-8,
        weight_decay: 0.1,
        momentum: 0.5,
        centered: true,
    })
    .unwrap();
    let p = trajectory(&mut opt, 1.0, &[0.5, -1.0, 0.25], 0.01);
    assert_close(
        &p,
        &[0.9666666685185185, 0.9769105591555269, 0.9717656120451559],
        1e-12,
    );
}

#[test]
fn shape_errors_change_nothing() {
    let mut opt = sgd(0.9, 0.0, false);
    let mut a = vec![1.0, 2.0];
    opt.step(&mut [&mut a[..]], &[&[1.0, 1.0]], 0.1).unwrap();
    let before = (a.clone(), opt.save_state());
    // gradient of the wrong length
    assert!(opt.step(&mut [&mut a[..]], &[&[1.0]], 0.1).is_err());
    // count mismatch
    assert!(opt.step(&mut [&mut a[..]], &[], 0.1).is_err());
    // parameter 0 changed its length since its state was created
    let mut b = vec![1.0, 2.0, 3.0];
    let e = opt
        .step(&mut [&mut b[..]], &[&[1.0, 1.0, 1.0]], 0.1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("parameter 0") && e.contains("created for 2"),
        "{e}"
    );
    assert_eq!((a, opt.save_state()), before);
    assert_eq!(b, vec![1.0, 2.0, 3.0]);
}
