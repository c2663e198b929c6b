//! Every single-path experiment config runs end to end on the embedded digits (budgets
//! cut to a few steps, searches to a few queries), writes a retrainable architecture, and
//! the weight optimizer switches with one key.
use std::path::{Path, PathBuf};

use nas_runner::{retrain, run_experiment, RetrainOptions, RunOptions};

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/experiments")
        .join(name)
}

/// The shipped config with a budget of 2 weight steps, 1 scored path per epoch and a
/// 2-generation, 6-query evolution on 1 validation batch.
fn quick(name: &str, extra: &[&str]) -> nas_config::Experiment {
    let mut sets: Vec<String> = [
        "budget.epochs=1",
        "budget.steps_per_epoch=2",
        "data.params={limit_train: 300}",
        "trainer.params.recalibrate_batches=1",
        "strategy.params.eval_paths=1",
        "strategy.params.eval_batches=1",
        "strategy.params.search.eval_batches=1",
        "strategy.params.search.params={population: 3, top_k: 2, mutations: 1, crossovers: 1, generations: 2}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    nas_config::load_experiment(&config(name), &sets).unwrap()
}

fn run(name: &str, extra: &[&str]) -> (tempfile::TempDir, nas_rundir::RunSummary) {
    let dir = tempfile::tempdir().unwrap();
    let exp = quick(name, extra);
    let comps = nas_builtins::components().unwrap();
    let opts = RunOptions {
        out_dir: Some(dir.path().join("run")),
        ..Default::default()
    };
    let s = run_experiment(&exp, &comps, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(s.status, "finished", "{name}");
    (dir, s)
}

fn check_run(name: &str, space: &str) {
    let (dir, s) = run(name, &[]);
    assert_eq!(s.space, space);
    let arch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/architecture.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(arch["space"], space);
    // The found architectures come with their supernet scores, best first.
    let found = &s.architectures;
    assert!(!found.is_empty());
    let fit: Vec<f64> = found
        .iter()
        .map(|f| f["metrics"]["fitness"].as_f64().unwrap())
        .collect();
    assert!(fit.windows(2).all(|w| w[0] >= w[1]), "{fit:?}");
    assert!(fit.iter().all(|f| (0.0..=100.0).contains(f)));
}

#[test]
fn spos_space_with_uniform_and_fair_sampling() {
    check_run("spos-uniform-digits.yaml", "spos");
    check_run("spos-fairnas-digits.yaml", "spos");
}

#[test]
fn proxyless_space_with_uniform_and_fair_sampling() {
    check_run("proxyless-uniform-digits.yaml", "proxyless");
    check_run("proxyless-fairnas-digits.yaml", "proxyless");
}

#[test]
fn fbnet_space_with_uniform_and_fair_sampling() {
    check_run("fbnet-uniform-digits.yaml", "fbnet");
    check_run("fbnet-fairnas-digits.yaml", "fbnet");
}

#[test]
fn the_found_architecture_retrains_with_nas_train() {
    let (dir, _) = run("fbnet-uniform-digits.yaml", &[]);
    let exp = quick(
        "fbnet-uniform-digits.yaml",
        &["train.epochs=1", "train.limit_batches=2"],
    );
    let comps = nas_builtins::components().unwrap();
    let arch = dir.path().join("run/architecture.json");
    let rep = retrain(
        &exp,
        &comps,
        arch.to_str().unwrap(),
        &RetrainOptions {
            out_dir: Some(dir.path().join("train")),
        },
    )
    .unwrap();
    assert!((0.0..=1.0).contains(&rep.test_acc));
}

#[test]
fn the_weight_optimizer_switches_with_one_key() {
    for opt in ["adam", "rmsprop"] {
        let (dir, _) = run(
            "spos-uniform-digits.yaml",
            &[&format!("optimizers.weights.name={opt}")],
        );
        let resolved =
            std::fs::read_to_string(dir.path().join("run/config.resolved.yaml")).unwrap();
        let exp = nas_config::load_experiment(&dir.path().join("run/config.resolved.yaml"), &[]);
        let name = exp
            .map(|e| e.optimizers.weights.name)
            .unwrap_or_else(|_| resolved.clone());
        assert!(
            name == opt || resolved.contains(&format!("name: {opt}")),
            "{resolved}"
        );
    }
    // The resolved config says so.
    let exp = quick(
        "proxyless-uniform-digits.yaml",
        &["optimizers.weights.name=adam"],
    );
    assert_eq!(exp.optimizers.weights.name, "adam");
}

#[test]
fn the_cifar10_configs_validate() {
    for f in [
        "spos-uniform-cifar10.yaml",
        "proxyless-uniform-cifar10.yaml",
        "fbnet-uniform-cifar10.yaml",
    ] {
        let exp = nas_config::load_experiment(&config(f), &[]).unwrap();
        let comps = nas_builtins::components().unwrap();
        let shape = nas_model::DataShape {
            channels: 3,
            height: 32,
            width: 32,
            num_classes: 10,
        };
        nas_registry::build_space(&exp, &comps, shape).unwrap();
        nas_registry::build_strategy(&exp, &comps).unwrap();
    }
}

#[test]
fn the_supernet_estimator_scores_paths_with_the_weights_a_finished_run_saved() {
    // Without recalibration a path's score depends only on the saved weights and batch-norm
    // statistics, so the estimator built from the run's checkpoint must reproduce the
    // scores the run's own search gave with the weights in memory.
    let (dir, s) = run(
        "spos-uniform-digits.yaml",
        &["trainer.params.recalibrate_bn=false"],
    );
    let trained = dir.path().join("run");
    let comps = nas_builtins::components().unwrap();
    let search = |extra: &[&str]| {
        let mut sets = vec![
            format!("estimator.params.run={}", trained.display()),
            "estimator.params.batches=1".into(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        nas_config::load_experiment(&config("spos-rea-supernet-digits.yaml"), &sets).unwrap()
    };
    // The in-run search had no constraint: neither has this estimator.
    let exp = search(&["estimator.params.constraint={}"]);
    let params = exp.estimator.as_ref().unwrap().params.clone();
    assert!(!s.architectures.is_empty());
    let mut est =
        nas_strategy_single_path::trained_supernet::build(&context(&exp, &comps), &params).unwrap();
    for f in &s.architectures {
        let arch: nas_core::Architecture =
            serde_json::from_value(f["architecture"].clone()).unwrap();
        let want = f["metrics"]["fitness"].as_f64().unwrap();
        let got = est.estimate(&arch).unwrap().fitness;
        assert!((got - want).abs() < 1e-9, "{arch:?}: {got} vs {want}");
    }
    assert_eq!(est.queries(), s.architectures.len() as u64);

    // A whole search over it: every query counted, the constraint honoured.
    let out = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: Some(out.path().join("rea")),
        ..Default::default()
    };
    let exp = search(&["strategy.params.queries=12", "budget.queries=12"]);
    let r = run_experiment(&exp, &comps, &opts).unwrap();
    assert_eq!(r.status, "finished");
    let best = &r.architectures[0];
    assert!(best["flops"].as_f64().unwrap() <= 3.0e5, "{best}");
    assert!(
        best["metrics"]["fitness"].as_f64().unwrap() >= 0.0,
        "{best}"
    );

    // Errors name the problem: another space's run, a directory that is not a run.
    let other = search(&["space.params.stage_repeats=[1, 1, 1, 1]"]);
    let p = other.estimator.as_ref().unwrap().params.clone();
    let e = nas_strategy_single_path::trained_supernet::build(&context(&other, &comps), &p)
        .err()
        .unwrap();
    assert!(e.to_string().contains("other decisions"), "{e}");
    let p = serde_json::json!({"run": out.path().join("nowhere")});
    let e = nas_strategy_single_path::trained_supernet::build(&context(&exp, &comps), &p)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a run directory"), "{e}");
}

#[test]
fn the_cifar10_configs_run_end_to_end_on_the_shared_copy() {
    // The documented commands on the CIFAR-10 copy (../shared/data, JPEG folders in a
    // .tar.gz), budgets cut to two weight steps and a two-generation search on a subsample.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10-jpg/cifar10-jpg-q75.tar.gz");
    assert!(
        root.is_file(),
        "{root:?}: the shared CIFAR-10 copy is missing"
    );
    for (name, extra) in [
        ("spos-uniform-cifar10.yaml", None),
        (
            "proxyless-uniform-cifar10.yaml",
            Some("strategy.name=fairnas"),
        ),
        ("fbnet-uniform-cifar10.yaml", None),
    ] {
        let data = format!(
            "data.params={{root: {}, limit_train: 256, limit_test: 64}}",
            root.display()
        );
        let mut sets = vec![data.as_str(), "data.batch_size=32"];
        sets.extend(extra);
        let (_dir, s) = run(name, &sets);
        assert_eq!(s.status, "finished", "{name}");
        assert!(!s.architectures.is_empty(), "{name}");
    }
}

/// Writes a small Fashion-MNIST-shaped data set (the four IDX files, 28x28 grey, labels
/// 0-9; each image a bright square whose position depends on its label) into `root`.
fn write_fashion_mnist_like(root: &Path, train: u32, test: u32) {
    std::fs::create_dir_all(root).unwrap();
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut pixels = Vec::with_capacity(28 * 28 * n as usize);
        for (i, &label) in labels.iter().enumerate() {
            let (r0, c0) = (2 + 2 * label as usize, 20 - 2 * label as usize);
            for r in 0..28 {
                for c in 0..28 {
                    let inside = (r0..r0 + 6).contains(&r) && (c0..c0 + 6).contains(&c);
                    pixels.push(if inside {
                        230
                    } else {
                        ((r * 3 + c + i) % 40) as u8
                    });
                }
            }
        }
        let images = nas_data::idx::encode_idx_images(n, 28, 28, &pixels);
        let labels = nas_data::idx::encode_idx_labels(&labels);
        std::fs::write(root.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(root.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

#[test]
fn the_fashion_mnist_configs_run_end_to_end_and_retrain() {
    // The worked example's configs (docs/single-path.md), budgets cut, on files in the
    // Fashion-MNIST layout (CI has no Debian package): the data block reads 28x28 IDX files,
    // the search finishes, and the found path retrains.
    let data = tempfile::tempdir().unwrap();
    write_fashion_mnist_like(data.path(), 80, 40);
    let params = format!(
        "data.params={{root: {}, limit_train: 80, limit_test: 40}}",
        data.path().display()
    );
    for (name, strategy) in [
        ("spos-uniform-fmnist.yaml", "spos"),
        ("spos-fairnas-fmnist.yaml", "fairnas"),
    ] {
        let (dir, s) = run(name, &[&params]);
        assert_eq!(s.strategy, strategy, "{name}");
        let resolved =
            std::fs::read_to_string(dir.path().join("run/config.resolved.yaml")).unwrap();
        assert!(
            resolved.contains("fashion_mnist") && resolved.contains(data.path().to_str().unwrap()),
            "{name}: {resolved}"
        );
        let exp = quick(name, &[&params, "train.epochs=1", "train.limit_batches=2"]);
        let rep = retrain(
            &exp,
            &nas_builtins::components().unwrap(),
            dir.path().join("run/architecture.json").to_str().unwrap(),
            &RetrainOptions {
                out_dir: Some(dir.path().join("train")),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!((0.0..=1.0).contains(&rep.test_acc), "{name}");
    }
}

/// The build context of `exp`.
fn context<'a>(
    exp: &'a nas_config::Experiment,
    comps: &'a nas_registry::Components,
) -> nas_registry::BuildContext<'a> {
    nas_registry::BuildContext {
        exp: Some(exp),
        ..nas_registry::BuildContext::new(comps)
    }
}
