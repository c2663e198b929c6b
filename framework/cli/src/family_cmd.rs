//! `nas family RUN_DIR`: a DARTS-CC family retrained beside random architectures of the same
//! sizes and plain-DARTS baselines, with its report (see `nas_darts_cc_family`).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use nas_core::NasError;
use nas_darts_cc_family::{run_family, FamilyOptions, TrainStatus};
use nas_registry::Components;

/// Arguments of `nas family`.
#[derive(Args, Debug, Clone)]
pub struct FamilyArgs {
    /// A finished DARTS-CC run directory (`config.resolved.yaml`, `strategy_state.json`).
    pub run_dir: PathBuf,
    /// Normalised complexities of the family, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub t: Vec<f64>,
    /// Derivation rule: `simple` (argmax including none) or `darts` (top-2 edges).
    #[arg(long, default_value = "simple")]
    pub mode: String,
    /// Config whose `train` block retrains every architecture (default: the run's own).
    #[arg(long)]
    pub train_config: Option<PathBuf>,
    /// Override a key of the training config: `--set train.epochs=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Retraining seeds, comma separated: every architecture is trained once per seed.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Random architectures of the same size per family member.
    #[arg(long, default_value_t = 1)]
    pub random: usize,
    /// Relative size tolerance of a random architecture.
    #[arg(long, default_value_t = 0.05)]
    pub tolerance: f64,
    /// Draws per random architecture before the closest one is taken.
    #[arg(long, default_value_t = 20_000)]
    pub max_draws: usize,
    /// A baseline to train beside the family: a finished run directory (plain DARTS) or an
    /// architecture file; repeat for several.
    #[arg(long = "baseline", value_name = "RUN_DIR|FILE")]
    pub baselines: Vec<PathBuf>,
    /// Output directory (default `RUN_DIR/family-<mode>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Retrainings at a time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Derive, draw the controls and write `family.json` without training.
    #[arg(long)]
    pub dry_run: bool,
}

/// `nas family`: exit code 0 when every retraining finished, 1 when one failed.
pub fn family(a: &FamilyArgs, comps: &Components) -> Result<i32> {
    if a.jobs == 0 {
        anyhow::bail!(NasError::Config {
            file: "--jobs".into(),
            location: None,
            message: "`--jobs` must be at least 1".into(),
        });
    }
    let opts = FamilyOptions {
        search_run: a.run_dir.clone(),
        ts: a.t.clone(),
        mode: a.mode.clone(),
        train_config: a.train_config.clone(),
        sets: a.sets.clone(),
        seeds: a.seeds.clone(),
        random: a.random,
        tolerance: a.tolerance,
        max_draws: a.max_draws,
        baselines: a.baselines.clone(),
        out_dir: a
            .out
            .clone()
            .unwrap_or_else(|| a.run_dir.join(format!("family-{}", a.mode))),
        jobs: a.jobs,
        dry_run: a.dry_run,
    };
    let out = run_family(&opts, comps)?;
    println!("family directory: {}", out.dir.display());
    for e in &out.index.entries {
        println!(
            "{:<20} {:<9} params={:<9} {}",
            e.id,
            e.kind.name(),
            e.params,
            e.notation
        );
    }
    if a.dry_run {
        return Ok(0);
    }
    let count = |f: fn(&TrainStatus) -> bool| out.runs.iter().filter(|(_, s)| f(s)).count();
    println!(
        "retrainings: {} trained, {} finished before, {} failed",
        count(|s| matches!(s, TrainStatus::Trained)),
        count(|s| matches!(s, TrainStatus::Skipped)),
        out.failed()
    );
    for (dir, s) in &out.runs {
        if let TrainStatus::Failed(e) = s {
            println!("  failed: {}: {e}", dir.display());
        }
    }
    println!("report: {}", out.dir.join("report.md").display());
    Ok(if out.failed() > 0 { 1 } else { 0 })
}
