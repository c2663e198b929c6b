use crate::*;
use nas_core::NasError;

fn err(name: &str, params: serde_json::Value) -> NasError {
    build_optimizer(name, &params).err().unwrap()
}

fn path_of(e: &NasError) -> &str {
    match e {
        NasError::InvalidParams { path, .. } => path,
        other => panic!("expected InvalidParams, got {other}"),
    }
}

#[test]
fn bad_params_name_the_key() {
    let cases = [
        ("sgd", serde_json::json!({"lr": -0.1}), "lr"),
        ("sgd", serde_json::json!({"momentum": 1.0}), "momentum"),
        ("sgd", serde_json::json!({"momentum": -0.5}), "momentum"),
        (
            "sgd",
            serde_json::json!({"weight_decay": -1e-4}),
            "weight_decay",
        ),
        (
            "sgd",
            serde_json::json!({"momentum": 0.0, "nesterov": true}),
            "nesterov",
        ),
        ("sgd", serde_json::json!({"lr": "fast"}), "lr"),
        ("adam", serde_json::json!({"betas": [0.9, 1.0]}), "betas[1]"),
        ("adam", serde_json::json!({"eps": 0.0}), "eps"),
        ("adamw", serde_json::json!({"lr": -3e-4}), "lr"),
        ("rmsprop", serde_json::json!({"alpha": 1.5}), "alpha"),
        ("rmsprop", serde_json::json!({"momentum": 1.0}), "momentum"),
    ];
    for (name, params, key) in cases {
        let e = err(name, params);
        assert_eq!(path_of(&e), key, "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    // An unknown key is named in the message.
    let e = err("sgd", serde_json::json!({"mometum": 0.9}));
    assert!(e.to_string().contains("mometum"), "{e}");
}

#[test]
fn unknown_name_and_infos() {
    let e = err("adagrad", serde_json::Value::Null);
    assert!(matches!(e, NasError::UnknownComponent { .. }));
    assert!(e.to_string().contains("sgd"), "{e}");
    let infos = optimizer_infos();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, OPTIMIZER_NAMES);
    for info in &infos {
        // Every documented key has a default and vice versa, and the defaults build.
        let keys: Vec<&String> = info.defaults.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), info.params.len(), "{}", info.name);
        for doc in &info.params {
            assert!(info.defaults.get(&doc.name).is_some(), "{}", doc.name);
        }
        let opt = build_optimizer(&info.name, &info.defaults).unwrap();
        assert_eq!(opt.name(), info.name);
        assert_eq!(Some(opt.base_lr()), info.defaults["lr"].as_f64());
    }
}
