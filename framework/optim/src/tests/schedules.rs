use crate::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn cosine_darts_search_schedule() {
    // DARTS: 0.025 -> 0.001 over 50 epochs. eta_min + (base - eta_min)(1 + cos(pi e/T))/2:
    // e = 0: 0.025; e = 25: 0.001 + 0.024 * 0.5 = 0.013; e = 50: 0.001;
    // e = 10: cos(pi/5) = (1 + sqrt 5)/4 = 0.80901699, 0.001 + 0.024 * 0.90450850 = 0.02270820
    let s = build_schedule("cosine", &serde_json::json!({"eta_min": 0.001})).unwrap();
    assert!(close(s.lr(0.025, 0, 50), 0.025));
    assert!(close(s.lr(0.025, 25, 50), 0.013));
    assert!(close(s.lr(0.025, 50, 50), 0.001));
    let cos36 = (1.0 + 5f64.sqrt()) / 4.0;
    assert!(close(
        s.lr(0.025, 10, 50),
        0.001 + 0.024 * (1.0 + cos36) / 2.0
    ));
    assert!(close(s.lr(0.025, 10, 50), 0.022708203932499));
    // Past the end it stays at eta_min; zero epochs gives the base rate.
    assert!(close(s.lr(0.025, 80, 50), 0.001));
    assert!(close(s.lr(0.025, 0, 0), 0.025));
}

#[test]
fn step_and_constant() {
    // StepLR(step 30, gamma 0.1), base 0.1: epochs 0..29 -> 0.1, 30..59 -> 0.01, 60.. -> 0.001
    let s = build_schedule("step", &serde_json::Value::Null).unwrap();
    assert!(close(s.lr(0.1, 29, 100), 0.1));
    assert!(close(s.lr(0.1, 30, 100), 0.01));
    assert!(close(s.lr(0.1, 65, 100), 0.001));
    let s = build_schedule("step", &serde_json::json!({"step_size": 2, "gamma": 0.5})).unwrap();
    assert!(close(s.lr(1.0, 5, 10), 0.25));
    let c = build_schedule("constant", &serde_json::json!({})).unwrap();
    assert_eq!(c.lr(0.3, 7, 10), 0.3);
}

#[test]
fn schedule_params_are_checked() {
    let e = build_schedule("step", &serde_json::json!({"step_size": 0}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("step_size"), "{e}");
    let e = build_schedule("cosine", &serde_json::json!({"eta_min": -1.0}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("eta_min"), "{e}");
    let e = build_schedule("constant", &serde_json::json!({"gamma": 1.0}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gamma"), "{e}");
    assert!(matches!(
        build_schedule("linear", &serde_json::Value::Null),
        Err(nas_core::NasError::UnknownComponent { .. })
    ));
    let names: Vec<String> = schedule_infos().into_iter().map(|i| i.name).collect();
    assert_eq!(names, SCHEDULE_NAMES);
}
