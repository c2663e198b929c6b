//! Sweeps and retrainings that survive a SIGKILL, and a sweep's retrain stage.
//!
//! - A sweep killed in the middle of its second run (`NAS_DEBUG_STALL=process_step:N`) and
//!   started again: the finished run is untouched, the interrupted one continues from its
//!   checkpoint, and `runs.csv` (wall times aside) and every run's files equal those of an
//!   uninterrupted sweep.
//! - A retraining killed after an epoch's metrics line and before its checkpoint, resumed
//!   with `nas train --resume`: the same metrics, accuracy and trained weights (byte for
//!   byte) as an uninterrupted retraining.
//! - A sweep with a `retrain` block: every found architecture retrained per seed, the
//!   `retrain.csv` and the report's mean ± std checked against the retrainings' own
//!   summaries, a restart that retrains nothing, and `nas report` rebuilding the files.
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(300);

/// `runs.csv` without the `wall_time_s` column.
fn runs_csv_without_time(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("runs.csv")).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let skip = head.iter().position(|h| h == "wall_time_s");
    let mut rows = vec![head];
    for rec in r.records() {
        rows.push(rec.unwrap().iter().map(String::from).collect());
    }
    for row in &mut rows {
        if let Some(i) = skip {
            row.remove(i);
        }
    }
    rows
}

/// A sweep over the NB201 table: random and REA, 3 epochs of 10 steps (30 queries) each,
/// one run at a time.
fn nb201_sweep(dir: &Path, table: &Path) -> PathBuf {
    std::fs::write(
        dir.join("base.yaml"),
        format!(
            "schema: 1\nseed: 3\nspace: {{name: nb201}}\nstrategy: {{name: random}}\n\
             estimator: {{name: nb201_table, params: {{path: {}}}}}\n\
             budget: {{epochs: 3, steps_per_epoch: 10}}\noutput: {{log_every: 1}}\n",
            table.display()
        ),
    )
    .unwrap();
    let p = dir.join("sweep.yaml");
    std::fs::write(
        &p,
        "schema: 1\nname: killed\nbase: base.yaml\nmatrix:\n  strategies:\n\
         \x20   - {label: random, strategy: {name: random, params: {queries: 30}}}\n\
         \x20   - {label: rea, strategy: {name: rea, params: {queries: 30, population: 5, sample_size: 3}}}\n\
         jobs: 1\nreport: {metrics: [test_acc, queries]}\n",
    )
    .unwrap();
    p
}

#[test]
fn a_killed_sweep_resumes_its_interrupted_run_and_matches_an_uninterrupted_one() {
    let Some(table) = nb201_table() else {
        eprintln!("skipped: the NB201 table (../shared/data/nb201) is not here");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let file = nb201_sweep(d.path(), &table);
    let f = file.to_str().unwrap();
    let reference = d.path().join("reference");
    let o = nas(&["-q", "sweep", f, "--out", reference.to_str().unwrap()]);
    expect_exit(&o, 0, "uninterrupted sweep");

    // Killed at the 45th step of the process: run 0 (30 steps) has finished, run 1 is at
    // its 15th step, in its second epoch (its checkpoint after epoch 1 holds 10 steps).
    let out = d.path().join("out");
    run_and_kill_at(
        &["sweep", f, "--out", out.to_str().unwrap()],
        "process_step:45",
        LIMIT,
    );
    let (first, second) = (out.join("000-random-s3"), out.join("001-rea-s3"));
    assert_eq!(json(&first, "summary.json")["status"], "finished");
    assert!(
        !second.join("summary.json").exists(),
        "run 1 was interrupted"
    );
    assert_eq!(metric_lines(&second, "step").len(), 15);
    let ck = nas_rundir::checkpoint::load(&second).expect("run 1's checkpoint");
    assert_eq!(ck.meta.progress.next_epoch, 1);
    assert_eq!(ck.meta.progress.global_step, 10);
    let first_files: Vec<(String, Vec<u8>, std::time::SystemTime)> =
        ["summary.json", "metrics.jsonl", "architecture.json"]
            .iter()
            .map(|n| {
                let p = first.join(n);
                (
                    n.to_string(),
                    std::fs::read(&p).unwrap(),
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                )
            })
            .collect();

    let o = nas(&["sweep", f, "--out", out.to_str().unwrap()]);
    let t = expect_exit(&o, 0, "the sweep started again");
    assert!(t.contains("1 of 2 runs finished before"), "{t}");
    assert!(
        t.contains("resuming from its checkpoint (1 of 3 epochs done)"),
        "{t}"
    );
    for (n, bytes, mtime) in &first_files {
        let p = first.join(n);
        assert_eq!(
            &std::fs::read(&p).unwrap(),
            bytes,
            "{n} of the finished run changed"
        );
        assert_eq!(
            &std::fs::metadata(&p).unwrap().modified().unwrap(),
            mtime,
            "{n} of the finished run was rewritten"
        );
    }
    assert!(read(&second, "log.txt").contains("resumed from"));
    assert_same_results(&reference.join("001-rea-s3"), &second);
    assert_same_results(&reference.join("000-random-s3"), &first);
    let (a, b) = (
        runs_csv_without_time(&reference),
        runs_csv_without_time(&out),
    );
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a, b, "runs.csv differs (wall times aside)");
}

/// A DARTS genotype for the digits retrainings.
const GENOTYPE: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), \
    ('sep_conv_3x3', 0), ('dil_conv_3x3', 2), ('max_pool_3x3', 0), ('sep_conv_3x3', 1), \
    ('skip_connect', 2), ('avg_pool_3x3', 3)], normal_concat=range(2, 6), \
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), \
    ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], \
    reduce_concat=range(2, 6))";

fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        GENOTYPE,
        "--config",
        "configs/experiments/darts-digits.yaml",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // 3 epochs of 3 batches, 4 channels, 3 cells; drop path 0.2 and the DARTS schedule.
    for s in [
        "train.epochs=3",
        "train.limit_batches=3",
        "train.channels=4",
        "train.layers=3",
        "train.batch_size=32",
        "train.drop_path=0.2",
    ] {
        a.push("--set".into());
        a.push(s.into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_killed_retraining_resumes_to_the_uninterrupted_accuracy_and_weights() {
    let d = tempfile::tempdir().unwrap();
    let reference = d.path().join("reference");
    let o = nas(&strs(&train_args(&reference, &[])));
    let t = expect_exit(&o, 0, "uninterrupted retraining");
    assert!(t.contains("test_acc"), "{t}");
    assert_eq!(metric_lines(&reference, "epoch").len(), 3);
    assert!(reference.join("weights.safetensors").is_file());

    // Killed after epoch 3's metrics line, before its checkpoint: the resume goes back to
    // the checkpoint of epoch 2, cuts the line away and trains epoch 3 again (with the
    // drop-path draws of an uninterrupted run: epoch 2 drew masks before the kill).
    let killed = d.path().join("killed");
    run_and_kill_at(&strs(&train_args(&killed, &[])), "retrain_epoch:3", LIMIT);
    assert_eq!(metric_lines(&killed, "epoch").len(), 3);
    let (_, meta) = nas_runner::retrain_checkpoint::load(&killed).unwrap();
    assert_eq!(meta.progress.next_epoch, 2);
    assert!(!killed.join("summary.json").exists());
    assert!(!killed.join("weights.safetensors").exists());
    let o = nas(&strs(&train_args(&killed, &["--resume"])));
    expect_exit(&o, 0, "resumed retraining");
    assert!(read(&killed, "log.txt").contains("resumed from"));
    assert_eq!(
        read(&reference, "metrics.jsonl"),
        read(&killed, "metrics.jsonl")
    );
    let (mut a, mut b) = (
        json(&reference, "summary.json"),
        json(&killed, "summary.json"),
    );
    for s in [&mut a, &mut b] {
        s.as_object_mut().unwrap().remove("wall_time_s");
    }
    assert_eq!(a, b);
    assert_eq!(a["status"], "finished");
    for f in ["weights.safetensors", "batchnorm.safetensors"] {
        assert!(
            std::fs::read(reference.join(f)).unwrap() == std::fs::read(killed.join(f)).unwrap(),
            "{f} differs"
        );
    }
    // The trained weights load into the network again (names and shapes).
    let w = candle_core::safetensors::load(
        killed.join("weights.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(!w.is_empty());

    // Resuming a finished retraining trains nothing.
    let before = std::fs::metadata(killed.join("summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    let o = nas(&strs(&train_args(&killed, &["--resume"])));
    expect_exit(&o, 0, "resume of a finished retraining");
    assert_eq!(
        std::fs::metadata(killed.join("summary.json"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    // Without --resume the directory is trained again from scratch, to the same result.
    let o = nas(&strs(&train_args(&killed, &[])));
    expect_exit(&o, 0, "retraining again");
    assert_eq!(
        read(&reference, "metrics.jsonl"),
        read(&killed, "metrics.jsonl")
    );
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

#[test]
fn a_sweep_retrains_what_it_found_and_reports_the_retrained_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let base = root().join("configs/experiments/darts-digits.yaml");
    let file = d.path().join("sweep.yaml");
    std::fs::write(
        &file,
        format!(
            "schema: 1\nname: retrained\nbase: {}\nmatrix:\n  seeds: [0]\n\
             set: {{budget.epochs: 1, budget.steps_per_epoch: 2, space.params.channels: 4, \
             space.params.layers: 3, strategy.params.eval_batches: 1}}\n\
             retrain: {{seeds: [4, 5], epochs: 2, limit_batches: 2, channels: 4, layers: 3, \
             batch_size: 32}}\n",
            base.display()
        ),
    )
    .unwrap();
    let out = d.path().join("out");
    let o = nas(&[
        "-q",
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = expect_exit(&o, 0, "sweep with a retrain stage");
    let run = out.join("000-darts-s0");
    let found = json(&run, "architecture.json")["notation"].clone();
    let mut accs = Vec::new();
    for seed in [4, 5] {
        let r = run.join(format!("retrain-s{seed}"));
        let s = json(&r, "summary.json");
        assert_eq!(s["status"], "finished");
        assert_eq!(s["seed"], seed);
        assert_eq!(
            s["architecture"], found,
            "the found architecture was retrained"
        );
        assert_eq!(
            metric_lines(&r, "epoch").len(),
            2,
            "the retrain overrides apply"
        );
        assert!(r.join("weights.safetensors").is_file());
        accs.push(s["test_acc"].as_f64().unwrap());
    }
    let mut csv = csv::Reader::from_path(out.join("retrain.csv")).unwrap();
    let head: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for (row, acc) in rows.iter().zip(&accs) {
        assert_eq!(row[col("test_acc")].parse::<f64>().unwrap(), *acc);
        assert_eq!(row[col("group")], *"darts");
    }
    let (m, s) = mean_std(&accs);
    let md = read(&out, "report.md");
    assert!(md.contains("## Retrained"), "{md}");
    let cell = format!("{m:.4} ± {s:.4}");
    assert!(md.contains(&cell), "{cell} not in {md}");
    assert!(t.contains("1 finished"), "{t}");

    // Started again: nothing is searched or retrained.
    let stamp = |p: PathBuf| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = stamp(run.join("retrain-s5/summary.json"));
    let o = nas(&[
        "-q",
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = expect_exit(&o, 0, "the sweep again");
    assert!(t.contains("1 skipped"), "{t}");
    assert_eq!(stamp(run.join("retrain-s5/summary.json")), before);

    // `nas report` rebuilds retrain.csv from the files.
    let csv_before = read(&out, "retrain.csv");
    std::fs::remove_file(out.join("retrain.csv")).unwrap();
    let o = nas(&["report", out.to_str().unwrap()]);
    expect_exit(&o, 0, "nas report");
    assert_eq!(read(&out, "retrain.csv"), csv_before);
    assert!(out.join("plots/retrained_acc_vs_params.png").is_file());
}

#[test]
fn a_bad_retrain_block_is_a_config_error_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let base = root().join("configs/experiments/darts-digits.yaml");
    for (block, want) in [
        ("{seeds: [0], epoch: 2}", "retrain.epoch"),
        ("{seeds: []}", "retrain.seeds"),
        ("{seeds: [1, 1]}", "listed twice"),
        ("{seeds: [0], epochs: two}", "retrain.epochs"),
    ] {
        let file = d.path().join("bad.yaml");
        std::fs::write(
            &file,
            format!("schema: 1\nbase: {}\nretrain: {block}\n", base.display()),
        )
        .unwrap();
        let o = nas(&["sweep", file.to_str().unwrap(), "--dry-run"]);
        let t = expect_exit(&o, 2, block);
        assert!(t.contains(want), "{block}: {t}");
        assert!(t.contains("bad.yaml"), "{block}: {t}");
    }
}

#[test]
fn a_weight_sharing_run_on_nb201_gets_the_table_accuracy_of_its_cell() {
    let Some(table) = nb201_table() else {
        eprintln!("skipped: the NB201 table (../shared/data/nb201) is not here");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let base = root().join("configs/experiments/darts-nb201-digits.yaml");
    let file = d.path().join("sweep.yaml");
    std::fs::write(
        &file,
        format!(
            "schema: 1\nname: referee\nbase: {}\nmatrix:\n  seeds: [0]\n\
             set: {{budget.epochs: 1, budget.steps_per_epoch: 2, space.params.channels: 4, \
             strategy.params.eval_batches: 1}}\n",
            base.display()
        ),
    )
    .unwrap();
    let out = d.path().join("out");
    let o = nas(&[
        "-q",
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_exit(&o, 0, "DARTS on the NB201 supernet");
    let cell = json(&out.join("000-darts-s0"), "summary.json")["architecture"]
        .as_str()
        .unwrap()
        .to_string();
    // The benchmark's row of that cell, read straight from the CSV.
    let mut t = csv::Reader::from_path(&table).unwrap();
    let th: Vec<String> = t.headers().unwrap().iter().map(String::from).collect();
    let tc = |n: &str| th.iter().position(|h| h == n).unwrap();
    let row = t
        .records()
        .map(|r| r.unwrap())
        .find(|r| r[tc("arch_str")] == *cell.as_str())
        .unwrap_or_else(|| panic!("{cell} is not in the table"));
    let want: f64 = row[tc("c10_oritest_200")].parse().unwrap();
    let mut r = csv::Reader::from_path(out.join("runs.csv")).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rec = r.records().next().unwrap().unwrap();
    let col = |n: &str| {
        head.iter()
            .position(|h| h == n)
            .unwrap_or_else(|| panic!("no {n} in {head:?}"))
    };
    assert_eq!(rec[col("table_test_acc")].parse::<f64>().unwrap(), want);
    assert_eq!(
        rec[col("table_params_m")].parse::<f64>().unwrap(),
        row[tc("params_cifar10_M")].parse::<f64>().unwrap()
    );
}
