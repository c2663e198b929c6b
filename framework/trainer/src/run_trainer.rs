//! [`RunTrainer`]: what the run loop needs of a trainer beyond the strategies' drive
//! ([`SupernetTrainer`]): saving its state into a checkpoint directory and taking it back.
//! The `trainers` registry builds a `Box<dyn RunTrainer>`, so a user's own binary can register
//! a trainer of its own; [`WeightSharingTrainer`] is the built-in `supernet` trainer.
//!
//! Why the trait has this shape: the run loop owns the checkpoint directory and its atomic
//! swap, the trainer owns what its files hold. So the loop hands the trainer a directory and
//! a writer that fsyncs (`write`), and keeps the trainer's small JSON part (data-order
//! positions) in its own `meta.json`, where it has always been.
use std::any::Any;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use nas_core::{NasError, Result, SupernetTrainer};
use nas_data::LoaderState;
use nas_ops::BatchNorm2d;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::WeightSharingTrainer;

/// Writes one checkpoint file durably (the run loop's fsyncing writer).
pub type WriteFile<'a> = &'a dyn Fn(&Path, &[u8]) -> Result<()>;

/// A trainer the run loop drives, checkpoints and resumes. Every method is required (no
/// defaults): a trainer that cannot save its state cannot be resumed.
pub trait RunTrainer: SupernetTrainer {
    /// Writes the trainer's state (weights, batch-norm statistics, optimizer state) into
    /// `dir` with `write`, and returns its small JSON part (data-loader positions), which
    /// the checkpoint keeps in `meta.json` under `loaders`.
    fn save_state(&self, dir: &Path, write: WriteFile<'_>) -> Result<Value>;
    /// Gives back what [`RunTrainer::save_state`] wrote into `dir` (`loaders`: its JSON
    /// part, `None` when `meta.json` has none).
    fn load_state(&mut self, dir: &Path, loaders: Option<&Value>) -> Result<()>;
    /// Loads only the weights and batch-norm statistics of `dir` (the `supernet` estimator
    /// and `nas export --inherit` score and copy them without the optimizer state).
    fn load_weights(&mut self, dir: &Path) -> Result<()>;
    /// The trainer as [`Any`], for tools that need the concrete type (`nas export --inherit`
    /// copies supernet weights by name and so needs the built-in trainer).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The supernet's weights in a checkpoint.
pub const WEIGHTS_FILE: &str = "supernet.safetensors";
/// Every batch norm's running mean and variance (f64, in supernet order).
pub const BATCH_NORM_FILE: &str = "batchnorm.safetensors";
/// The weight optimizer's state (momentum buffers, Adam moments).
pub const OPTIMIZER_FILE: &str = "optimizer.json";

/// Positions of the trainer's two data loaders (`meta.json`'s `loaders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaders {
    /// The weight-training part.
    pub train: LoaderState,
    /// The architecture (validation) part.
    pub valid: LoaderState,
}

fn terr(path: &Path) -> impl Fn(candle_core::Error) -> NasError + '_ {
    move |e| NasError::data(path, e.to_string())
}

/// Writes every batch norm's running statistics to `path` (nothing when there is none).
pub fn save_batch_norms(bns: &[&BatchNorm2d], path: &Path) -> Result<()> {
    let mut tensors = HashMap::new();
    for (i, bn) in bns.iter().enumerate() {
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

/// Loads what [`save_batch_norms`] wrote into `bns` (same order and sizes).
pub fn load_batch_norms(bns: &[&BatchNorm2d], path: &Path) -> Result<()> {
    if bns.is_empty() && !path.exists() {
        return Ok(());
    }
    let loaded = candle_core::safetensors::load(path, &Device::Cpu).map_err(terr(path))?;
    if loaded.len() != 2 * bns.len() {
        return Err(NasError::data(
            path,
            format!(
                "holds {} batch-norm tensors, the network has {} batch norms (x2)",
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

impl RunTrainer for WeightSharingTrainer {
    fn save_state(&self, dir: &Path, write: WriteFile<'_>) -> Result<Value> {
        self.supernet()
            .params()
            .save_safetensors(&dir.join(WEIGHTS_FILE))?;
        save_batch_norms(&self.supernet().batch_norms(), &dir.join(BATCH_NORM_FILE))?;
        let opt = serde_json::to_vec(&self.optimizer().save_state())
            .map_err(|e| NasError::Other(format!("serialising the weight optimizer state: {e}")))?;
        write(&dir.join(OPTIMIZER_FILE), &opt)?;
        let (train, valid) = self.loader_states();
        serde_json::to_value(Loaders { train, valid })
            .map_err(|e| NasError::Other(format!("serialising the data loader positions: {e}")))
    }

    fn load_state(&mut self, dir: &Path, loaders: Option<&Value>) -> Result<()> {
        self.load_weights(dir)?;
        let p = dir.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&p).map_err(|e| NasError::io(&p, e))?;
        let opt: Value = serde_json::from_slice(&bytes)
            .map_err(|e| NasError::data(&p, format!("does not decode: {e}")))?;
        self.optimizer_mut().load_state(&opt)?;
        let meta = dir.join("meta.json");
        let l: Loaders = serde_json::from_value(
            loaders
                .cloned()
                .ok_or_else(|| NasError::data(&meta, "no data loader positions"))?,
        )
        .map_err(|e| NasError::data(&meta, format!("`loaders` does not decode: {e}")))?;
        self.restore_loaders(&l.train, &l.valid)
    }

    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(NasError::data(
                dir,
                "holds no supernet weights (the run did not train a supernet)",
            ));
        }
        self.supernet().params().load_safetensors(&weights)?;
        load_batch_norms(&self.supernet().batch_norms(), &dir.join(BATCH_NORM_FILE))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
