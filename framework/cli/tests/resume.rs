//! Runs that survive a SIGKILL: a real `nas` child process is stopped at a known point
//! (`NAS_DEBUG_STALL`, see `nas_runner`'s fault module), killed with SIGKILL, resumed with
//! `nas run --resume DIR`, and its results compared with an uninterrupted run of the same
//! config and seed: they must be identical (architecture, every metrics line, alpha history,
//! summary). Covered: DARTS, REA and random search over the NB201 table, SPOS and FairNAS.
use crate::support;

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
    let ck = nas_rundir::checkpoint::load(&killed).expect("the checkpoint of epoch 0");
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
        let ck = nas_rundir::checkpoint::load(&killed).unwrap();
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

/// One decoded TensorBoard event: step, scalars (tag, value) and whether it is a
/// `SessionLog START` (a purge point).
#[derive(Debug)]
struct Event {
    step: i64,
    scalars: Vec<(String, f32)>,
    version: Option<String>,
    session_start: bool,
}

fn read_varint(b: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*at];
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// The fields of a protobuf message: (field number, wire type, payload bytes or value).
fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>, u64)> {
    let mut at = 0;
    let mut out = vec![];
    while at < b.len() {
        let k = read_varint(b, &mut at);
        let (field, wire) = (k >> 3, k & 7);
        match wire {
            0 => {
                let v = read_varint(b, &mut at);
                out.push((field, wire, vec![], v));
            }
            1 => {
                out.push((field, wire, b[at..at + 8].to_vec(), 0));
                at += 8;
            }
            2 => {
                let n = read_varint(b, &mut at) as usize;
                out.push((field, wire, b[at..at + n].to_vec(), 0));
                at += n;
            }
            5 => {
                out.push((field, wire, b[at..at + 4].to_vec(), 0));
                at += 4;
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

/// Reads an event file, checking every record's framing and both masked CRCs.
fn read_events(path: &std::path::Path) -> Vec<Event> {
    use nas_runner::tensorboard::masked_crc32c;
    let b = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut events = vec![];
    while at < b.len() {
        let len_bytes = &b[at..at + 8];
        let n = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(&b[at + 8..at + 12], &masked_crc32c(len_bytes).to_le_bytes());
        let payload = &b[at + 12..at + 12 + n];
        assert_eq!(
            &b[at + 12 + n..at + 16 + n],
            &masked_crc32c(payload).to_le_bytes()
        );
        at += 16 + n;
        let mut e = Event {
            step: 0,
            scalars: vec![],
            version: None,
            session_start: false,
        };
        for (f, _, data, v) in fields(payload) {
            match f {
                2 => e.step = v as i64,
                3 => e.version = Some(String::from_utf8(data).unwrap()),
                5 => {
                    for (_, _, value, _) in fields(&data) {
                        let vf = fields(&value);
                        let tag = String::from_utf8(vf[0].2.clone()).unwrap();
                        let x = f32::from_le_bytes(vf[1].2.clone().try_into().unwrap());
                        e.scalars.push((tag, x));
                    }
                }
                6 => e.session_start = fields(&data).iter().any(|(f, _, _, v)| *f == 1 && *v == 1),
                _ => {}
            }
        }
        events.push(e);
    }
    events
}

/// `output.tensorboard`: a run killed mid-epoch and resumed leaves two event files whose
/// series, merged as TensorBoard merges them (a `SessionLog START` at step s drops the earlier
/// files' points at steps >= s), equal the run's own metrics.jsonl and alpha history.
#[test]
fn tensorboard_events_of_a_killed_and_resumed_run_match_its_metrics() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("tb");
    let mut args = darts_args(2, &["--out", run.to_str().unwrap()]);
    args.extend(["--set".to_string(), "output.tensorboard=true".to_string()]);
    run_and_kill_at(&strs(&args), "step:6", LIMIT);
    let o = nas(&["run", "--resume", run.to_str().unwrap()]);
    expect_exit(&o, 0, "resume");
    let mut files: Vec<_> = std::fs::read_dir(run.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one event file per process: {files:?}");
    // Merge in creation order with TensorBoard's purge rule.
    let mut series: std::collections::BTreeMap<String, Vec<(i64, f32)>> = Default::default();
    let mut starts = vec![];
    for f in &files {
        let events = read_events(f);
        assert_eq!(events[0].version.as_deref(), Some("brain.Event:2"));
        for e in events {
            if e.session_start {
                starts.push(e.step);
                for s in series.values_mut() {
                    s.retain(|(step, _)| *step < e.step);
                }
            }
            for (tag, v) in e.scalars {
                series.entry(tag).or_default().push((e.step, v));
            }
        }
    }
    // The checkpoint of epoch 0 was taken after global step 4: the resumed process writes from
    // step 5 on and purges the killed process's points from there.
    assert_eq!(starts, vec![5]);
    let want: Vec<(i64, f32)> = metric_lines(&run, "step")
        .iter()
        .map(|l| {
            (
                l["global_step"].as_i64().unwrap(),
                l["train_loss"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    assert_eq!(want.len(), 8);
    assert_eq!(series["step/train_loss"], want);
    let epochs: Vec<f32> = metric_lines(&run, "epoch")
        .iter()
        .map(|l| l["valid_acc"].as_f64().unwrap() as f32)
        .collect();
    let got: Vec<f32> = series["epoch/valid_acc"].iter().map(|p| p.1).collect();
    assert_eq!(got, epochs);
    // The alpha history: the initial weights and each epoch's, first option of the first
    // decision, from every line of alpha_history.jsonl.
    let alphas: Vec<f32> = read(&run, "alpha_history.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["weights"][0][0].as_f64().unwrap() as f32
        })
        .collect();
    // Decision 0 of the DARTS space is edge 0 -> node 2 of the normal cell; option 0 is `none`.
    let first_edge: Vec<f32> = series["alpha/normal.2<-0/none"]
        .iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(first_edge, alphas);
}
