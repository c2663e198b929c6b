//! The ProxylessNAS configs: every `proxylessnas-*.yaml` experiment loads and builds its
//! space and strategy, and a tiny search (1 epoch, 2 steps) runs end to end on the
//! embedded digits on the ProxylessNAS and DARTS spaces.
use std::path::{Path, PathBuf};

use nas_runner::{run_experiment, RunOptions};

fn configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/experiments");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("proxylessnas-") && n.ends_with(".yaml")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_proxylessnas_config_validates() {
    let files = configs();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "proxylessnas-proxyless-digits",
        "proxylessnas-fbnet-digits",
        "proxylessnas-spos-digits",
        "proxylessnas-darts-digits",
        "proxylessnas-nb201-digits",
        "proxylessnas-proxyless-cifar10",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let comps = nas_builtins::components().unwrap();
    for f in &files {
        let exp =
            nas_config::load_experiment(f, &[]).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(exp.strategy.name, "proxylessnas", "{}", f.display());
        let shape = nas_registry::data_shape_of(&exp, &comps).unwrap();
        let space = nas_registry::build_space(&exp, &comps, shape)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut s = nas_registry::build_strategy(&exp, &comps)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // init reads the cost table of the space (an error when a latency is missing).
        s.init(space.rules().spec(), 0)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

fn tiny_run(config: &str, sets: &[&str]) -> nas_rundir::RunSummary {
    let tmp = tempfile::tempdir().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/experiments")
        .join(config);
    let mut all: Vec<String> = vec![
        "budget.epochs=1".into(),
        "budget.steps_per_epoch=2".into(),
        "strategy.params.warmup_epochs=0".into(),
        "strategy.params.arch_every=1".into(),
        "strategy.params.eval_batches=1".into(),
        "trainer.params.recalibrate_batches=1".into(),
        "output.log_every=1".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let exp = nas_config::load_experiment(&file, &all).unwrap();
    let out = tmp.path().join("run");
    let s = run_experiment(
        &exp,
        &nas_builtins::components().unwrap(),
        &RunOptions {
            out_dir: Some(out.clone()),
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(s.status, "finished");
    // Two architecture updates were logged, each with its loss.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let arch_lines = metrics
        .lines()
        .filter(|l| l.contains("\"arch_loss\""))
        .count();
    assert!(arch_lines >= 2, "{metrics}");
    s
}

#[test]
fn a_tiny_search_runs_on_the_proxyless_space() {
    let s = tiny_run(
        "proxylessnas-proxyless-digits.yaml",
        &[
            "space.params.stage_channels=[8, 8, 8]",
            "space.params.last_channels=16",
        ],
    );
    assert!(s.architecture.is_some());
}

#[test]
fn a_tiny_search_runs_on_the_darts_space() {
    let s = tiny_run(
        "proxylessnas-darts-digits.yaml",
        &["space.params.channels=4", "space.params.layers=3"],
    );
    assert!(s.architecture.is_some());
}
