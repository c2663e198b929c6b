//! `nas sweep` and `nas report`.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_runner::report::{report_dir, Report};
use nas_runner::{Components, SweepOptions};

use crate::Cli;

/// Arguments of `nas sweep`.
#[derive(Args, Debug)]
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
    let opts = SweepOptions {
        out_dir: a.out.clone(),
        jobs: a.jobs,
        sets: a.sets.clone(),
        dry_run: a.dry_run,
        progress: !cli.quiet,
    };
    let out = nas_runner::run_sweep(&a.file, comps, &opts)?;
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

/// `nas report`.
pub fn report(a: &ReportArgs, comps: &Components) -> Result<i32> {
    let rep = report_dir(&a.dir, Some(comps))?;
    if let Report::Sweep(s) = &rep {
        println!("{}", s.table);
    }
    for f in rep.files() {
        println!("wrote {}", f.display());
    }
    Ok(0)
}
