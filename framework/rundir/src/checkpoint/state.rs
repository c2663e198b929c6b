//! What a checkpoint holds, and how it is taken from and given back to a run's components.
//!
//! Files of `checkpoint/` (besides the store's `manifest.json`):
//! - `meta.json`: [`Meta`]: layout, config fingerprint, the run loop's [`Progress`], the
//!   data loaders' positions;
//! - `config.json`: the config fingerprint value (to name the keys that differ);
//! - `strategy.json`: [`SearchStrategy::save_state`] (alphas, their optimizer, controller,
//!   population, RNG, ...);
//! - `supernet.safetensors`: the supernet weights; `batchnorm.safetensors`: every batch
//!   norm's running mean and variance (f64, in [`nas_model::Supernet::batch_norms`] order);
//!   `optimizer.json`: the weight optimizer's state (momentum buffers, Adam moments).
use std::path::{Path, PathBuf};

use nas_core::{Architecture, NasError, Result, SearchStrategy};
use nas_trainer::RunTrainer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::store;

/// Where the run loop stands at the epoch boundary a checkpoint is taken at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed: the epoch a resumed run starts with.
    pub next_epoch: usize,
    /// Strategy steps taken so far.
    pub global_step: u64,
    /// The search has ended (budget spent or the strategy finished); only its outcome is left.
    pub finished: bool,
    /// Why it ended, when it has.
    pub stop_reason: String,
    /// The last architecture an epoch reported.
    pub last_arch: Option<Architecture>,
    /// The last epoch's metrics (for `summary.json`).
    pub final_metrics: serde_json::Map<String, Value>,
    /// The last validation accuracy reported.
    pub valid_acc: Option<f64>,
    /// Length of `metrics.jsonl` in bytes: a resumed run cuts the file back to it.
    pub metrics_bytes: u64,
    /// Length of `alpha_history.jsonl` in bytes.
    pub alphas_bytes: u64,
    /// Queries the estimator had answered (estimator strategies).
    pub estimator_queries: u64,
    /// Seconds of wall-clock time spent up to the checkpoint.
    pub wall_time_s: f64,
}

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`store::FORMAT`].
    pub format: u32,
    /// [`super::fingerprint`] of the config the run was started with.
    pub config_fingerprint: String,
    /// Strategy name.
    pub strategy: String,
    /// The run loop's position.
    pub progress: Progress,
    /// The trainer's small JSON state (the built-in trainer: its data loaders' positions,
    /// [`nas_trainer::run_trainer::Loaders`]), from [`RunTrainer::save_state`].
    pub loaders: Option<Value>,
}

/// A verified checkpoint, read from disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The directory it was read from (`checkpoint/`, or `checkpoint.old/` after a crash
    /// during a swap).
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
    /// Its config fingerprint value.
    pub config: Value,
}

fn json_bytes(v: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| NasError::Other(format!("serialising {what}: {e}")))
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let p = dir.join(name);
    let bytes = std::fs::read(&p).map_err(|e| NasError::io(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NasError::data(&p, format!("does not decode: {e}")))
}

/// Writes a checkpoint of the run into `run_dir/checkpoint/` (atomically, see
/// [`store`]). `config` is the run's [`super::fingerprint_value`]. `before_swap` runs at
/// the most fragile moment of the swap (fault-injection tests stop there).
pub fn save(
    run_dir: &Path,
    config: &Value,
    progress: &Progress,
    strategy: &dyn SearchStrategy,
    trainer: Option<&dyn RunTrainer>,
    before_swap: impl FnOnce(),
) -> Result<()> {
    let tmp = store::begin(run_dir)?;
    let loaders = match trainer {
        Some(t) => Some(t.save_state(&tmp, &|p: &Path, b: &[u8]| store::write_synced(p, b))?),
        None => None,
    };
    let meta = Meta {
        format: store::FORMAT,
        config_fingerprint: super::fingerprint(config),
        strategy: strategy.name().to_string(),
        progress: progress.clone(),
        loaders,
    };
    store::write_synced(
        &tmp.join("strategy.json"),
        &json_bytes(&strategy.save_state()?, "the strategy state")?,
    )?;
    store::write_synced(&tmp.join("config.json"), &json_bytes(config, "the config")?)?;
    // meta.json last of the state files (the manifest, written by `commit`, seals them).
    store::write_synced(&tmp.join("meta.json"), &json_bytes(&meta, "meta.json")?)?;
    store::commit(run_dir, before_swap)
}

/// Reads and verifies the checkpoint of `run_dir` (see [`store::open`]).
pub fn load(run_dir: &Path) -> Result<Checkpoint> {
    let dir = store::open(run_dir)?;
    let meta: Meta = read_json(&dir, "meta.json")?;
    let config: Value = read_json(&dir, "config.json")?;
    Ok(Checkpoint { dir, meta, config })
}

impl Checkpoint {
    /// Loads only the supernet weights and batch-norm statistics into `trainer` (a trainer
    /// built from the same config): the `supernet` estimator scores paths with them.
    pub fn restore_supernet(&self, trainer: &mut dyn RunTrainer) -> Result<()> {
        trainer.load_weights(&self.dir)
    }

    /// Gives the saved state back to a freshly built strategy (after its `init`) and
    /// trainer. The strategy must be the one that wrote it, and a trainer must be present
    /// exactly when the checkpoint holds one.
    pub fn restore(
        &self,
        strategy: &mut dyn SearchStrategy,
        trainer: Option<&mut dyn RunTrainer>,
    ) -> Result<()> {
        if self.meta.strategy != strategy.name() {
            return Err(NasError::data(
                self.dir.join("meta.json"),
                format!(
                    "written by strategy `{}`, this run uses `{}`",
                    self.meta.strategy,
                    strategy.name()
                ),
            ));
        }
        let state: Value = read_json(&self.dir, "strategy.json")?;
        strategy.load_state(&state)?;
        let saved = self
            .dir
            .join(nas_trainer::run_trainer::WEIGHTS_FILE)
            .is_file();
        match (trainer, saved) {
            (Some(t), true) => t.load_state(&self.dir, self.meta.loaders.as_ref())?,
            (None, false) => {}
            (Some(_), false) => {
                return Err(NasError::data(
                    &self.dir,
                    "holds no supernet weights, but this run trains a supernet",
                ))
            }
            (None, true) => {
                return Err(NasError::data(
                    &self.dir,
                    "holds supernet weights, but this run has no supernet",
                ))
            }
        }
        Ok(())
    }
}
