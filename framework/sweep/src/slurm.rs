//! The Slurm executor of `nas sweep`: one job array, one array task per run that is not
//! complete yet (task `i` = run `i` of the plan), at most `jobs` at once (`--array=...%jobs`).
//!
//! Each task runs `nas sweep FILE --out DIR --task-index $SLURM_ARRAY_TASK_ID`, which is
//! exactly what a local worker thread does for that run ([`crate::sweep_task::run_task`]):
//! skip a finished search, resume an interrupted one from its checkpoint, else start it;
//! then the retrain stage. Tasks never write `sweep.json`: each run's own files say how it
//! went, so a failed task (an error, a crash, a time limit) is seen there and the other
//! tasks go on. The job script is written to `DIR/slurm/sweep.sbatch` so that it can be
//! read and submitted by hand; task logs go to `DIR/slurm/task-<i>.out`.
//!
//! With `wait`, the sweep polls `squeue` until the array has left the queue, records every
//! run's status in `sweep.json` and writes the report; without it, `nas report DIR` writes
//! the report whenever the runs are done. Submitting again submits only the runs that are
//! not complete.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nas_config::{PlannedRun, Sweep};
use nas_core::{NasError, Result};

use crate::sweep::{read_summary_status, run_complete, SweepOptions, SweepOutcome};
use crate::sweep_task::{run_task, Start};
use nas_registry::Components;
use nas_report::runs::{SweepIndex, SWEEP_INDEX};
use nas_report::write_sweep_report;
use nas_rundir::files::{write_atomic, write_json};

/// Settings of the Slurm executor.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The `nas` binary every task runs (normally the running one).
    pub nas_exe: PathBuf,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `2:00:00`).
    pub time: Option<String>,
    /// `--mem` per task (e.g. `4G`).
    pub mem: Option<String>,
    /// `--gres` (e.g. `gpu:1`).
    pub gres: Option<String>,
    /// `--cpus-per-task` (default 1).
    pub cpus_per_task: usize,
    /// Wait for the array to end, then write the report.
    pub wait: bool,
    /// Seconds between two `squeue` polls while waiting.
    pub poll_seconds: f64,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            nas_exe: PathBuf::from("nas"),
            partition: None,
            time: None,
            mem: None,
            gres: None,
            cpus_per_task: 1,
            wait: false,
            poll_seconds: 2.0,
        }
    }
}

fn slurm_error(what: &str, message: impl Into<String>) -> NasError {
    NasError::Other(format!("slurm: {what}: {}", message.into()))
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| NasError::io(p, e))
}

/// `--array` of the tasks: indices joined by commas, `%jobs` as the throttle.
fn array_spec(tasks: &[usize], jobs: usize) -> String {
    let list: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
    format!("{}%{}", list.join(","), jobs.max(1))
}

/// The job script of the array running `tasks` of the sweep `file` into `dir`.
pub fn job_script(
    file: &Path,
    sweep: &Sweep,
    dir: &Path,
    sets: &[String],
    tasks: &[usize],
    jobs: usize,
    s: &SlurmOptions,
) -> Result<String> {
    let file = absolute(file)?;
    let dir = absolute(dir)?;
    let cwd = std::env::current_dir().map_err(|e| NasError::io(Path::new("."), e))?;
    let logs = dir.join("slurm");
    let mut t = String::from("#!/bin/bash\n");
    t.push_str(&format!(
        "# Written by `nas sweep {} --executor slurm`: one array task per run of sweep `{}`\n\
         # that is not complete (task i = run i of the plan). Submit by hand with\n\
         #   sbatch {}\n",
        file.display(),
        sweep.name,
        logs.join("sweep.sbatch").display()
    ));
    t.push_str(&format!("#SBATCH --job-name=nas-{}\n", sweep.name));
    t.push_str(&format!("#SBATCH --array={}\n", array_spec(tasks, jobs)));
    t.push_str(&format!(
        "#SBATCH --output={}\n",
        logs.join("task-%a.out").display()
    ));
    t.push_str(&format!(
        "#SBATCH --cpus-per-task={}\n",
        s.cpus_per_task.max(1)
    ));
    for (key, v) in [
        ("partition", &s.partition),
        ("time", &s.time),
        ("mem", &s.mem),
        ("gres", &s.gres),
    ] {
        if let Some(v) = v {
            t.push_str(&format!("#SBATCH --{key}={v}\n"));
        }
    }
    t.push_str("set -euo pipefail\n");
    t.push_str(&format!("cd {}\n", sh_quote(&cwd.display().to_string())));
    let mut cmd = vec![
        sh_quote(&s.nas_exe.display().to_string()),
        "sweep".into(),
        sh_quote(&file.display().to_string()),
        "--out".into(),
        sh_quote(&dir.display().to_string()),
        "--task-index".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
    ];
    for set in sets {
        cmd.push("--set".into());
        cmd.push(sh_quote(set));
    }
    t.push_str(&format!("exec {}\n", cmd.join(" ")));
    Ok(t)
}

/// Submits `script` with `sbatch --parsable`; returns the job id.
fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| {
            slurm_error(
                "sbatch",
                format!("cannot run it ({e}); is Slurm installed?"),
            )
        })?;
    if !out.status.success() {
        return Err(slurm_error(
            "sbatch",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        return Err(slurm_error("sbatch", "printed no job id"));
    }
    Ok(id)
}

/// Waits until job `id` (all its array tasks) has left the queue.
fn wait_for(id: &str, poll: Duration) -> Result<()> {
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-j", id, "-o", "%i"])
            .output()
            .map_err(|e| slurm_error("squeue", e.to_string()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // An unknown job id (long gone) is an error for squeue, and means: done.
        if !out.status.success() || text.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// What the files of run `run` say about it after its task ended: `finished`, or `failed`
/// with the reason.
fn task_result(dir: &Path, sweep: &Sweep, run: &PlannedRun) -> Result<(String, Option<String>)> {
    if run_complete(dir, sweep, run)? {
        return Ok(("finished".into(), None));
    }
    let run_dir = dir.join(&run.id);
    let log = format!(
        "see {}",
        dir.join("slurm")
            .join(format!("task-{}.out", run.index))
            .display()
    );
    let summary = nas_rundir::read_summary(&run_dir).ok().flatten();
    let why = match summary {
        Some(s) if s.status != nas_rundir::RunStatus::Finished => {
            format!("{} ({log})", s.stop_reason)
        }
        Some(_) => {
            let bad = sweep.retrain.as_ref().and_then(|st| {
                st.seeds.iter().find(|seed| {
                    read_summary_status(&crate::sweep_retrain::retrain_dir(&run_dir, **seed))
                        .is_none_or(|x| x != "finished")
                })
            });
            match bad {
                Some(seed) => format!("retraining seed {seed} did not finish ({log})"),
                None => format!("finished with another config ({log})"),
            }
        }
        None => format!("the Slurm task ended before the run did ({log})"),
    };
    Ok(("failed".into(), Some(why)))
}

/// Submits the pending runs of `index` as one job array and, with `s.wait`, waits for it and
/// writes the report.
#[allow(clippy::too_many_arguments)]
pub fn run_on_slurm(
    file: &Path,
    sweep: &Sweep,
    planned: &[PlannedRun],
    dir: &Path,
    mut index: SweepIndex,
    jobs: usize,
    opts: &SweepOptions,
    s: &SlurmOptions,
    comps: &Components,
) -> Result<SweepOutcome> {
    let tasks: Vec<usize> = index
        .runs
        .iter()
        .filter(|r| r.status == "pending")
        .map(|r| r.index)
        .collect();
    let logs = dir.join("slurm");
    std::fs::create_dir_all(&logs).map_err(|e| NasError::io(&logs, e))?;
    if !tasks.is_empty() {
        let script = logs.join("sweep.sbatch");
        let text = job_script(file, sweep, dir, &opts.sets, &tasks, jobs, s)?;
        write_atomic(&script, text.as_bytes())?;
        let id = submit(&script)?;
        tracing::info!(
            "sweep `{}`: submitted job array {id} ({} runs, {} at a time); script {}",
            sweep.name,
            tasks.len(),
            jobs,
            script.display()
        );
        let mut jobs_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("jobs.txt"))
            .map_err(|e| NasError::io(&logs, e))?;
        std::io::Write::write_all(
            &mut jobs_file,
            format!("{id} {}\n", array_spec(&tasks, jobs)).as_bytes(),
        )
        .map_err(|e| NasError::io(&logs, e))?;
        if !s.wait {
            for r in index.runs.iter_mut().filter(|r| r.status == "pending") {
                r.status = "submitted".into();
            }
            write_json(&dir.join(SWEEP_INDEX), &index)?;
            return Ok(SweepOutcome {
                dir: dir.to_path_buf(),
                runs: index.runs,
                report: None,
            });
        }
        wait_for(&id, Duration::from_secs_f64(s.poll_seconds.max(0.1)))?;
    }
    for r in index.runs.iter_mut().filter(|r| r.status == "pending") {
        let (status, error) = task_result(dir, sweep, &planned[r.index])?;
        r.status = status;
        r.error = error;
    }
    write_json(&dir.join(SWEEP_INDEX), &index)?;
    let report = write_sweep_report(dir, None, Some(comps))?;
    Ok(SweepOutcome {
        dir: dir.to_path_buf(),
        runs: index.runs,
        report: Some(report),
    })
}

/// One array task: run `task` of the sweep file `file` (plan order) into `dir`, as a local
/// worker would ([`run_task`]). `sweep.json` is left alone (the submitting sweep writes it).
pub fn run_sweep_task(
    file: &Path,
    sets: &[String],
    dir: Option<&Path>,
    task: usize,
    comps: &Components,
) -> Result<(Start, nas_rundir::RunSummary)> {
    let (sweep, planned) = crate::sweep::plan(file, sets)?;
    let run = planned.get(task).ok_or_else(|| NasError::Config {
        file: file.display().to_string(),
        location: None,
        message: format!(
            "--task-index {task}: the sweep plans {} runs (0 to {})",
            planned.len(),
            planned.len().saturating_sub(1)
        ),
    })?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name));
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    run_task(&dir, &sweep, run, comps, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_and_quoting() {
        assert_eq!(array_spec(&[0, 2, 5], 2), "0,2,5%2");
        assert_eq!(array_spec(&[3], 0), "3%1");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
