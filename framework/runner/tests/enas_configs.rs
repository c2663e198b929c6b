//! ENAS (issue 18): every `enas-*-digits.yaml` config validates and runs end to end on the embedded digits
//! (1 epoch of 2 weight steps, 2 controller updates of 2 samples, 2 final samples), writing
//! an architecture of its space; the micro space's architecture retrains with `nas train`.
use std::path::{Path, PathBuf};

use nas_runner::{retrain, run_experiment, RetrainOptions, RunOptions};

const CONFIGS: [(&str, &str); 7] = [
    ("enas-micro-digits.yaml", "enas-micro"),
    ("enas-macro-digits.yaml", "enas-macro"),
    ("enas-darts-digits.yaml", "darts"),
    ("enas-nb201-digits.yaml", "nb201"),
    ("enas-spos-digits.yaml", "spos"),
    ("enas-proxyless-digits.yaml", "proxyless"),
    ("enas-fbnet-digits.yaml", "fbnet"),
];

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/experiments")
        .join(name)
}

fn quick(name: &str, extra: &[&str]) -> nas_config::Experiment {
    let mut sets: Vec<String> = [
        "budget.epochs=1",
        "budget.steps_per_epoch=2",
        "data.params={limit_train: 300}",
        "strategy.params.controller_steps=2",
        "strategy.params.aggregate=2",
        "strategy.params.final_samples=2",
        "strategy.params.lstm_size=8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    nas_config::load_experiment(&config(name), &sets).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_enas_config_runs_a_tiny_search() {
    let comps = nas_builtins::components().unwrap();
    for (name, space) in CONFIGS {
        // The shipped file as it is validates (and so does the Fashion-MNIST variant).
        nas_config::load_experiment(&config(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let exp = quick(name, &[]);
        let opts = RunOptions {
            out_dir: Some(dir.path().join("run")),
            ..Default::default()
        };
        let s = run_experiment(&exp, &comps, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.status, "finished", "{name}");
        let arch: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("run/architecture.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(arch["space"], space, "{name}");
        let f = s.architectures[0]["metrics"]["supernet_valid_acc"]
            .as_f64()
            .unwrap();
        assert!((0.0..=1.0).contains(&f), "{name}: {f}");
    }
}

#[test]
fn the_fashion_mnist_config_validates() {
    let e = nas_config::load_experiment(&config("enas-micro-fmnist.yaml"), &[]).unwrap();
    assert_eq!(e.strategy.name, "enas");
}

#[test]
fn the_found_micro_cell_and_macro_network_retrain_with_nas_train() {
    let comps = nas_builtins::components().unwrap();
    for name in ["enas-micro-digits.yaml", "enas-macro-digits.yaml"] {
        let dir = tempfile::tempdir().unwrap();
        let exp = quick(name, &["train.epochs=1", "train.limit_batches=2"]);
        let opts = RunOptions {
            out_dir: Some(dir.path().join("run")),
            ..Default::default()
        };
        run_experiment(&exp, &comps, &opts).unwrap();
        let arch = dir.path().join("run/architecture.json");
        let rep = retrain(
            &exp,
            &comps,
            arch.to_str().unwrap(),
            &RetrainOptions {
                out_dir: Some(dir.path().join("train")),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!((0.0..=1.0).contains(&rep.test_acc), "{name}");
    }
}
