//! The tempered DARTS strategy loaded as a plugin from YAML runs a real search on the
//! embedded digits data exactly as the same code linked statically does (every metric,
//! every mixing weight, bit for bit), and with `tau = 1` exactly as the built-in `darts`.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use darts_variant_plugin::{TemperedDarts, TemperedParams, NAME};
use nas_core::{ComponentInfo, ComponentKind};
use nas_registry::Components;
use nas_runner::{run_experiment, RunOptions};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory of this test binary (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds this crate's shared library once (same cargo, same target directory).
fn plugin_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = target_dir();
        let out = Command::new(env!("CARGO"))
            .current_dir(workspace_root())
            .args(["build", "-p", "darts-variant-plugin", "--target-dir"])
            .arg(&target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug").join(format!(
            "{}darts_variant_plugin{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    })
}

/// A tiny search: 4 channels, 3 cells, 2 epochs of 2 steps, on the embedded digits.
const EXPERIMENT: &str = "\
schema: 1
name: tempered
seed: 5
space: {name: darts, params: {channels: 4, layers: 3}}
data: {name: digits, batch_size: 16, train_portion: 0.5}
strategy:
  name: tempered_darts
  params: {tau_start: 2.0, tau_end: 0.5, eval_batches: 1}
optimizers:
  weights:
    name: sgd
    params: {lr: 0.025, momentum: 0.9, weight_decay: 3.0e-4}
    schedule: {name: cosine, params: {eta_min: 0.001}}
    clip_grad_norm: 5.0
  arch:
    name: adam
    params: {lr: 0.01, betas: [0.5, 0.999], weight_decay: 1.0e-3}
budget: {epochs: 2, steps_per_epoch: 2}
output: {log_every: 1}
";

/// Writes the experiment (naming the plugin by a path relative to the file) into `dir`,
/// with the library copied next to it, and runs it with `sets`; returns the run directory.
fn run(dir: &Path, comps: &Components, plugin: bool, sets: &[&str]) -> PathBuf {
    let mut text = EXPERIMENT.to_string();
    if plugin {
        std::fs::copy(plugin_library(), dir.join("libtempered.so")).unwrap();
        text.push_str("plugins: [libtempered.so]\n");
    }
    let file = dir.join("experiment.yaml");
    std::fs::write(&file, text).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let exp = nas_config::load_experiment(&file, &sets).unwrap();
    let out = dir.join("run");
    let opts = RunOptions {
        out_dir: Some(out.clone()),
        progress: false,
    };
    let summary = run_experiment(&exp, comps, &opts).unwrap();
    assert_eq!(summary.status, nas_rundir::RunStatus::Finished);
    out
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn lines(dir: &Path, file: &str) -> Vec<serde_json::Value> {
    read(dir, file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The built-ins plus `tempered_darts` linked into this test binary.
fn static_components() -> Components {
    let mut c = nas_builtins::components().unwrap();
    c.strategies
        .register(
            ComponentInfo {
                kind: ComponentKind::Strategy,
                name: NAME.into(),
                summary: "tempered DARTS, linked statically".into(),
                defaults: TemperedParams::defaults_json(),
                params: TemperedParams::docs(),
                origin: "built-in".into(),
            },
            Arc::new(|p, _| TemperedDarts::factory(p)),
        )
        .unwrap();
    c
}

#[test]
fn the_plugin_searches_exactly_as_the_statically_linked_strategy() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let loaded = run(a.path(), &nas_builtins::components().unwrap(), true, &[]);
    let linked = run(b.path(), &static_components(), false, &[]);

    // Every step's losses, accuracies, temperature and |dL/d alpha|, and every epoch's
    // mixing weights: the same text, so the same bits.
    for f in ["metrics.jsonl", "alpha_history.jsonl", "architecture.json"] {
        assert_eq!(read(&loaded, f), read(&linked, f), "{f} differs");
    }

    // The search did something: the temperature followed the schedule (2 -> 0.5 over two
    // epochs), the gradients were not zero and the mixing weights moved.
    let steps: Vec<serde_json::Value> = lines(&loaded, "metrics.jsonl")
        .into_iter()
        .filter(|m| m["kind"] == "step")
        .collect();
    let taus: Vec<f64> = steps.iter().map(|m| m["tau"].as_f64().unwrap()).collect();
    assert_eq!(taus, vec![2.0, 2.0, 0.5, 0.5]);
    assert!(steps
        .iter()
        .all(|m| m["arch_grad_norm"].as_f64().unwrap() > 0.0));
    let alphas = lines(&loaded, "alpha_history.jsonl");
    assert_eq!(alphas.len(), 3, "initial weights and one line per epoch");
    assert_ne!(alphas[0]["weights"], alphas[2]["weights"]);
    let summary: serde_json::Value = serde_json::from_str(&read(&loaded, "summary.json")).unwrap();
    assert_eq!(summary["strategy"], NAME);
    assert!(summary["architecture"]
        .as_str()
        .unwrap()
        .starts_with("Genotype(normal="));
}

#[test]
fn at_temperature_one_the_plugin_is_the_built_in_darts() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let builtin = nas_builtins::components().unwrap();
    let tempered = run(
        a.path(),
        &builtin,
        true,
        &["strategy.params={tau_start: 1.0, tau_end: 1.0, eval_batches: 1}"],
    );
    let darts = run(
        b.path(),
        &builtin,
        false,
        &["strategy={name: darts, params: {eval_batches: 1}}"],
    );
    // An independent implementation (the framework's own DARTS, linked into the host)
    // gives the same mixing weights after every epoch and derives the same genotype.
    assert_eq!(
        read(&tempered, "alpha_history.jsonl"),
        read(&darts, "alpha_history.jsonl")
    );
    let arch = |d: &Path| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&read(d, "architecture.json")).unwrap()
            ["genotype"]
            .clone()
    };
    assert_eq!(arch(&tempered), arch(&darts));
    // And the per-step losses agree too.
    let pick = |d: &Path| -> Vec<(f64, f64)> {
        lines(d, "metrics.jsonl")
            .into_iter()
            .filter(|m| m["kind"] == "step")
            .map(|m| {
                (
                    m["arch_loss"].as_f64().unwrap(),
                    m["train_loss"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(pick(&tempered), pick(&darts));
}
