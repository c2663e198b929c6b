//! Save/load: a restored optimizer continues bit for bit; bad states are errors.
use crate::*;

fn run(opt: &mut dyn Optimizer, p: &mut [f64], steps: &[[f64; 2]]) {
    for g in steps {
        opt.step(&mut [p], &[&g[..]], 0.03).unwrap();
    }
}

#[test]
fn save_load_round_trip_continues_identically() {
    let configs = [
        ("sgd", serde_json::json!({"nesterov": true})),
        ("adam", serde_json::json!({"weight_decay": 0.01})),
        ("adamw", serde_json::json!({})),
        (
            "rmsprop",
            serde_json::json!({"momentum": 0.3, "centered": true}),
        ),
    ];
    let first = [[0.1, -0.7], [0.3, 0.2]];
    let second = [[-0.4, 0.9], [0.05, 0.6], [1.0 / 3.0, -0.1]];
    for (name, params) in configs {
        let mut a = build_optimizer(name, &params).unwrap();
        let mut pa = [1.0 / 7.0, 2.0];
        run(a.as_mut(), &mut pa, &first);
        // Through text, as a checkpoint file would hold it.
        let text = serde_json::to_string(&a.save_state()).unwrap();
        let mut b = build_optimizer(name, &params).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut pb = pa;
        run(a.as_mut(), &mut pa, &second);
        run(b.as_mut(), &mut pb, &second);
        assert_eq!(pa.map(f64::to_bits), pb.map(f64::to_bits), "{name}");
        // A fresh optimizer (no state) would have gone elsewhere: the state mattered.
        let mut c = build_optimizer(name, &params).unwrap();
        let mut pc = [1.0 / 7.0, 2.0];
        run(c.as_mut(), &mut pc, &first);
        let mut fresh = build_optimizer(name, &params).unwrap();
        run(fresh.as_mut(), &mut pc, &second);
        assert_ne!(pc, pa, "{name}");
    }
}

#[test]
fn bad_states_are_errors_that_name_the_key() {
    let mut sgd = build_optimizer("sgd", &serde_json::Value::Null).unwrap();
    let mut adam = build_optimizer("adam", &serde_json::Value::Null).unwrap();
    let mut p = [1.0, 2.0];
    adam.step(&mut [&mut p[..]], &[&[0.1, 0.2]], 0.1).unwrap();
    let e = sgd.load_state(&adam.save_state()).unwrap_err().to_string();
    assert!(e.contains("optimizer") && e.contains("adam"), "{e}");

    let mut state = adam.save_state();
    state["slots"][0]["exp_avg_sq"] = serde_json::json!([0.5]);
    let mut adam2 = build_optimizer("adam", &serde_json::Value::Null).unwrap();
    let e = adam2.load_state(&state).unwrap_err().to_string();
    assert!(e.contains("slots[0].exp_avg_sq"), "{e}");

    state["slots"][0]["exp_avg"] = serde_json::json!("x");
    let e = adam2.load_state(&state).unwrap_err().to_string();
    assert!(e.contains("slots[0].exp_avg"), "{e}");

    let mut rms = build_optimizer("rmsprop", &serde_json::json!({"momentum": 0.5})).unwrap();
    let plain = build_optimizer("rmsprop", &serde_json::Value::Null).unwrap();
    let mut plain = plain;
    plain.step(&mut [&mut p[..]], &[&[0.1, 0.2]], 0.1).unwrap();
    let e = rms.load_state(&plain.save_state()).unwrap_err().to_string();
    assert!(e.contains("slots[0].momentum_buffer"), "{e}");
}
