//! One planned run of a sweep, as both executors run it (the local worker threads and a
//! Slurm array task): the search, skipped when it finished before, continued from its
//! checkpoint when it was interrupted, else started afresh; then the retrain stage of the
//! sweep file for the architecture it found (see [`crate::sweep_retrain`]).
use std::path::Path;

use nas_config::{PlannedRun, Sweep};
use nas_core::{NasError, Result};

use nas_registry::Components;
use nas_rundir::read_summary;
use nas_rundir::RunSummary;
use nas_runner::run::{run_resumable, RunOptions};

/// How a search run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// It had finished before with the same config: nothing was run.
    Skipped,
    /// It continued from the checkpoint of an interrupted start.
    Resumed,
    /// It started from scratch.
    Fresh,
}

/// The resolved config of `run` as the run writes it (plugin paths absolute, see
/// [`nas_runner::plugins::with_absolute_plugins`]).
fn planned_yaml(run: &PlannedRun) -> Result<String> {
    nas_config::to_yaml(&nas_runner::plugins::with_absolute_plugins(&run.experiment))
}

/// Whether `dir` was written for exactly `run`'s resolved config.
fn same_config(dir: &Path, run: &PlannedRun) -> Result<bool> {
    let saved = std::fs::read_to_string(dir.join("config.resolved.yaml")).unwrap_or_default();
    Ok(saved == planned_yaml(run)?)
}

/// Whether `dir` holds a finished run of exactly `run`'s resolved config.
pub fn finished_before(dir: &Path, run: &PlannedRun) -> Result<bool> {
    let Some(s) = read_summary(dir).ok().flatten() else {
        return Ok(false);
    };
    if s.status != nas_rundir::RunStatus::Finished {
        return Ok(false);
    }
    if !same_config(dir, run)? {
        tracing::warn!(
            "{}: finished before with another config; running it again",
            run.id
        );
        return Ok(false);
    }
    Ok(true)
}

/// The checkpoint an interrupted start of `run` left in `dir`, when there is one that
/// belongs to `run`'s config and verifies; `None` otherwise (the run starts afresh).
fn resumable_checkpoint(
    dir: &Path,
    run: &PlannedRun,
) -> Option<nas_rundir::checkpoint::Checkpoint> {
    if !dir.join("config.resolved.yaml").is_file() || !same_config(dir, run).ok()? {
        return None;
    }
    let ck = match nas_rundir::checkpoint::load(dir) {
        Ok(ck) => ck,
        Err(e) => {
            tracing::warn!("{}: no usable checkpoint ({e}); starting afresh", run.id);
            return None;
        }
    };
    let exp = nas_runner::plugins::with_absolute_plugins(&run.experiment);
    let file = dir.join("config.resolved.yaml");
    match nas_rundir::checkpoint::check_config(&ck, &exp, &file) {
        Ok(()) => Some(ck),
        Err(e) => {
            tracing::warn!("{}: {e}; starting afresh", run.id);
            None
        }
    }
}

/// Runs the search of `run` into `dir`: skipped when it finished before with the same
/// config, continued from its checkpoint when an earlier start was interrupted (killed,
/// or stopped by an error after a checkpoint), else started afresh in a cleared `dir`.
pub fn search(
    dir: &Path,
    run: &PlannedRun,
    comps: &Components,
    progress: bool,
) -> Result<(Start, RunSummary)> {
    if finished_before(dir, run)? {
        let s = read_summary(dir)?
            .ok_or_else(|| NasError::data(dir.join("summary.json"), "vanished"))?;
        return Ok((Start::Skipped, s));
    }
    let opts = RunOptions {
        out_dir: Some(dir.to_path_buf()),
        progress,
    };
    if let Some(ck) = resumable_checkpoint(dir, run) {
        tracing::info!(
            "{}: resuming from its checkpoint ({} of {} epochs done)",
            run.id,
            ck.meta.progress.next_epoch,
            run.experiment.budget.epochs
        );
        // A stale summary (e.g. `failed`) is replaced when the resumed run ends.
        let s = run_resumable(&run.experiment, comps, &opts, Some(ck))?;
        return Ok((Start::Resumed, s));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| NasError::io(dir, e))?;
    }
    let s = run_resumable(&run.experiment, comps, &opts, None)?;
    Ok((Start::Fresh, s))
}

/// Runs one planned run of `sweep` completely: its search (see [`search`]) and then, when
/// the sweep file has a `retrain` block, every retraining of the architecture it found.
/// Returns how the search started and its summary; a failed retraining is an error.
pub fn run_task(
    sweep_dir: &Path,
    sweep: &Sweep,
    run: &PlannedRun,
    comps: &Components,
    progress: bool,
) -> Result<(Start, RunSummary)> {
    let dir = sweep_dir.join(&run.id);
    let (start, summary) = search(&dir, run, comps, progress)?;
    if let Some(stage) = &sweep.retrain {
        crate::sweep_retrain::retrain_run(&dir, run, stage, comps)?;
    }
    Ok((start, summary))
}
