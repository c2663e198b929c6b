//! A sweep's retrain stage: every architecture a sweep's run found, retrained from scratch
//! by `nas train`'s recipe (the run's `train` block with the sweep file's `retrain`
//! overrides) once per retraining seed, into `DIR/<run id>/retrain-s<seed>/`.
//!
//! Each retraining is resumable like a search (see [`nas_runner::retrain_checkpoint`]): a
//! finished one is skipped, an interrupted one continues from its last epoch checkpoint, so
//! a killed or resubmitted sweep never trains an epoch twice (the epoch a kill interrupted
//! aside). The same function, [`nas_runner::retrain::retrain_resumable`], retrains `nas family`'s
//! entries.
use std::path::{Path, PathBuf};

use nas_config::{PlannedRun, RetrainStage};
use nas_core::{NasError, Result};

use nas_registry::Components;
use nas_runner::retrain::{retrain_resumable, RetrainOptions, RetrainStart};

/// The directory of `run_dir`'s retraining under `seed`.
pub fn retrain_dir(run_dir: &Path, seed: u64) -> PathBuf {
    run_dir.join(format!("retrain-s{seed}"))
}

/// Retrains the architecture the finished search in `run_dir` found (its
/// `architecture.json`), once per seed of `stage`. Every seed is tried; the first error
/// (naming the seed) is returned after the others ran.
pub fn retrain_run(
    run_dir: &Path,
    run: &PlannedRun,
    stage: &RetrainStage,
    comps: &Components,
) -> Result<()> {
    let arch = run_dir.join("architecture.json");
    if !arch.is_file() {
        return Err(NasError::data(
            &arch,
            "missing: the search found no architecture to retrain",
        ));
    }
    let mut first_error = None;
    for &seed in &stage.seeds {
        let exp = stage.experiment(&run.experiment, seed)?;
        let dir = retrain_dir(run_dir, seed);
        let opts = RetrainOptions {
            out_dir: Some(dir.clone()),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            retrain_resumable(&exp, comps, &arch.display().to_string(), &opts)
        }));
        match result {
            Ok(Ok((start, rep))) => {
                let how = match start {
                    RetrainStart::Fresh => "retrained",
                    RetrainStart::Resumed => "retrained (resumed)",
                    RetrainStart::Skipped => "retrained before",
                };
                tracing::info!(
                    "{} seed {seed}: {how}: test_acc {:.4}",
                    run.id,
                    rep.test_acc
                );
            }
            Ok(Err(e)) => {
                tracing::error!("{} retraining seed {seed} failed: {e}", run.id);
                first_error.get_or_insert(NasError::Other(format!("retraining seed {seed}: {e}")));
            }
            Err(_) => {
                tracing::error!("{} retraining seed {seed} panicked", run.id);
                first_error
                    .get_or_insert(NasError::Other(format!("retraining seed {seed} panicked")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
