//! The in-place path ([`Optimizer::step_in_place`]) gives exactly the values of the `f64`
//! path on copies (what the trainer did before it existed), for every optimizer and both
//! element types, and checks its input as `step` does.
use crate::*;

/// Every optimizer of the crate, in settings that exercise each branch of its update.
fn optimizers() -> Vec<Box<dyn Optimizer>> {
    [
        (
            "sgd",
            serde_json::json!({"momentum": 0.0, "weight_decay": 0.1}),
        ),
        (
            "sgd",
            serde_json::json!({"momentum": 0.9, "weight_decay": 3e-4}),
        ),
        (
            "sgd",
            serde_json::json!({"momentum": 0.9, "nesterov": true}),
        ),
        (
            "adam",
            serde_json::json!({"weight_decay": 1e-3, "betas": [0.5, 0.999]}),
        ),
        ("adamw", serde_json::json!({})),
        (
            "rmsprop",
            serde_json::json!({"momentum": 0.5, "centered": true, "weight_decay": 0.01}),
        ),
        ("rmsprop", serde_json::json!({})),
    ]
    .into_iter()
    .map(|(n, p)| build_optimizer(n, &p).unwrap())
    .collect()
}

/// Deterministic values of both signs and several magnitudes.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let k = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 10_007;
            (k as f32 / 10_007.0 - 0.5) * 10f32.powi((i % 5) as i32 - 2)
        })
        .collect()
}

#[test]
fn f32_in_place_equals_the_f64_round_trip_bit_for_bit() {
    for (mut a, mut b) in optimizers().into_iter().zip(optimizers()) {
        assert!(a.updates_in_place(), "{}", a.name());
        let mut inplace = [values(37, 1), values(5, 2)];
        let mut copied = inplace.clone();
        for step in 0..4u32 {
            let grads = [values(37, 10 + step), values(5, 20 + step)];
            // Clipping on odd steps: the scale is applied in f64 as the copy path does.
            let scale = if step % 2 == 1 { 0.37 } else { 1.0 };
            let lr = 0.05 / (1.0 + step as f64);
            // The f64 path on copies, as the trainer did: to f64, clip, step, back to f32.
            let mut w: Vec<Vec<f64>> = copied
                .iter()
                .map(|v| v.iter().map(|&x| x as f64).collect())
                .collect();
            let g: Vec<Vec<f64>> = grads
                .iter()
                .map(|v| v.iter().map(|&x| x as f64 * scale).collect())
                .collect();
            let mut wr: Vec<&mut [f64]> = w.iter_mut().map(|v| v.as_mut_slice()).collect();
            let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
            b.step(&mut wr, &gr, lr).unwrap();
            for (c, w) in copied.iter_mut().zip(&w) {
                *c = w.iter().map(|&x| x as f32).collect();
            }
            for (i, (p, g)) in inplace.iter_mut().zip(&grads).enumerate() {
                let t = InPlace {
                    param: ParamsMut::F32(p),
                    grad: GradsRef::F32(g),
                    grad_scale: scale,
                };
                a.step_in_place(i, t, lr).unwrap();
            }
            for (x, y) in inplace.iter().zip(&copied) {
                let (x, y): (Vec<u32>, Vec<u32>) = (
                    x.iter().map(|v| v.to_bits()).collect(),
                    y.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(x, y, "{} step {step}", a.name());
            }
        }
        assert_eq!(a.save_state(), b.save_state(), "{}", a.name());
    }
}

#[test]
fn f64_in_place_equals_step_active_with_one_index() {
    for (mut a, mut b) in optimizers().into_iter().zip(optimizers()) {
        let p0: Vec<f64> = values(11, 3).iter().map(|&x| x as f64 * 1.1).collect();
        let g: Vec<f64> = values(11, 4).iter().map(|&x| x as f64).collect();
        let (mut x, mut y) = (vec![p0.clone(), p0.clone()], vec![p0.clone(), p0]);
        for _ in 0..3 {
            let t = InPlace {
                param: ParamsMut::F64(&mut x[1]),
                grad: GradsRef::F64(&g),
                grad_scale: 1.0,
            };
            a.step_in_place(1, t, 0.1).unwrap();
            let (y0, y1) = y.split_at_mut(1);
            b.step_active(
                &mut [&mut y0[0], &mut y1[0]],
                &[&g, &g],
                0.1,
                &[false, true],
            )
            .unwrap();
        }
        assert_eq!(x, y, "{}", a.name());
        assert_eq!(a.save_state(), b.save_state(), "{}", a.name());
    }
}

#[test]
fn hand_worked_scaled_sgd_step_in_f32() {
    // lr 0.1, no momentum or decay, p = 1.5, g = 2 scaled by 0.25: p - 0.1 * 0.5 = 1.45.
    let mut opt = build_optimizer(
        "sgd",
        &serde_json::json!({"momentum": 0.0, "weight_decay": 0.0}),
    )
    .unwrap();
    let mut p = [1.5f32, -1.0];
    let t = InPlace {
        param: ParamsMut::F32(&mut p),
        grad: GradsRef::F32(&[2.0, -4.0]),
        grad_scale: 0.25,
    };
    opt.step_in_place(0, t, 0.1).unwrap();
    assert_eq!(p, [1.45f32, -0.9]);
}

#[test]
fn in_place_checks_lengths_and_changes_nothing_on_error() {
    for mut opt in optimizers() {
        let mut p = [1.0f32, 2.0];
        let t = InPlace {
            param: ParamsMut::F32(&mut p),
            grad: GradsRef::F32(&[1.0]),
            grad_scale: 1.0,
        };
        let e = opt.step_in_place(0, t, 0.1).unwrap_err().to_string();
        assert!(
            e.contains("parameter 0") && e.contains("gradient has 1"),
            "{e}"
        );
        let t = InPlace {
            param: ParamsMut::F32(&mut p),
            grad: GradsRef::F64(&[1.0, 1.0]),
            grad_scale: 1.0,
        };
        opt.step_in_place(0, t, 0.1).unwrap();
        let before = (p, opt.save_state());
        if before.1["slots"][0].is_null() {
            continue; // plain SGD keeps no state to check the length against
        }
        let mut q = [0.0f32; 3];
        let t = InPlace {
            param: ParamsMut::F32(&mut q),
            grad: GradsRef::F32(&[1.0; 3]),
            grad_scale: 1.0,
        };
        let e = opt.step_in_place(0, t, 0.1).unwrap_err().to_string();
        assert!(e.contains("created for 2"), "{}: {e}", opt.name());
        assert_eq!((p, opt.save_state()), before);
        assert_eq!(q, [0.0; 3]);
    }
}

#[test]
fn the_default_refuses_in_place_updates() {
    struct Plain;
    impl Optimizer for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn base_lr(&self) -> f64 {
            0.1
        }
        fn step(&mut self, _: &mut [&mut [f64]], _: &[&[f64]], _: f64) -> nas_core::Result<()> {
            Ok(())
        }
        fn lookahead_direction(&self, _: usize, p: &[f64], _: &[f64]) -> Vec<f64> {
            vec![0.0; p.len()]
        }
        fn save_state(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn load_state(&mut self, _: &serde_json::Value) -> nas_core::Result<()> {
            Ok(())
        }
    }
    let mut p = [1.0f32];
    assert!(!Plain.updates_in_place());
    let t = InPlace {
        param: ParamsMut::F32(&mut p),
        grad: GradsRef::F32(&[1.0]),
        grad_scale: 1.0,
    };
    let e = Plain.step_in_place(0, t, 0.1).unwrap_err().to_string();
    assert!(e.contains("`plain` has no in-place update"), "{e}");
}
