//! `nas sweep` and `nas report` from the command line: the shipped NB201 sweep as a dry
//! run, a small sweep with a failing entry (exit code 1), and `nas report` on its directory.
use std::path::Path;
use std::process::Command;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nas(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run nas");
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), t)
}

#[test]
fn the_shipped_nb201_sweep_plans_ninety_runs() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("nb201");
    let (code, t) = nas(&[
        "sweep",
        "configs/sweeps/nb201.yaml",
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("90 runs: 90 to run, 0 finished before"), "{t}");
    assert!(
        t.contains("000-random-s0") && t.contains("089-reinforce-s29"),
        "{t}"
    );
    assert!(!out.exists(), "a dry run writes nothing");
}

#[test]
fn a_failing_run_gives_exit_code_1_and_report_rebuilds_the_files() {
    let d = tempfile::tempdir().unwrap();
    let table = root().join("../shared/data/nb201/nb201_merged.csv");
    std::fs::write(
        d.path().join("base.yaml"),
        format!(
            "schema: 1\nspace: {{name: nb201}}\nstrategy: {{name: random}}\n\
             estimator: {{name: nb201_table, params: {{path: \"{}\"}}}}\n\
             budget: {{queries: 5}}\noutput: {{log_every: 1}}\n",
            table.display()
        ),
    )
    .unwrap();
    let sweep = d.path().join("s.yaml");
    std::fs::write(
        &sweep,
        "schema: 1\nbase: base.yaml\nmatrix:\n  strategies:\n\
         \x20   - {label: random, strategy: {name: random, params: {queries: 5}}}\n\
         \x20   - {label: bad, strategy: {name: random, params: {queries: 0}}}\n\
         \x20 seeds: [0, 1]\n",
    )
    .unwrap();
    let out = d.path().join("out");
    let (code, t) = nas(&[
        "-q",
        "sweep",
        sweep.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("2 finished") && t.contains("2 failed"), "{t}");
    assert!(t.contains("queries"), "{t}");
    std::fs::remove_file(out.join("report.md")).unwrap();
    let (code, t) = nas(&["report", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{t}");
    assert!(out.join("report.md").is_file() && out.join("plots/best_vs_queries.png").is_file());
    // A run directory gets its own report.
    let (code, t) = nas(&["report", out.join("000-random-s0").to_str().unwrap()]);
    assert_eq!(code, Some(0), "{t}");
    assert!(out.join("000-random-s0/plots/cell.png").is_file(), "{t}");
    // Neither kind of directory.
    let (code, t) = nas(&["report", d.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("neither a sweep directory"), "{t}");
}
