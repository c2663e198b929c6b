//! `nas run`: a new run from an experiment file, or `--resume DIR` to continue one.
use std::path::Path;

use anyhow::Result;
use nas_core::NasError;
use nas_registry::Components;
use nas_rundir::RunSummary;
use nas_runner::RunOptions;

use crate::Cli;

/// Runs (or resumes) a search and prints its result; returns the exit code. A run stopped
/// by a non-finite loss or gradient prints the error and how to resume (exit code 1).
pub fn run(
    cli: &Cli,
    comps: &Components,
    config: Option<&Path>,
    sets: &[String],
    out: Option<&Path>,
    resume: Option<&Path>,
) -> Result<i32> {
    let opts = RunOptions {
        out_dir: out.map(Path::to_path_buf),
        progress: !cli.quiet,
    };
    let (dir, result) = match (resume, config) {
        (Some(dir), _) => {
            tracing::info!("resuming {}", dir.display());
            let r = nas_runner::resume_experiment(dir, sets, comps, &opts);
            (dir.to_path_buf(), r)
        }
        (None, Some(config)) => {
            let exp = nas_config::load_experiment(config, sets).map_err(|e| match e {
                // An experiment file that cannot be read is a usage error (exit code 2).
                NasError::Io { path, source } if Path::new(&path) == config => NasError::Config {
                    file: path,
                    location: None,
                    message: format!("cannot read the experiment file: {source}"),
                },
                e => e,
            })?;
            let dir = nas_runner::run::run_dir(&exp, &opts);
            tracing::info!("run `{}` -> {}", exp.name, dir.display());
            let r = nas_runner::run_experiment(&exp, comps, &opts);
            (dir, r)
        }
        (None, None) => anyhow::bail!("`nas run` needs an experiment file or `--resume DIR`"),
    };
    match result {
        Ok(s) => {
            print_summary(&s, &dir);
            Ok(0)
        }
        Err(e @ NasError::NonFinite { .. }) => {
            eprintln!("error: {e}");
            // The config that ran (with a resume's overrides) is the run's resolved one.
            let resolved = nas_config::load_experiment(&dir.join("config.resolved.yaml"), &[]);
            if let (NasError::NonFinite { quantity, .. }, Ok(exp)) = (&e, resolved) {
                eprintln!(
                    "hint: {}",
                    nas_runner::resume::non_finite_hint(&exp, comps, &dir, quantity)
                );
            }
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

fn print_summary(s: &RunSummary, dir: &Path) {
    println!("status: {}", s.status);
    if let Some(a) = &s.architecture {
        println!("architecture: {a}");
    }
    if let Some(p) = s.params {
        println!("params: {p}");
    }
    if let Some(v) = s.valid_acc {
        println!("valid_acc: {v:.4}");
    }
    println!("run directory: {}", dir.display());
}
