//! ENAS killed mid-epoch (SIGKILL at a known step, see `resume.rs`) and resumed with
//! `nas run --resume` ends exactly like an uninterrupted run: same architecture, every
//! metrics line (rewards, baseline, controller updates) and summary.
use crate::support;

use std::time::Duration;

use support::*;

#[test]
fn enas_killed_mid_epoch_resumes_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let sets = [
        "budget.epochs=3",
        "budget.steps_per_epoch=4",
        "output.log_every=1",
        "data.params={limit_train: 300}",
        "space.params={channels: 4, layers: 3, retrain_channels: 8, retrain_layers: 3}",
        "strategy.params={controller_steps: 2, aggregate: 3, final_samples: 3, lstm_size: 8}",
    ];
    let args = |out: &std::path::Path| -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            "configs/experiments/enas-micro-digits.yaml".to_string(),
        ];
        for s in sets {
            a.push("--set".into());
            a.push(s.into());
        }
        a.push("--out".into());
        a.push(out.to_str().unwrap().into());
        a
    };
    let reference = d.path().join("reference");
    expect_exit(&nas(&strs(&args(&reference))), 0, "uninterrupted enas run");
    let killed = d.path().join("killed");
    run_and_kill_at(&strs(&args(&killed)), "step:6", Duration::from_secs(300));
    assert_eq!(metric_lines(&killed, "epoch").len(), 1);
    assert_eq!(metric_lines(&killed, "step").len(), 6);
    let o = nas(&["run", "--resume", killed.to_str().unwrap()]);
    expect_exit(&o, 0, "enas resume");
    assert_same_results(&reference, &killed);
    let last = metric_lines(&reference, "epoch").pop().unwrap();
    assert!(last.get("reward").is_some(), "{last}");
}
