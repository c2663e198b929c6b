//! Runs that survive a SIGKILL: a real `nas` child process is stopped at a known point
//! (`NAS_DEBUG_STALL`, see `nas_runner`'s fault module), killed with SIGKILL, resumed with
//! `nas run --resume DIR`, and its results compared with an uninterrupted run of the same
//! config and seed: they must be identical (architecture, every metrics line, alpha history,
//! summary). Covered: DARTS, REA and random search over the NB201 table, SPOS and FairNAS.
mod support;

use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn darts_killed_mid_epoch_or_mid_checkpoint_resumes_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let path = |name: &str| d.path().join(name);
    let reference = path("reference");
    let o = nas(&strs(&darts_args(
        3,
        &["--out", reference.to_str().unwrap()],
    )));
    expect_exit(&o, 0, "uninterrupted run");
    assert_eq!(metric_lines(&reference, "step").len(), 12);

    // 1. Killed in the middle of epoch 1: after global step 6, its second step.
    let killed = path("killed-mid-epoch");
    run_and_kill_at(
        &strs(&darts_args(3, &["--out", killed.to_str().unwrap()])),
        "step:6",
        LIMIT,
    );
    assert_eq!(
        metric_lines(&killed, "epoch").len(),
        1,
        "epoch 1 was not finished"
    );
    assert_eq!(metric_lines(&killed, "step").len(), 6);
    assert!(!killed.join("summary.json").exists());
    let ck = nas_runner::checkpoint::load(&killed).expect("the checkpoint of epoch 0");
    assert_eq!(ck.meta.progress.next_epoch, 1);
    assert_eq!(ck.meta.progress.global_step, 4);
    let o = nas(&["run", "--resume", killed.to_str().unwrap()]);
    let t = expect_exit(&o, 0, "resume after a kill mid-epoch");
    assert!(t.contains("resumed from"), "{t}");
    assert_same_results(&reference, &killed);

    // 2. Killed inside the checkpoint after epoch 1 (the third: start, epoch 0, epoch 1),
    // after the previous checkpoint was moved aside and before the new one was renamed in.
    let swapped = path("killed-mid-swap");
    run_and_kill_at(
        &strs(&darts_args(3, &["--out", swapped.to_str().unwrap()])),
        "checkpoint:3",
        LIMIT,
    );
    assert!(!swapped.join("checkpoint").exists());
    assert!(swapped.join("checkpoint.old").is_dir());
    assert!(swapped.join("checkpoint.tmp").is_dir());
    assert_eq!(metric_lines(&swapped, "epoch").len(), 2);
    let o = nas(&["run", "--resume", swapped.to_str().unwrap()]);
    expect_exit(&o, 0, "resume after a kill during a checkpoint swap");
    assert_same_results(&reference, &swapped);
    assert!(!swapped.join("checkpoint.old").exists());

    // 3. Resuming a finished run only computes its outcome again.
    let o = nas(&["run", "--resume", killed.to_str().unwrap()]);
    expect_exit(&o, 0, "resume of a finished run");
    assert_same_results(&reference, &killed);
}

#[test]
fn estimator_strategies_killed_mid_epoch_resume_to_the_uninterrupted_result() {
    let Some(table) = nb201_table() else {
        eprintln!("skipped: the NB201 table (../shared/data/nb201) is not here");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    for strategy in ["rea", "random"] {
        let cfg = nb201_experiment(d.path(), strategy, &table);
        let reference = d.path().join(format!("{strategy}-reference"));
        let o = nas(&[
            "run",
            cfg.to_str().unwrap(),
            "--out",
            reference.to_str().unwrap(),
        ]);
        expect_exit(&o, 0, strategy);
        assert_eq!(metric_lines(&reference, "epoch").len(), 3, "{strategy}");

        let killed = d.path().join(format!("{strategy}-killed"));
        run_and_kill_at(
            &[
                "run",
                cfg.to_str().unwrap(),
                "--out",
                killed.to_str().unwrap(),
            ],
            "step:15",
            LIMIT,
        );
        assert_eq!(metric_lines(&killed, "step").len(), 15, "{strategy}");
        let ck = nas_runner::checkpoint::load(&killed).unwrap();
        assert_eq!(ck.meta.progress.next_epoch, 1, "{strategy}");
        // The estimator's query count is part of the checkpoint.
        assert_eq!(ck.meta.progress.estimator_queries, 10, "{strategy}");
        let o = nas(&["run", "--resume", killed.to_str().unwrap()]);
        expect_exit(&o, 0, strategy);
        assert_same_results(&reference, &killed);
        let last = metric_lines(&killed, "step").pop().unwrap();
        assert_eq!(last["queries"], 30.0, "{strategy}: {last}");
    }
}

#[test]
fn single_path_strategies_killed_mid_epoch_resume_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    // A small SPOS supernet (4 choice blocks), 3 epochs of 4 steps, a tiny evolution.
    let sets = [
        "budget.epochs=3",
        "budget.steps_per_epoch=4",
        "output.log_every=1",
        "space.params.stage_repeats=[1, 1, 1, 1]",
        "space.params.stem_channels=8",
        "space.params.stage_channels=[16, 24, 32, 40]",
        "space.params.last_channels=48",
        "strategy.params.search.params={population: 4, top_k: 2, mutations: 2, crossovers: 2, generations: 1}",
    ];
    for cfg in ["spos-uniform-digits", "spos-fairnas-digits"] {
        let args = |out: &std::path::Path| -> Vec<String> {
            let mut a = vec!["run".to_string(), format!("configs/experiments/{cfg}.yaml")];
            for s in sets {
                a.push("--set".into());
                a.push(s.into());
            }
            a.push("--out".into());
            a.push(out.to_str().unwrap().into());
            a
        };
        let reference = d.path().join(format!("{cfg}-reference"));
        expect_exit(&nas(&strs(&args(&reference))), 0, cfg);
        let killed = d.path().join(format!("{cfg}-killed"));
        run_and_kill_at(&strs(&args(&killed)), "step:6", LIMIT);
        assert_eq!(metric_lines(&killed, "epoch").len(), 1, "{cfg}");
        assert_eq!(metric_lines(&killed, "step").len(), 6, "{cfg}");
        let o = nas(&["run", "--resume", killed.to_str().unwrap()]);
        expect_exit(&o, 0, cfg);
        assert_same_results(&reference, &killed);
    }
}
