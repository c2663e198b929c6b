//! A sweep: every planned run of a sweep file, several at once, into `DIR/<run id>/`, then
//! the report (`runs.csv`, `table.csv`, `report.md`, `plots/`).
//!
//! * Runs are spread over `jobs` worker threads (the sweep file's `jobs`, or
//!   [`SweepOptions::jobs`]); each run is an ordinary [`nas_runner::run_experiment`].
//! * A failed run (an error or a panic) is recorded in `sweep.json` and, where the run got
//!   that far, in its `summary.json`; the others still run (`on_failure: continue`, the
//!   default) or no new run starts (`on_failure: stop`).
//! * Started again, a run whose `summary.json` says `finished` and whose
//!   `config.resolved.yaml` equals the one planned now is skipped; a run that was
//!   interrupted (killed, or stopped by an error) continues from its last checkpoint; any
//!   other existing run directory is cleared and the run starts afresh (see
//!   [`crate::sweep_task`]).
//! * With a `retrain` block, each run then retrains the architecture it found
//!   ([`crate::sweep_retrain`]), equally resumable.
//! * [`Executor::Slurm`] submits the runs as one Slurm job array instead of running them on
//!   threads ([`crate::slurm`]).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use nas_config::{OnFailure, PlannedRun, Sweep};
use nas_core::{NasError, Result};

use crate::sweep_task::{finished_before, run_task, Start};
use nas_registry::Components;
use nas_report::runs::{IndexedRun, ReportSettings, SweepIndex, SWEEP_INDEX};
use nas_report::{write_sweep_report, SweepReport};
use nas_rundir::files::write_json;

/// How to run a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// The sweep directory (default `runs/<sweep name>`).
    pub out_dir: Option<PathBuf>,
    /// Runs at once; `None`: the sweep file's `jobs`.
    pub jobs: Option<usize>,
    /// `--set key=value` overrides applied to every run.
    pub sets: Vec<String>,
    /// Plan only: list the runs and whether each would run or be skipped; write nothing.
    pub dry_run: bool,
    /// Progress bars for the runs (only with one job at a time).
    pub progress: bool,
    /// Where the runs run.
    pub executor: Executor,
}

/// Where a sweep's runs run.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// On `jobs` threads of this process (the default).
    #[default]
    Local,
    /// As one Slurm job array (see [`crate::slurm`]).
    Slurm(crate::slurm::SlurmOptions),
}

/// What a sweep did.
#[derive(Debug)]
pub struct SweepOutcome {
    /// The sweep directory.
    pub dir: PathBuf,
    /// Every planned run with its status: `finished`, `failed`, `skipped` (finished in an
    /// earlier start), `not_started`; after a dry run `pending` (would run) or `skipped`.
    pub runs: Vec<IndexedRun>,
    /// The report (none after a dry run).
    pub report: Option<SweepReport>,
}

impl SweepOutcome {
    /// Runs whose status is `status`.
    pub fn count(&self, status: &str) -> usize {
        self.runs.iter().filter(|r| r.status == status).count()
    }
}

/// Loads a sweep file and plans its runs (every run's config is checked here).
pub fn plan(path: &Path, sets: &[String]) -> Result<(Sweep, Vec<PlannedRun>)> {
    let sweep = nas_config::load_sweep(path)?;
    let runs = nas_config::plan_sweep(path, &sweep, sets)?;
    Ok((sweep, runs))
}

/// The directory a sweep writes to.
pub fn sweep_dir(sweep: &Sweep, opts: &SweepOptions) -> PathBuf {
    opts.out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&sweep.name))
}

/// The value of every matrix axis of `sweep` in `run`'s experiment.
fn axes_of(sweep: &Sweep, run: &PlannedRun) -> BTreeMap<String, serde_json::Value> {
    let value = serde_json::to_value(&run.experiment).unwrap_or_default();
    sweep
        .matrix
        .axes
        .keys()
        .map(|k| {
            let v = nas_config::tree::get_path(&value, &nas_config::tree::split_path(k))
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            (k.clone(), v)
        })
        .collect()
}

/// Whether the run `run` of `sweep` in `dir` is complete: its search finished with the
/// planned config and, with a retrain stage, every retraining finished.
pub fn run_complete(dir: &Path, sweep: &Sweep, run: &PlannedRun) -> Result<bool> {
    let run_dir = dir.join(&run.id);
    if !finished_before(&run_dir, run)? {
        return Ok(false);
    }
    Ok(sweep.retrain.as_ref().is_none_or(|st| {
        st.seeds.iter().all(|s| {
            read_summary_status(&crate::sweep_retrain::retrain_dir(&run_dir, *s))
                .is_some_and(|x| x == "finished")
        })
    }))
}

/// The `status` of `dir/summary.json`, when it has one that parses.
pub fn read_summary_status(dir: &Path) -> Option<String> {
    let t = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&t).ok()?;
    v["status"].as_str().map(String::from)
}

/// The sweep's index before any run: every planned run, `skipped` when complete before,
/// else `pending`.
pub fn plan_index(
    path: &Path,
    sweep: &Sweep,
    planned: &[PlannedRun],
    dir: &Path,
    cpus_per_run: Option<f64>,
) -> Result<SweepIndex> {
    let mut index = SweepIndex {
        name: sweep.name.clone(),
        file: path.display().to_string(),
        report: ReportSettings {
            metrics: sweep.report.metrics.clone(),
            group_by: sweep.report.group_by.clone(),
        },
        runs: Vec::with_capacity(planned.len()),
        cpus_per_run,
    };
    for run in planned {
        let done = run_complete(dir, sweep, run)?;
        index.runs.push(IndexedRun {
            index: run.index,
            id: run.id.clone(),
            label: run.label.clone(),
            seed: run.seed,
            axes: axes_of(sweep, run),
            status: if done { "skipped" } else { "pending" }.into(),
            error: None,
        });
    }
    Ok(index)
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs the sweep file at `path` and writes its report.
pub fn run_sweep(path: &Path, comps: &Components, opts: &SweepOptions) -> Result<SweepOutcome> {
    let (sweep, planned) = plan(path, &opts.sets)?;
    let dir = sweep_dir(&sweep, opts);
    let jobs = opts.jobs.unwrap_or(sweep.jobs).max(1);
    let cpus = match &opts.executor {
        Executor::Local => std::thread::available_parallelism()
            .map(|n| n.get() as f64 / jobs as f64)
            .ok(),
        Executor::Slurm(s) => Some(s.cpus_per_task as f64),
    };
    let index = plan_index(path, &sweep, &planned, &dir, cpus)?;
    if opts.dry_run {
        // What a run checks before it trains: its plugins load (a failure stops the sweep
        // as it would stop every run, naming the run) and its strategy (a plugin's
        // included) decodes its params (a failure fails that run alone when the sweep runs,
        // as a real sweep records it and goes on: here it is a warning naming the run).
        for run in &planned {
            let c = nas_runner::plugins::components_for(&run.experiment, comps).map_err(
                |e| match e {
                    NasError::Config {
                        file,
                        location,
                        message,
                    } => NasError::Config {
                        file,
                        location,
                        message: format!("run {}: {message}", run.id),
                    },
                    other => NasError::Config {
                        file: path.display().to_string(),
                        location: None,
                        message: format!("run {}: {other}", run.id),
                    },
                },
            )?;
            if let Err(e) = nas_registry::build_strategy(&run.experiment, &c) {
                tracing::warn!("run {} will fail: {e}", run.id);
            }
        }
        return Ok(SweepOutcome {
            dir,
            runs: index.runs,
            report: None,
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    write_json(&dir.join(SWEEP_INDEX), &index)?;
    if let Executor::Slurm(s) = &opts.executor {
        return crate::slurm::run_on_slurm(
            path, &sweep, &planned, &dir, index, jobs, opts, s, comps,
        );
    }
    run_local(&sweep, &planned, &dir, index, jobs, comps, opts)
}

/// Runs the pending runs of `index` on `jobs` threads, then writes the report.
fn run_local(
    sweep: &Sweep,
    planned: &[PlannedRun],
    dir: &Path,
    index: SweepIndex,
    jobs: usize,
    comps: &Components,
    opts: &SweepOptions,
) -> Result<SweepOutcome> {
    let index_path = dir.join(SWEEP_INDEX);
    let todo: Vec<usize> = (0..planned.len())
        .filter(|&i| index.runs[i].status == "pending")
        .collect();
    let skipped = planned.len() - todo.len();
    if skipped > 0 {
        tracing::info!(
            "sweep `{}`: {} of {} runs finished before, skipping them",
            sweep.name,
            skipped,
            planned.len()
        );
    }
    tracing::info!(
        "sweep `{}`: {} runs, {} at a time -> {}",
        sweep.name,
        todo.len(),
        jobs.min(todo.len().max(1)),
        dir.display()
    );
    let shared = Mutex::new(index);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let total = todo.len();
    let set_status = |i: usize, status: &str, error: Option<String>| -> Result<()> {
        let mut idx = shared
            .lock()
            .map_err(|_| NasError::Other("sweep index lock poisoned".into()))?;
        idx.runs[i].status = status.into();
        idx.runs[i].error = error;
        write_json(&index_path, &*idx)
    };
    let worker = || -> Result<()> {
        loop {
            let k = next.fetch_add(1, Ordering::SeqCst);
            let Some(&i) = todo.get(k) else {
                return Ok(());
            };
            let run = &planned[i];
            if stop.load(Ordering::SeqCst) {
                set_status(i, "not_started", None)?;
                continue;
            }
            set_status(i, "running", None)?;
            let start = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_task(dir, sweep, run, comps, opts.progress && jobs == 1)
            }));
            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
            let secs = start.elapsed().as_secs_f64();
            match result {
                Ok(Ok((how, s))) => {
                    let shown: Vec<String> = ["test_acc", "valid_acc", "queries"]
                        .iter()
                        .filter_map(|m| {
                            s.final_metrics
                                .get(*m)
                                .and_then(|v| v.as_f64())
                                .map(|v| format!("{m}={v:.4}"))
                        })
                        .collect();
                    let how = match how {
                        Start::Resumed => " (resumed from its checkpoint)",
                        Start::Skipped => " (search finished before)",
                        Start::Fresh => "",
                    };
                    tracing::info!(
                        "[{n}/{total}] {}: finished in {secs:.1} s{how} {}",
                        run.id,
                        shown.join(" ")
                    );
                    set_status(i, "finished", None)?;
                }
                Ok(Err(e)) => {
                    tracing::error!("[{n}/{total}] {}: failed: {e}", run.id);
                    set_status(i, "failed", Some(e.to_string()))?;
                    if sweep.on_failure == OnFailure::Stop {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                Err(p) => {
                    let msg = format!("panicked: {}", panic_message(p.as_ref()));
                    tracing::error!("[{n}/{total}] {}: {msg}", run.id);
                    set_status(i, "failed", Some(msg))?;
                    if sweep.on_failure == OnFailure::Stop {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            }
        }
    };
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs.min(todo.len()).max(1))
            .map(|_| s.spawn(worker))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|p| Err(NasError::Other(panic_message(p.as_ref()))))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let index = shared
        .into_inner()
        .map_err(|_| NasError::Other("sweep index lock poisoned".into()))?;
    let report = write_sweep_report(dir, None, Some(comps))?;
    Ok(SweepOutcome {
        dir: dir.to_path_buf(),
        runs: index.runs,
        report: Some(report),
    })
}
