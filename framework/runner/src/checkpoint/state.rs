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
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use nas_core::{Architecture, NasError, Result, SearchStrategy};
use nas_data::LoaderState;
use nas_trainer::WeightSharingTrainer;
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

/// Positions of the trainer's two data loaders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaders {
    /// The weight-training part.
    pub train: LoaderState,
    /// The architecture (validation) part.
    pub valid: LoaderState,
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
    /// Data loader positions (supernet strategies).
    pub loaders: Option<Loaders>,
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

fn terr(path: &Path) -> impl Fn(candle_core::Error) -> NasError + '_ {
    move |e| NasError::data(path, e.to_string())
}

fn save_batch_norms(trainer: &WeightSharingTrainer, path: &Path) -> Result<()> {
    let mut tensors = HashMap::new();
    for (i, bn) in trainer.supernet().batch_norms().iter().enumerate() {
        let (mean, var) = bn.running_stats();
        let n = mean.len();
        tensors.insert(
            format!("{i:05}.mean"),
            Tensor::from_vec(mean, n, &Device::Cpu).map_err(terr(path))?,
        );
        tensors.insert(
            format!("{i:05}.var"),
            Tensor::from_vec(var, n, &Device::Cpu).map_err(terr(path))?,
        );
    }
    if tensors.is_empty() {
        return Ok(());
    }
    candle_core::safetensors::save(&tensors, path).map_err(terr(path))
}

fn load_batch_norms(trainer: &WeightSharingTrainer, path: &Path) -> Result<()> {
    let bns = trainer.supernet().batch_norms();
    if bns.is_empty() && !path.exists() {
        return Ok(());
    }
    let loaded = candle_core::safetensors::load(path, &Device::Cpu).map_err(terr(path))?;
    if loaded.len() != 2 * bns.len() {
        return Err(NasError::data(
            path,
            format!(
                "holds {} batch-norm tensors, the supernet has {} batch norms (x2)",
                loaded.len(),
                bns.len()
            ),
        ));
    }
    for (i, bn) in bns.iter().enumerate() {
        let get = |what: &str| -> Result<Vec<f64>> {
            let name = format!("{i:05}.{what}");
            loaded
                .get(&name)
                .ok_or_else(|| NasError::data(path, format!("`{name}` is missing")))?
                .to_vec1::<f64>()
                .map_err(terr(path))
        };
        let (mean, var) = (get("mean")?, get("var")?);
        bn.try_set_running_stats(&mean, &var)
            .map_err(|e| NasError::data(path, format!("batch norm {i}: {e}")))?;
    }
    Ok(())
}

/// Writes a checkpoint of the run into `run_dir/checkpoint/` (atomically, see
/// [`store`]). `config` is the run's [`super::fingerprint_value`]. `before_swap` runs at
/// the most fragile moment of the swap (fault-injection tests stop there).
pub fn save(
    run_dir: &Path,
    config: &Value,
    progress: &Progress,
    strategy: &dyn SearchStrategy,
    trainer: Option<&WeightSharingTrainer>,
    before_swap: impl FnOnce(),
) -> Result<()> {
    let tmp = store::begin(run_dir)?;
    let loaders = trainer.map(|t| {
        let (train, valid) = t.loader_states();
        Loaders { train, valid }
    });
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
    if let Some(t) = trainer {
        t.supernet()
            .params()
            .save_safetensors(&tmp.join("supernet.safetensors"))?;
        save_batch_norms(t, &tmp.join("batchnorm.safetensors"))?;
        store::write_synced(
            &tmp.join("optimizer.json"),
            &json_bytes(&t.optimizer().save_state(), "the weight optimizer state")?,
        )?;
    }
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
    pub fn restore_supernet(&self, trainer: &mut WeightSharingTrainer) -> Result<()> {
        let weights = self.dir.join("supernet.safetensors");
        if !weights.is_file() {
            return Err(NasError::data(
                &self.dir,
                "holds no supernet weights (the run did not train a supernet)",
            ));
        }
        trainer.supernet().params().load_safetensors(&weights)?;
        load_batch_norms(trainer, &self.dir.join("batchnorm.safetensors"))
    }

    /// Gives the saved state back to a freshly built strategy (after its `init`) and
    /// trainer. The strategy must be the one that wrote it, and a trainer must be present
    /// exactly when the checkpoint holds one.
    pub fn restore(
        &self,
        strategy: &mut dyn SearchStrategy,
        trainer: Option<&mut WeightSharingTrainer>,
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
        let weights = self.dir.join("supernet.safetensors");
        match (trainer, weights.is_file()) {
            (Some(t), true) => {
                t.supernet().params().load_safetensors(&weights)?;
                load_batch_norms(t, &self.dir.join("batchnorm.safetensors"))?;
                let opt: Value = read_json(&self.dir, "optimizer.json")?;
                t.optimizer_mut().load_state(&opt)?;
                let l = self.meta.loaders.ok_or_else(|| {
                    NasError::data(self.dir.join("meta.json"), "no data loader positions")
                })?;
                t.restore_loaders(&l.train, &l.valid)?;
            }
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
