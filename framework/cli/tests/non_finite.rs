//! Numerical faults: a non-finite loss or gradient stops the run with an error naming the
//! step and the quantity (exit code 1, `summary.json` status `failed`), leaves the last good
//! checkpoint in place, and says how to resume with a lower learning rate; or, with
//! `trainer.params.on_non_finite: skip`, the bad batch is dropped and the run goes on.
use crate::support;

use support::*;

#[test]
fn a_non_finite_loss_stops_the_run_and_the_suggested_resume_recovers_it() {
    let d = tempfile::tempdir().unwrap();
    let failed = d.path().join("failed");
    let o = nas(&strs(&darts_args(
        2,
        &[
            "--set",
            "optimizers.weights.params.lr=1e30",
            "--out",
            failed.to_str().unwrap(),
        ],
    )));
    let t = expect_exit(&o, 1, "a run with lr 1e30");
    // Step 0 moves the weights by ~lr; the next forward overflows.
    assert!(
        t.contains("error: non-finite loss at epoch 0, step 1"),
        "{t}"
    );
    let d_str = failed.to_str().unwrap();
    assert!(
        t.contains(&format!(
            "nas run --resume {d_str} --set optimizers.weights.params.lr=5e29"
        )),
        "{t}"
    );
    assert!(t.contains("trainer.params.on_non_finite=skip"), "{t}");
    let s = json(&failed, "summary.json");
    assert_eq!(s["status"], "failed");
    let reason = s["stop_reason"].as_str().unwrap();
    assert!(
        reason.contains("non-finite loss") && reason.contains("--resume"),
        "{reason}"
    );
    // The last good checkpoint (the one taken before the first step) verifies.
    let ck = nas_rundir::checkpoint::load(&failed).unwrap();
    assert_eq!(ck.dir, failed.join("checkpoint"));
    assert_eq!(ck.meta.progress.next_epoch, 0);

    // Resumed with a sane learning rate, it is the run that had that rate from the start.
    let o = nas(&[
        "run",
        "--resume",
        d_str,
        "--set",
        "optimizers.weights.params.lr=0.025",
    ]);
    expect_exit(&o, 0, "resume with lr 0.025");
    let fresh = d.path().join("fresh");
    let o = nas(&strs(&darts_args(2, &["--out", fresh.to_str().unwrap()])));
    expect_exit(&o, 0, "a run with lr 0.025");
    assert_same_results(&fresh, &failed);
}

#[test]
fn a_fault_in_a_later_epoch_leaves_the_checkpoint_of_the_good_epochs() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    // Epoch 0 at lr 0.025, epoch 1 at 0.025e30.
    let args = darts_args(
        2,
        &[
            "--set",
            "optimizers.weights.schedule={name: step, params: {step_size: 1, gamma: 1.0e30}}",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    let t = expect_exit(&nas(&strs(&args)), 1, "a schedule that explodes in epoch 1");
    assert!(t.contains("non-finite loss at epoch 1, step 1"), "{t}");
    assert!(t.contains("1 of 2 epochs completed"), "{t}");
    let ck = nas_rundir::checkpoint::load(&run).unwrap();
    assert_eq!(ck.meta.progress.next_epoch, 1);
    assert_eq!(ck.meta.progress.global_step, 4);
    let metrics = read(&run, "metrics.jsonl");
    assert!(ck.meta.progress.metrics_bytes < metrics.len() as u64);
    assert_eq!(metric_lines(&run, "epoch").len(), 1);
    // The checkpoint is intact: resuming it unchanged reproduces the same failure.
    let t = expect_exit(
        &nas(&["run", "--resume", run.to_str().unwrap()]),
        1,
        "an unchanged resume",
    );
    assert!(t.contains("non-finite loss at epoch 1, step 1"), "{t}");
    assert_eq!(
        read(&run, "metrics.jsonl"),
        metrics,
        "the same lines, none twice"
    );
}

#[test]
fn skip_drops_non_finite_batches_and_the_run_finishes() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    // Weight steps only (no architecture steps in the warm-up), all but the first non-finite.
    let args = darts_args(
        1,
        &[
            "--set",
            "optimizers.weights.params.lr=1e30",
            "--set",
            "trainer.params.on_non_finite=skip",
            "--set",
            "strategy.params.warmup_epochs=5",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    let t = expect_exit(&nas(&strs(&args)), 0, "skip");
    assert!(t.contains("batch skipped"), "{t}");
    assert_eq!(json(&run, "summary.json")["status"], "finished");
    let steps = metric_lines(&run, "step");
    assert_eq!(steps.len(), 4);
    assert!(steps[0]["train_loss"].is_f64(), "{}", steps[0]);
    for s in &steps[1..] {
        // Non-finite values are written as null.
        assert!(s["train_loss"].is_null(), "{s}");
    }
}
