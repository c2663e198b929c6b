//! `nas sweep` and `nas report`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_registry::Components;
use nas_report::{report_dir, Report};
use nas_sweep::slurm::SlurmOptions;
use nas_sweep::sweep::Executor;
use nas_sweep::SweepOptions;

use crate::Cli;

/// Arguments of `nas sweep`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// Sweep YAML (a base experiment, a matrix, excludes, jobs, a report block).
    pub file: PathBuf,
    /// Sweep directory (default `runs/<sweep name>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Runs at once (default: the sweep file's `jobs`).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// List the runs (and which would be skipped as finished) without running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Override a key of every run: `--set budget.epochs=3` (value parsed as YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Where the runs run: `local` (threads of this process) or `slurm` (one job array).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// Slurm: `--partition` of the job array.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: `--time` limit of each task (e.g. `2:00:00`).
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: `--mem` of each task (e.g. `4G`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm: `--gres` of each task (e.g. `gpu:1`).
    #[arg(long)]
    pub gres: Option<String>,
    /// Slurm: `--cpus-per-task`.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// Slurm: wait for the job array to end, then write the report.
    #[arg(long)]
    pub wait: bool,
    /// Run only the run with this index (plan order) into the sweep directory, as one task
    /// of a Slurm job array does; writes no `sweep.json` and no report.
    #[arg(long, value_name = "I")]
    pub task_index: Option<usize>,
}

/// Where a sweep's runs run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Threads of this process.
    Local,
    /// One Slurm job array (`sbatch`).
    Slurm,
}

/// Arguments of `nas report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A sweep directory (with `sweep.json`), a family directory (`family.json`, from
    /// `nas family`) or a run directory (with `summary.json`).
    pub dir: PathBuf,
}

/// `nas sweep`: exit code 0 when every run finished (or was finished before), 1 otherwise.
pub fn sweep(cli: &Cli, a: &SweepArgs, comps: &Components) -> Result<i32> {
    if a.jobs == Some(0) {
        anyhow::bail!(nas_core::NasError::Config {
            file: "--jobs".into(),
            location: None,
            message: "`--jobs` must be at least 1".into(),
        });
    }
    if let Some(i) = a.task_index {
        return task(a, i, comps);
    }
    let executor = match a.executor {
        ExecutorKind::Local => Executor::Local,
        ExecutorKind::Slurm => Executor::Slurm(SlurmOptions {
            nas_exe: std::env::current_exe()?,
            partition: a.partition.clone(),
            time: a.time.clone(),
            mem: a.mem.clone(),
            gres: a.gres.clone(),
            cpus_per_task: a.cpus_per_task.max(1),
            wait: a.wait,
            ..SlurmOptions::default()
        }),
    };
    let opts = SweepOptions {
        out_dir: a.out.clone(),
        jobs: a.jobs,
        sets: a.sets.clone(),
        dry_run: a.dry_run,
        progress: !cli.quiet,
        executor,
    };
    let out = nas_sweep::run_sweep(&a.file, comps, &opts)?;
    if out.report.is_none() && !a.dry_run {
        println!(
            "submitted {} runs to Slurm (script: {}); when they are done: nas report {}",
            out.count("submitted"),
            out.dir.join("slurm/sweep.sbatch").display(),
            out.dir.display()
        );
        return Ok(0);
    }
    if a.dry_run {
        println!("sweep directory: {}", out.dir.display());
        println!("{:<40} {:<14} {:>6}  would", "run", "label", "seed");
        for r in &out.runs {
            let what = if r.status == "skipped" {
                "skip (finished)"
            } else {
                "run"
            };
            println!("{:<40} {:<14} {:>6}  {what}", r.id, r.label, r.seed);
        }
        println!(
            "{} runs: {} to run, {} finished before",
            out.runs.len(),
            out.count("pending"),
            out.count("skipped")
        );
        return Ok(0);
    }
    if let Some(rep) = &out.report {
        println!("{}", rep.table);
    }
    println!(
        "{} runs: {} finished, {} skipped (finished before), {} failed, {} not started",
        out.runs.len(),
        out.count("finished"),
        out.count("skipped"),
        out.count("failed"),
        out.count("not_started")
    );
    for r in out.runs.iter().filter(|r| r.status == "failed") {
        println!(
            "  failed: {}: {}",
            r.id,
            r.error.as_deref().unwrap_or("(no message)")
        );
    }
    println!("report: {}", out.dir.join("report.md").display());
    Ok(if out.count("failed") + out.count("not_started") > 0 {
        1
    } else {
        0
    })
}

/// `nas sweep FILE --task-index I`: one run of the sweep (a Slurm array task).
fn task(a: &SweepArgs, i: usize, comps: &Components) -> Result<i32> {
    match nas_sweep::slurm::run_sweep_task(&a.file, &a.sets, a.out.as_deref(), i, comps) {
        Ok((start, s)) => {
            println!("run {i}: {} ({start:?})", s.status);
            Ok(0)
        }
        Err(e @ nas_core::NasError::Config { .. }) => Err(e.into()),
        Err(e) => {
            eprintln!("run {i} failed: {e}");
            Ok(1)
        }
    }
}

/// `nas report`: a DARTS-CC family directory (`nas family`) gets the family's report, any
/// other directory the report of `nas-report`.
pub fn report(a: &ReportArgs, comps: &Components) -> Result<i32> {
    let files = if nas_darts_cc_family::is_family_dir(&a.dir) {
        nas_darts_cc_family::write_family_report(&a.dir)?.files
    } else {
        let rep = report_dir(&a.dir, Some(comps))?;
        if let Report::Sweep(s) = &rep {
            println!("{}", s.table);
        }
        rep.files().to_vec()
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(0)
}
