//! One run of an experiment: its directory, `config.resolved.yaml` and `summary.json`
//! around the search itself ([`crate::run_loop::RunLoop`]).
use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_config::Experiment;
use nas_core::{NasError, Result};
use nas_registry::Components;
use nas_rundir::checkpoint::Checkpoint;
use nas_rundir::files::{write_atomic, write_json, TextLog};
use nas_rundir::{RunStatus, RunSummary};

use crate::run_loop::RunLoop;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run directory (else `output.dir`, else `runs/<name>`).
    pub out_dir: Option<PathBuf>,
    /// Show progress bars (they hide themselves when stderr is not a terminal).
    pub progress: bool,
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The run directory an experiment writes to.
pub fn run_dir(exp: &Experiment, opts: &RunOptions) -> PathBuf {
    opts.out_dir
        .clone()
        .or_else(|| exp.output.dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("runs").join(&exp.name))
}

/// Runs `exp` and writes its run directory. On failure, `summary.json` records the error
/// and the error is returned.
pub fn run_experiment(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
) -> Result<RunSummary> {
    run_resumable(exp, comps, opts, None)
}

/// [`run_experiment`], or, with a checkpoint (see [`crate::resume::resume_experiment`]),
/// its continuation from that checkpoint.
pub fn run_resumable(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
    resume: Option<Checkpoint>,
) -> Result<RunSummary> {
    // Plugin paths made absolute: `config.resolved.yaml` (and a resume from it) finds them.
    let exp = &*crate::plugins::with_absolute_plugins(exp);
    let dir = run_dir(exp, opts);
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    write_atomic(
        &dir.join("config.resolved.yaml"),
        nas_config::to_yaml(exp)?.as_bytes(),
    )?;
    let start = Instant::now();
    let mut summary = RunSummary {
        status: RunStatus::Running,
        stop_reason: String::new(),
        name: exp.name.clone(),
        strategy: exp.strategy.name.clone(),
        space: exp.space.name.clone(),
        seed: exp.seed,
        architecture: None,
        choices: None,
        params: None,
        flops: None,
        valid_acc: None,
        final_metrics: Default::default(),
        architectures: vec![],
        epochs: 0,
        wall_time_s: 0.0,
        git_revision: git_revision(),
        rustc: env!("NAS_RUSTC_VERSION").into(),
        device: exp.device.to_string(),
    };
    // Plugins named by the experiment are loaded before anything else is built.
    let result = crate::plugins::components_for(exp, comps)
        .and_then(|c| search(exp, &c, opts, &dir, &mut summary, resume.as_ref()));
    summary.wall_time_s = start.elapsed().as_secs_f64()
        + resume.as_ref().map_or(0.0, |c| c.meta.progress.wall_time_s);
    match &result {
        Ok(reason) => {
            summary.status = RunStatus::Finished;
            summary.stop_reason = reason.clone();
        }
        Err(e) => {
            summary.status = RunStatus::Failed;
            summary.stop_reason = e.to_string();
            if let NasError::NonFinite { quantity, .. } = e {
                let hint = crate::resume::non_finite_hint(exp, comps, &dir, quantity);
                summary.stop_reason = format!("{e}; {hint}");
                if let Ok(mut log) = TextLog::open(&dir.join("log.txt")) {
                    let _ = log.line(&format!("error: {e}\n{hint}"));
                }
            }
        }
    }
    write_json(&dir.join("summary.json"), &summary)?;
    result.map(|_| summary)
}

fn search(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
    dir: &Path,
    summary: &mut RunSummary,
    resume: Option<&Checkpoint>,
) -> Result<String> {
    // Debug-level spans: with `-v` every log line and profiler names the run, the epoch and
    // the step it belongs to; at the default level they cost nothing and print nothing.
    let _run_span = tracing::debug_span!("run", name = %exp.name).entered();
    RunLoop::build(exp, comps, opts, dir, resume)?.run(summary)
}
