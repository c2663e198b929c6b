//! `nas sweep --executor slurm` through a real Slurm (CI starts a one-node cluster with
//! `scripts/slurm-up.sh`): the same small sweep run locally and as a job array gives the
//! same `runs.csv` (wall times aside), a failing run is recorded while the others finish,
//! and a resubmission submits only the runs that are not complete. Skipped, with a message,
//! where `sbatch` is not installed.
use crate::support;

use std::path::Path;
use std::process::Command;

use support::*;

fn slurm_here() -> bool {
    Command::new("sbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

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

#[test]
fn local_and_slurm_executors_give_the_same_runs() {
    if !slurm_here() {
        eprintln!(
            "skipped: `sbatch` is not installed (scripts/slurm-up.sh starts a one-node Slurm)"
        );
        return;
    }
    let Some(table) = nb201_table() else {
        eprintln!("skipped: the NB201 table (../shared/data/nb201) is not here");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("base.yaml"),
        format!(
            "schema: 1\nspace: {{name: nb201}}\nstrategy: {{name: random}}\n\
             estimator: {{name: nb201_table, params: {{path: {}}}}}\n\
             budget: {{epochs: 2, steps_per_epoch: 5}}\noutput: {{log_every: 1}}\n",
            table.display()
        ),
    )
    .unwrap();
    let file = d.path().join("sweep.yaml");
    std::fs::write(
        &file,
        "schema: 1\nname: slurm\nbase: base.yaml\nmatrix:\n  strategies:\n\
         \x20   - {label: random, strategy: {name: random, params: {queries: 10}}}\n\
         \x20   - {label: rea, strategy: {name: rea, params: {queries: 10, population: 4, sample_size: 2}}}\n\
         \x20   - {label: broken, strategy: {name: rea, params: {populaton: 4}}}\n\
         \x20 seeds: [0, 1]\njobs: 2\nreport: {metrics: [test_acc, queries]}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let local = d.path().join("local");
    let o = nas(&["-q", "sweep", f, "--out", local.to_str().unwrap()]);
    expect_exit(&o, 1, "local sweep (two runs fail)");

    let slurm = d.path().join("slurm");
    let s = slurm.to_str().unwrap();
    let o = nas(&[
        "-q",
        "sweep",
        f,
        "--out",
        s,
        "--executor",
        "slurm",
        "--wait",
        "--time",
        "5",
    ]);
    let t = expect_exit(&o, 1, "slurm sweep (two runs fail)");
    assert!(t.contains("4 finished") && t.contains("2 failed"), "{t}");
    let script = read(&slurm, "slurm/sweep.sbatch");
    assert!(script.contains("#SBATCH --array=0,1,2,3,4,5%2"), "{script}");
    assert!(script.contains("#SBATCH --time=5"), "{script}");
    assert!(
        script.contains("--task-index \"$SLURM_ARRAY_TASK_ID\""),
        "{script}"
    );
    assert!(slurm.join("slurm/task-0.out").is_file());
    let index = json(&slurm, "sweep.json");
    let statuses: Vec<&str> = index["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["finished", "finished", "finished", "finished", "failed", "failed"]
    );
    assert!(index["runs"][4]["error"]
        .as_str()
        .unwrap()
        .contains("populaton"));

    let (a, b) = (runs_csv_without_time(&local), runs_csv_without_time(&slurm));
    assert_eq!(a.len(), 7);
    assert_eq!(
        a, b,
        "runs.csv differs between the executors (wall times aside)"
    );

    // Resubmitted: only the two failed runs are submitted again.
    let stamp = std::fs::metadata(slurm.join("000-random-s0/summary.json"))
        .unwrap()
        .modified()
        .unwrap();
    let o = nas(&[
        "-q",
        "sweep",
        f,
        "--out",
        s,
        "--executor",
        "slurm",
        "--wait",
    ]);
    let t = expect_exit(&o, 1, "resubmitted slurm sweep");
    assert!(t.contains("4 skipped") && t.contains("2 failed"), "{t}");
    let jobs = read(&slurm, "slurm/jobs.txt");
    let last = jobs.lines().last().unwrap();
    assert!(last.ends_with(" 4,5%2"), "{jobs}");
    assert_eq!(
        std::fs::metadata(slurm.join("000-random-s0/summary.json"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp
    );
    assert_eq!(runs_csv_without_time(&slurm), a);
}
