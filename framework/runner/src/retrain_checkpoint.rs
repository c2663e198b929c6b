//! Checkpoints of a retraining (`nas train`, a sweep's retrain stage, `nas family`): taken
//! after every epoch into `DIR/checkpoint/` with the same atomic store as a search's
//! checkpoints ([`nas_rundir::checkpoint::store`]: written to `checkpoint.tmp/`, sealed by a
//! manifest of sizes and hashes, swapped in by renames).
//!
//! Files: `weights.safetensors` (every trainable weight, auxiliary head included),
//! `batchnorm.safetensors` (every batch norm's running mean and variance, f64, in
//! [`nas_model::Network::batch_norms`] order), `optimizer.json` (momentum buffers, Adam
//! moments) and `meta.json` ([`RetrainMeta`]: the epoch to continue with, the report so
//! far, the length of `metrics.jsonl`, the wall time, and the fingerprint of the config and
//! architecture it belongs to). The data order, augmentation and drop-path draws of an
//! epoch are functions of the seed and the epoch, so a retraining resumed at an epoch
//! boundary repeats the uninterrupted one bit for bit.
use std::path::Path;

use nas_core::{NasError, Result};
use nas_model::Network;
use nas_trainer::{RetrainProgress, Retrainer};
use serde::{Deserialize, Serialize};

use nas_rundir::checkpoint::store;

/// `meta.json` of a retraining checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainMeta {
    /// Always `"retrain"` (a search checkpoint has none of these fields).
    pub kind: String,
    /// [`store::FORMAT`].
    pub format: u32,
    /// [`fingerprint`] of the config and architecture.
    pub fingerprint: String,
    /// Where the training stands.
    pub progress: RetrainProgress,
    /// Length of `metrics.jsonl` in bytes: a resumed retraining cuts the file back to it.
    pub metrics_bytes: u64,
    /// Seconds of wall-clock time up to the checkpoint.
    pub wall_time_s: f64,
}

/// The fingerprint of a retraining: its resolved config (without the `output` block, see
/// [`nas_rundir::checkpoint::fingerprint_value`]) and the architecture's notation.
pub fn fingerprint(exp: &nas_config::Experiment, notation: &str) -> Result<String> {
    let v = nas_rundir::checkpoint::fingerprint_value(exp)?;
    let both = serde_json::json!({"config": v, "architecture": notation});
    Ok(nas_rundir::checkpoint::fingerprint(&both))
}

fn json_bytes(v: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| NasError::Other(format!("serialising {what}: {e}")))
}

/// Writes the running statistics of `net`'s batch norms to `path` (nothing when it has
/// none).
pub fn save_batch_norms(net: &dyn Network, path: &Path) -> Result<()> {
    nas_trainer::run_trainer::save_batch_norms(&net.batch_norms(), path)
}

/// Reads what [`save_batch_norms`] wrote back into `net`.
pub fn load_batch_norms(net: &dyn Network, path: &Path) -> Result<()> {
    nas_trainer::run_trainer::load_batch_norms(&net.batch_norms(), path)
}

/// Writes the trained network of `r` into `dir`: `weights.safetensors` and
/// `batchnorm.safetensors` (each atomically: a temporary file, then a rename).
pub fn save_weights(dir: &Path, r: &Retrainer) -> Result<()> {
    let rename = |tmp: &Path, name: &str| -> Result<()> {
        let dst = dir.join(name);
        if tmp.exists() {
            std::fs::rename(tmp, &dst).map_err(|e| NasError::io(&dst, e))?;
        }
        Ok(())
    };
    let tmp = dir.join(".weights.safetensors.tmp");
    r.net.params().save_safetensors(&tmp)?;
    rename(&tmp, "weights.safetensors")?;
    let tmp = dir.join(".batchnorm.safetensors.tmp");
    save_batch_norms(r.net.as_ref(), &tmp)?;
    rename(&tmp, "batchnorm.safetensors")
}

/// Writes a checkpoint of `r` into `dir/checkpoint/`; `before_swap` runs at the fragile
/// moment of the swap (fault-injection tests stop there).
pub fn save(
    dir: &Path,
    meta: &RetrainMeta,
    r: &Retrainer,
    before_swap: impl FnOnce(),
) -> Result<()> {
    let tmp = store::begin(dir)?;
    r.net
        .params()
        .save_safetensors(&tmp.join("weights.safetensors"))?;
    save_batch_norms(r.net.as_ref(), &tmp.join("batchnorm.safetensors"))?;
    store::write_synced(
        &tmp.join("optimizer.json"),
        &json_bytes(&r.optimizer.save_state(), "the optimizer state")?,
    )?;
    store::write_synced(&tmp.join("meta.json"), &json_bytes(meta, "meta.json")?)?;
    store::commit(dir, before_swap)
}

/// Reads and verifies the retraining checkpoint of `dir`.
pub fn load(dir: &Path) -> Result<(std::path::PathBuf, RetrainMeta)> {
    let ck = store::open(dir)?;
    let p = ck.join("meta.json");
    let bytes = std::fs::read(&p).map_err(|e| NasError::io(&p, e))?;
    let meta: RetrainMeta = serde_json::from_slice(&bytes)
        .map_err(|e| NasError::data(&p, format!("not a retraining checkpoint: {e}")))?;
    Ok((ck, meta))
}

/// Gives a checkpoint's weights, batch-norm statistics and optimizer state back to a
/// freshly built retrainer of the same config and architecture.
pub fn restore(ck: &Path, r: &mut Retrainer) -> Result<()> {
    r.net
        .params()
        .load_safetensors(&ck.join("weights.safetensors"))?;
    load_batch_norms(r.net.as_ref(), &ck.join("batchnorm.safetensors"))?;
    let p = ck.join("optimizer.json");
    let bytes = std::fs::read(&p).map_err(|e| NasError::io(&p, e))?;
    let state: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| NasError::data(&p, e.to_string()))?;
    r.optimizer.load_state(&state)
}
