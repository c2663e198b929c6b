//! Checkpoints: everything a killed run needs to continue as if it had never stopped.
//!
//! **When.** At the start of a run (before the first step), after every
//! `output.checkpoint_every` epochs (0: none in between), and at the end of the search
//! (before the outcome is computed). Checkpoints are taken only at epoch boundaries.
//!
//! **Mid-epoch kills.** A run killed in the middle of an epoch resumes from the checkpoint
//! taken at the start of that epoch (or earlier, with `checkpoint_every` > 1) and runs the
//! interrupted epoch again from its first step. This reproduces the uninterrupted run bit
//! for bit because everything an epoch depends on is in the checkpoint or is a function of
//! it: the weights, batch-norm running statistics and weight-optimizer state; the
//! strategy's whole state (alphas and their optimizer, RNG, population, controller); the
//! data order (a function of seed and epoch, see `nas_data::Loader`) and the loaders'
//! positions; the estimator's query count; and the byte lengths of `metrics.jsonl` and
//! `alpha_history.jsonl`, which a resumed run cuts back to, so that no line is written
//! twice. We chose this over checkpoints every N steps because a step-level checkpoint
//! would also have to capture trainer-internal state that lives between steps (the
//! training batch a second-order DARTS step holds for the next weight step), and because
//! at the sizes this framework runs on a CPU an epoch is minutes, not hours. The price:
//! the work since the last checkpoint is done again.
//!
//! **Atomic.** See [`store`]: a new checkpoint is written to `checkpoint.tmp/`, sealed by a
//! manifest of file sizes and hashes, and swapped in by renames; the previous one survives
//! a crash at any point, and a torn or edited file is detected on resume.
//!
//! **Same config.** A checkpoint records the [`fingerprint`] of its run's resolved config.
//! A resume with a different config is refused, naming the keys that differ; only
//! [`RESUMABLE_KEYS`] may change (see [`config`]).
pub mod config;
pub mod state;
pub mod store;

use std::path::Path;

use nas_config::Experiment;
use nas_core::{NasError, Result};

pub use config::{differences, fingerprint, fingerprint_value, RESUMABLE_KEYS};
pub use state::{load, save, Checkpoint, Meta, Progress};

/// Checks that `exp` (loaded from `file`, with the resume's `--set` overrides) is the
/// config `ck` was written with, up to [`RESUMABLE_KEYS`]. The error is a
/// [`NasError::Config`] naming the first differing keys and both values.
pub fn check_config(ck: &Checkpoint, exp: &Experiment, file: &Path) -> Result<()> {
    let now = fingerprint_value(exp)?;
    if fingerprint(&now) == ck.meta.config_fingerprint {
        return Ok(());
    }
    let show = |v: &Option<serde_json::Value>| match v {
        Some(v) => v.to_string(),
        None => "absent".into(),
    };
    let diffs = differences(&ck.config, &now);
    let listed: Vec<String> = diffs
        .iter()
        .take(5)
        .map(|(k, a, b)| format!("`{k}` is {} in the checkpoint, {} now", show(a), show(b)))
        .collect();
    let first = diffs.first().map(|d| d.0.clone());
    Err(NasError::Config {
        file: file.display().to_string(),
        location: first.map(|k| format!("key `{k}`")),
        message: format!(
            "the checkpoint in {} was written by a different config ({}{}); a resume may \
             change only: {}",
            ck.dir.display(),
            if listed.is_empty() {
                "its config fingerprint differs".to_string()
            } else {
                listed.join("; ")
            },
            if diffs.len() > 5 {
                format!("; and {} more", diffs.len() - 5)
            } else {
                String::new()
            },
            RESUMABLE_KEYS.join(", ")
        ),
    })
}
