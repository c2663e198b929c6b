//! Helpers of the reliability tests: running `nas`, killing it at a chosen point, and
//! comparing run directories.
#![allow(dead_code)]
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository root (where `configs/` and `../shared` resolve).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `nas` with `args`, from the repository root, quiet logs.
pub fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("NAS_DEBUG_STALL")
        .output()
        .expect("run nas")
}

/// stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts `o` exited with `code` and never panicked; returns its text.
pub fn expect_exit(o: &Output, code: i32, what: &str) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(code), "{what}: {t}");
    assert!(!t.contains("panicked"), "{what} panicked: {t}");
    t
}

/// Starts `nas args` with `NAS_DEBUG_STALL=stall`, waits until it reports that it stalled
/// there, and kills it with SIGKILL. Panics (after killing it) when it exits or does not
/// stall within `limit`.
pub fn run_and_kill_at(args: &[&str], stall: &str, limit: Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env("NAS_DEBUG_STALL", stall)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nas");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("NAS_DEBUG_STALL: stalled at") {
                let _ = tx.send(true);
            }
        }
        let _ = tx.send(false);
        seen
    });
    let stalled = rx.recv_timeout(limit).unwrap_or(false);
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no cleanup runs.
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let seen = reader.join().unwrap_or_default();
    assert!(
        stalled,
        "nas did not stall at {stall} (status {status:?}): {seen}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "not killed by SIGKILL: {status:?}"
        );
    }
}

/// A file of a run directory as text.
pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON file of a run directory.
pub fn json(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&read(dir, name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Asserts that two run directories hold the same results: `architecture.json`,
/// `metrics.jsonl` and `alpha_history.jsonl` byte for byte (so no line is missing or
/// written twice), and `summary.json` in every field but the wall time.
pub fn assert_same_results(a: &Path, b: &Path) {
    for f in ["architecture.json", "metrics.jsonl"] {
        assert_eq!(read(a, f), read(b, f), "{f} differs");
    }
    let alphas = |d: &Path| std::fs::read_to_string(d.join("alpha_history.jsonl")).ok();
    assert_eq!(alphas(a), alphas(b), "alpha_history.jsonl differs");
    let (mut sa, mut sb) = (json(a, "summary.json"), json(b, "summary.json"));
    for s in [&mut sa, &mut sb] {
        s.as_object_mut().unwrap().remove("wall_time_s");
    }
    assert_eq!(sa, sb, "summary.json differs");
    assert_eq!(sa["status"], "finished");
}

/// Lines of `metrics.jsonl` of `kind` (`step` or `epoch`).
pub fn metric_lines(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    read(dir, "metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// The NB201 benchmark table, when this checkout has the shared data next to it.
pub fn nb201_table() -> Option<PathBuf> {
    let p = root().join("../shared/data/nb201/nb201_merged.csv");
    p.is_file().then_some(p)
}

/// Writes an estimator-strategy experiment over the NB201 table: `strategy` with a budget
/// of 30 queries, 3 epochs of 10 steps, a metrics line per step.
pub fn nb201_experiment(dir: &Path, strategy: &str, table: &Path) -> PathBuf {
    let p = dir.join(format!("{strategy}.yaml"));
    std::fs::write(
        &p,
        format!(
            "schema: 1\nname: {strategy}-nb201\nseed: 3\nspace: {{name: nb201}}\n\
             strategy: {{name: {strategy}, params: {{queries: 30}}}}\n\
             estimator: {{name: nb201_table, params: {{path: {}}}}}\n\
             budget: {{epochs: 3, steps_per_epoch: 10}}\noutput: {{log_every: 1}}\n",
            table.display()
        ),
    )
    .unwrap();
    p
}

/// `--set` arguments of a tiny DARTS search on the embedded digits: 3 cells of 4
/// channels, 4 steps per epoch, a metrics line per step, a checkpoint every epoch.
pub fn tiny_darts(epochs: usize) -> Vec<String> {
    [
        format!("budget.epochs={epochs}"),
        "budget.steps_per_epoch=4".into(),
        "space.params.channels=4".into(),
        "space.params.layers=3".into(),
        "strategy.params.eval_batches=2".into(),
        "output.log_every=1".into(),
        "output.checkpoint_every=1".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// `nas run configs/experiments/darts-digits.yaml` with [`tiny_darts`] and `extra` args.
pub fn darts_args(epochs: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "configs/experiments/darts-digits.yaml".into()];
    a.extend(tiny_darts(epochs));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// `&[String]` as `&[&str]`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
