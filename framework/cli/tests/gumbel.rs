//! The Gumbel-softmax strategies from the command line (issue 17): tiny end-to-end runs of
//! the shipped digits configs, switching strategy family with `--set strategy.name`, the
//! reuse-space example sweep. (Every shipped config is validated by `cli.rs`.)
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run nas")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One epoch of two steps of `config`, with `sets`; returns the summary.
fn tiny_run(config: &str, sets: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "run",
        config,
        "--set",
        "budget.epochs=1",
        "--set",
        "budget.steps_per_epoch=2",
        "--set",
        "data.params={limit_train: 256}",
        "--set",
        "strategy.params.eval_batches=1",
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    args.extend(["--out", out.path().to_str().unwrap()]);
    let o = nas(&args);
    assert!(o.status.success(), "{config}: {}", text(&o));
    serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
        .unwrap()
}

#[test]
fn gdas_snas_and_fbnet_configs_run_end_to_end_on_the_digits() {
    for (config, extra) in [
        (
            "configs/experiments/gdas-darts-digits.yaml",
            &["space.params.layers=3", "space.params.channels=4"][..],
        ),
        ("configs/experiments/gdas-spos-digits.yaml", &[][..]),
        (
            "configs/experiments/snas-nb201-digits.yaml",
            &["strategy.params.samples=example"][..],
        ),
        // Warm-up 0 so that the architecture step with the FLOPs cost term runs.
        (
            "configs/experiments/fbnet-fbnet-digits.yaml",
            &["strategy.params.warmup_epochs=0"][..],
        ),
    ] {
        let s = tiny_run(config, extra);
        assert_eq!(s["status"], "finished", "{config}: {s}");
        let acc = s["valid_acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{config}: {s}");
    }
}

/// The reproduction: `darts-digits.yaml` with `--set strategy.name=spos` used to
/// fail with "unknown field `arch_optimizer`". Now `optimizers.arch` is passed only to
/// strategies that take it; the DARTS params left in the file are named with the hint.
#[test]
fn switching_strategy_family_with_set_works_or_names_the_key() {
    let base = "configs/experiments/darts-digits.yaml";
    // The darts params (`order: first`) do not fit spos: the error names the key and says
    // how to reset the block; no word of `arch_optimizer`.
    let o = nas(&["config", "validate", base, "--set", "strategy.name=spos"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(!t.contains("arch_optimizer"), "{t}");
    assert!(t.contains("strategy.params") && t.contains("order"), "{t}");
    assert!(t.contains("--set strategy.params={}"), "{t}");
    // With the params reset, spos validates; gdas takes the arch optimizer as darts does.
    for name in ["spos", "gdas", "snas", "fairnas"] {
        let set = format!("strategy.name={name}");
        let o = nas(&[
            "config",
            "validate",
            base,
            "--set",
            &set,
            "--set",
            "strategy.params={}",
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
    // And it runs.
    let s = tiny_run(
        base,
        &[
            "strategy.name=spos",
            "strategy.params={eval_paths: 1, eval_batches: 1, search: {name: evolution, eval_batches: 1, params: {population: 2, top_k: 1, mutations: 1, crossovers: 1, generations: 1}}}",
            "space.params.layers=3",
            "space.params.channels=4",
        ],
    );
    assert_eq!(s["status"], "finished", "{s}");
}

#[test]
fn the_reuse_space_example_sweep_plans_three_strategies() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("reuse");
    let o = nas(&[
        "sweep",
        "examples/reuse-space/sweep.yaml",
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("6 runs: 6 to run"), "{t}");
    for id in ["000-darts-s0", "003-gdas-s1", "005-spos-s1"] {
        assert!(t.contains(id), "{id}: {t}");
    }
    // Every run's config is a valid experiment with Adam on the weights.
    let o = nas(&[
        "config",
        "validate",
        "examples/reuse-space/fbnet-digits.yaml",
        "--print",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("name: adam"), "{t}");
}
