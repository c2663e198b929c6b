//! Real plugins: the example crates built as shared libraries, loaded with `load_plugin`.
use custom_strategy_plugin::{LocalSearch, LocalSearchParams};
use nas_core::{
    ComponentInfo, ComponentKind, Drive, DriveKind, GradOrder, MixingWeights, NasError, Needs,
    Registry, SearchStrategy, Split,
};
use nas_plugin_host::{load_and_register, load_plugin, BoxedStrategyFactory};
use nas_plugin_sdk::{ABI_VERSION, PROTOCOL_VERSION};
use serde_json::json;

use crate::build::plugin_path;
use crate::mock::{Call, MockEnv};

fn fitness(c: &[usize]) -> f64 {
    // A rugged landscape with several local optima (values worked out by no rule the
    // search knows): enough to make restarts happen within 40 queries.
    ((c[0] * 7 + c[1] * 3 + c[2] * 5 + c[3] * 11) % 13) as f64 + 0.125 * c[1] as f64
}

/// Runs `steps` steps, one `end_epoch` and `outcome`; returns everything reported.
fn run(s: &mut dyn SearchStrategy, env: &mut MockEnv, steps: usize) -> serde_json::Value {
    let mut reports = Vec::new();
    for _ in 0..steps {
        reports.push(serde_json::to_value(s.step(env).unwrap()).unwrap());
    }
    let epoch = s.end_epoch(env).unwrap();
    let outcome = s.outcome(env).unwrap();
    json!({ "steps": reports, "epoch": epoch, "outcome": outcome })
}

#[test]
fn the_local_search_plugin_matches_the_same_code_linked_statically() {
    let plugin = load_plugin(plugin_path("custom-strategy-plugin")).unwrap();
    let shape = [3, 4, 2, 3];
    let params = json!({ "max_queries": 40 });

    let mut env_p = MockEnv::with_estimator(&shape, fitness);
    let mut p = plugin.create(&params).unwrap();
    assert_eq!(p.name(), "local_search");
    assert_eq!(p.needs(), Needs::Estimator);
    p.init(&env_p.spec.clone(), 7).unwrap();
    let got = run(p.as_mut(), &mut env_p, 25);

    let mut env_s = MockEnv::with_estimator(&shape, fitness);
    let mut s = LocalSearch::factory(&params).unwrap();
    s.init(&env_s.spec.clone(), 7).unwrap();
    let want = run(s.as_mut(), &mut env_s, 25);

    assert_eq!(got, want);
    let (qp, qs) = (
        &env_p.estimator.as_ref().unwrap().queried,
        &env_s.estimator.as_ref().unwrap().queried,
    );
    assert_eq!(qp.len(), 25);
    assert_eq!(qp, qs);
    assert!(got["epoch"]["metrics"]["restarts"].as_f64().unwrap() >= 1.0);
    assert_eq!(p.mixing_weights(), None);

    // State saved by the plugin resumes the statically linked search identically.
    let state = p.save_state().unwrap();
    assert_eq!(state, s.save_state().unwrap());
    let mut resumed = LocalSearch::new(LocalSearchParams {
        max_queries: 40,
        panic_at_step: None,
    });
    resumed.init(&env_s.spec.clone(), 7).unwrap();
    resumed.load_state(&state).unwrap();
    let a = run(&mut resumed, &mut env_s, 5);
    let b = run(p.as_mut(), &mut env_p, 5);
    assert_eq!(a, b);
}

#[test]
fn mixing_weights_and_gradients_cross_intact() {
    let plugin = load_plugin(plugin_path("nas-plugin-gradient-probe")).unwrap();
    assert_eq!(plugin.info().defaults, json!({ "lr": 0.5 }));
    let shape = [3, 2];
    let c = vec![0.5f32, 1.0, 1.5, 0.25, 0.75];
    let t = vec![0.1f32, 0.9, -0.3, 0.6, 0.2];
    let mut env = MockEnv::with_trainer(&shape, c.clone(), t.clone());
    let mut s = plugin.create(&serde_json::Value::Null).unwrap();
    assert_eq!(s.needs(), Needs::Trainer);
    s.init(&env.spec.clone(), 0).unwrap();

    // Expected weights, computed here: plain gradient steps on the quadratic.
    let lr = 0.5f32;
    let mut w: Vec<f32> = vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.5, 0.5];
    let w0 = w.clone();
    let mut expected_calls = Vec::new();
    for step in 0..3 {
        let r = s.step(&mut env).unwrap();
        let (g, loss) = env.trainer.as_ref().unwrap().grad_at(&w);
        let as_mw = |v: &[f32]| MixingWeights::from_flat(v, &shape).unwrap();
        expected_calls.push(Call::Grad(
            Drive::mixed(as_mw(&w)).with_condition(0.25),
            GradOrder::Second { xi: Some(0.01) },
        ));
        for (wk, gk) in w.iter_mut().zip(&g) {
            *wk -= lr * gk;
        }
        expected_calls.push(Call::Train(Drive {
            kind: DriveKind::SelectedOnly { weights: as_mw(&w) },
            condition: None,
        }));
        let per_sample: Vec<MixingWeights> = (0..4)
            .map(|s| as_mw(&w.iter().map(|v| v + s as f32).collect::<Vec<_>>()))
            .collect();
        let sum: f64 = per_sample
            .iter()
            .flat_map(|m| m.flatten())
            .map(|v| v as f64)
            .sum();
        expected_calls.push(Call::Eval(
            Drive {
                kind: DriveKind::MixedPerSample {
                    weights: per_sample,
                },
                condition: None,
            },
            Split::Valid,
            Some(2),
        ));
        expected_calls.push(Call::Eval(
            Drive::paths(vec![
                nas_core::Architecture::new("toy", vec![0, 0]),
                nas_core::Architecture::new("toy", vec![2, 1]),
            ]),
            Split::Test,
            None,
        ));
        let gates = nas_plugin_gradient_probe_gates();
        let selected: Vec<MixingWeights> = (0..4)
            .map(|s| {
                let mut flat = gates.clone();
                flat[s % 5] = (s + 1) as f32;
                as_mw(&flat)
            })
            .collect();
        expected_calls.push(Call::Eval(
            Drive {
                kind: DriveKind::SelectedPerSample { weights: selected },
                condition: None,
            },
            Split::Valid,
            Some(1),
        ));
        expected_calls.push(Call::Grad(
            Drive::gated(as_mw(&gates), vec![vec![0, 2], vec![1]]),
            GradOrder::First,
        ));
        // Scalars come back bit for bit.
        let m = &r.metrics;
        // The gated drive's gradient, computed here: c (g - t) on the active options.
        let (qg, _) = env.trainer.as_ref().unwrap().grad_at(&gates);
        for (i, want) in qg.iter().enumerate() {
            let want = if [0, 2, 4].contains(&i) { *want } else { 0.0 };
            let got = m[&format!("gate_grad_{i}")];
            assert_eq!(got.to_bits(), (want as f64).to_bits(), "gate {i}");
        }
        assert_eq!(m["arch_loss"].to_bits(), loss.to_bits(), "step {step}");
        assert_eq!(m["arch_accuracy"], 0.75);
        assert_eq!(m["condition_grad"], 0.5);
        assert_eq!(m["train_loss"], 1.25);
        assert_eq!(m["weight_lr"], 0.025);
        assert_eq!(m["batch_size"], 4.0);
        assert_eq!(m["steps_per_epoch"], 3.0);
        assert_eq!(m["eval_loss"].to_bits(), sum.to_bits());
        assert_eq!(m["eval_samples"], 4.0);
        assert_eq!(m["paths_loss"], 3.0);
        assert_eq!(m["selected_samples"], 4.0);
    }
    // Every drive the trainer saw is exactly what the strategy meant to send...
    assert_eq!(env.trainer_calls(), expected_calls.as_slice());
    // ...and the gates bit for bit (`==` would take -0.0 for 0.0).
    let gated: Vec<&Drive> = env
        .trainer_calls()
        .iter()
        .filter_map(|c| match c {
            Call::Grad(d, _) if matches!(d.kind, DriveKind::Gated { .. }) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(gated.len(), 3);
    for d in gated {
        let DriveKind::Gated { weights, active } = &d.kind else {
            unreachable!()
        };
        let bits: Vec<u32> = weights.flatten().iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = nas_plugin_gradient_probe_gates()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, want);
        assert_eq!(active, &vec![vec![0, 2], vec![1]]);
    }
    // ...and the per-example selected weights too.
    let selected: Vec<&Drive> = env
        .trainer_calls()
        .iter()
        .filter_map(|c| match c {
            Call::Eval(d, _, _) if matches!(d.kind, DriveKind::SelectedPerSample { .. }) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(selected.len(), 3);
    for d in selected {
        let DriveKind::SelectedPerSample { weights } = &d.kind else {
            unreachable!()
        };
        for (s, set) in weights.iter().enumerate() {
            let mut want = nas_plugin_gradient_probe_gates();
            want[s % 5] = (s + 1) as f32;
            let bits: Vec<u32> = set.flatten().iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(bits, want, "example {s}");
        }
    }
    // The weights the plugin reports are bit for bit those computed here...
    let got = s.mixing_weights().unwrap();
    assert_eq!(got.flatten(), w);
    // ...and agree with the closed form w_k = t + (1 - lr c)^k (w_0 - t).
    for k in 0..5 {
        let closed = t[k] + (1.0 - lr * c[k]).powi(3) * (w0[k] - t[k]);
        assert!((got.flatten()[k] - closed).abs() < 1e-6, "{k}");
    }

    // end_epoch: begin_epoch, derive (largest weight per decision), cost, describe.
    let derived = env
        .spec
        .clone()
        .decisions
        .iter()
        .enumerate()
        .map(|(d, _)| {
            let row = &got.0[d];
            (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
        })
        .collect::<Vec<_>>();
    let e = s.end_epoch(&mut env).unwrap();
    assert_eq!(env.trainer_calls().last(), Some(&Call::BeginEpoch(1)));
    assert_eq!(e.current.as_ref().unwrap().choices, derived);
    assert_eq!(e.metrics["params"], derived.iter().sum::<usize>() as f64);
    let o = s.outcome(&mut env).unwrap();
    assert_eq!(
        o.architectures[0].label,
        format!("{}-{}", derived[0], derived[1])
    );

    // State round trip through the plugin.
    let state = s.save_state().unwrap();
    let mut s2 = plugin.create(&json!({ "lr": 0.5 })).unwrap();
    s2.init(&env.spec.clone(), 0).unwrap();
    s2.load_state(&state).unwrap();
    assert_eq!(s2.mixing_weights(), Some(got));
}

/// The gate values the gradient-probe fixture sends (its `GATES`; repeated here, since
/// the fixture is loaded as a shared library, not linked).
fn nas_plugin_gradient_probe_gates() -> Vec<f32> {
    vec![-0.0, 1.0, 1.0e-45, f32::MIN_POSITIVE, 0.0]
}

#[test]
fn a_panic_in_a_loaded_plugin_fails_the_run_not_the_process() {
    let plugin = load_plugin(plugin_path("custom-strategy-plugin")).unwrap();
    let mut env = MockEnv::with_estimator(&[3, 3], |c| c[0] as f64);
    let mut s = plugin.create(&json!({ "panic_at_step": 2 })).unwrap();
    s.init(&env.spec.clone(), 3).unwrap();
    s.step(&mut env).unwrap();
    s.step(&mut env).unwrap();
    let e = s.step(&mut env).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, NasError::Plugin(_)), "{m}");
    assert!(
        m.contains("`local_search`") && m.contains("custom_strategy_plugin"),
        "{m}"
    );
    assert!(m.contains("panic_at_step reached at step 2"), "{m}");
    assert!(s
        .step(&mut env)
        .unwrap_err()
        .to_string()
        .contains("interrupted"));
    // A fresh instance of the same plugin still works.
    let mut s = plugin.create(&serde_json::Value::Null).unwrap();
    s.init(&env.spec.clone(), 3).unwrap();
    assert!(s.step(&mut env).is_ok());
}

#[test]
fn plugin_info_and_bad_params() {
    let path = plugin_path("custom-strategy-plugin");
    let plugin = load_plugin(&path).unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "local_search");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.abi_version, ABI_VERSION);
    assert!(info.summary.contains("Local search"));
    assert_eq!(
        info.defaults,
        json!({ "max_queries": 150, "panic_at_step": null })
    );
    assert!(info.params.iter().any(|p| p.name == "max_queries"));
    assert!(info.rustc_version.starts_with("rustc "));
    let ci = plugin.component_info();
    assert_eq!(ci.kind, ComponentKind::Strategy);
    assert_eq!(
        ci.origin,
        std::fs::canonicalize(&path).unwrap().display().to_string()
    );

    let e = plugin
        .create(&json!({ "max_queries": "ten" }))
        .err()
        .unwrap();
    assert!(
        matches!(&e, NasError::InvalidParams { path, .. } if path == "max_queries"),
        "{e}"
    );
    let e = plugin.create(&json!({ "max_queries": 0 })).err().unwrap();
    assert!(e.to_string().contains("at least 1"), "{e}");
}

#[test]
fn a_plugin_built_for_another_abi_is_refused_with_both_sides_shown() {
    let path = plugin_path("wrong-abi-plugin");
    let e = load_plugin(&path).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, NasError::Plugin(_)), "{m}");
    assert!(m.contains("does not fit this host"), "{m}");
    let line = m.lines().find(|l| l.contains("abi_version")).unwrap();
    assert!(
        line.contains(&ABI_VERSION.to_string())
            && line.contains(&(ABI_VERSION + 1000).to_string())
            && line.contains("differs"),
        "{m}"
    );
    assert!(m.contains("wrong_abi") && m.contains("rustc"), "{m}");
}

#[test]
fn a_plugin_built_for_the_old_protocol_is_refused_naming_both_versions() {
    let path = plugin_path("old-protocol-plugin");
    let e = load_plugin(&path).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, NasError::Plugin(_)), "{m}");
    assert!(m.contains("does not fit this host"), "{m}");
    // The per-example selected drive is protocol 3; the fixture declares protocol 2.
    assert_eq!(PROTOCOL_VERSION, 3);
    let line = m.lines().find(|l| l.contains("protocol_version")).unwrap();
    assert!(
        line.contains(" 3 ") && line.contains(" 2") && line.contains("differs"),
        "{m}"
    );
    assert!(
        m.contains("the plugin speaks call protocol 2, this host speaks protocol 3"),
        "{m}"
    );
    // Only the protocol differs: same ABI and table size.
    let abi = m.lines().find(|l| l.contains("abi_version")).unwrap();
    assert!(!abi.contains("differs"), "{m}");
    assert!(m.contains("old_protocol"), "{m}");
}

#[test]
fn files_that_are_not_plugins_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libnothing.so");
    let m = load_plugin(&missing).unwrap_err().to_string();
    assert!(
        m.contains("does not exist") && m.contains("libnothing.so"),
        "{m}"
    );

    let m = load_plugin(dir.path()).unwrap_err().to_string();
    assert!(m.contains("is not a file"), "{m}");

    let text = dir.path().join("libfake.so");
    std::fs::write(&text, "plugins: [this is YAML, not a library]\n").unwrap();
    let m = load_plugin(&text).unwrap_err().to_string();
    assert!(m.contains("is not a shared library"), "{m}");
}

/// A real shared library without the entry point: the C library this test links.
#[cfg(target_os = "linux")]
#[test]
fn a_shared_library_without_the_entry_point_is_not_a_nas_plugin() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("libc is mapped");
    let m = load_plugin(libc).unwrap_err().to_string();
    assert!(
        m.contains("not a nas plugin") && m.contains("nas_plugin_entry"),
        "{m}"
    );
}

#[test]
fn a_plugin_whose_name_is_taken_is_refused() {
    let path = plugin_path("custom-strategy-plugin");
    let mut reg: Registry<BoxedStrategyFactory> = Registry::new(ComponentKind::Strategy);
    reg.register(
        ComponentInfo {
            kind: ComponentKind::Strategy,
            name: "local_search".into(),
            summary: String::new(),
            defaults: json!({}),
            params: vec![],
            origin: "built-in".into(),
        },
        Box::new(LocalSearch::factory),
    )
    .unwrap();
    let m = load_and_register(&mut reg, &path).unwrap_err().to_string();
    assert!(
        m.contains("local_search") && m.contains("already registered") && m.contains("built-in"),
        "{m}"
    );

    let mut reg: Registry<BoxedStrategyFactory> = Registry::new(ComponentKind::Strategy);
    let p = load_and_register(&mut reg, &path).unwrap();
    assert_eq!(reg.info("local_search").unwrap().origin, p.origin());
    let mut env = MockEnv::with_estimator(&[2, 2], |c| c[1] as f64);
    let mut s = reg.get("local_search").unwrap()(&json!({ "max_queries": 2 })).unwrap();
    s.init(&env.spec.clone(), 0).unwrap();
    s.step(&mut env).unwrap();
    assert!(s.step(&mut env).unwrap().finished);
}
