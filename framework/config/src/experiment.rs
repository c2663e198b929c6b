//! The experiment: one file that chooses every component of a search.
use serde::{Deserialize, Serialize};
use serde_json::json;

use nas_core::NasError;

use crate::blocks::{Budget, Component, DataBlock, OptimizerBlock, Optimizers, Output};
use crate::schema::default_schema;
use crate::settings::{DTypeSetting, DeviceSetting};
use crate::source::Provenance;
use crate::tree::{join_path, split_path};

/// A whole experiment (CONVENTIONS.md section 3): which space, strategy, trainer, estimator,
/// optimizers and data, with what budget, written where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Config schema version (default and only supported: 1).
    #[serde(default = "default_schema")]
    pub schema: u32,
    /// Experiment name (default: the experiment file's stem).
    #[serde(default)]
    pub name: String,
    /// Master seed; every component derives its own stream from it (default 0).
    #[serde(default)]
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N` (default `cpu`). `auto` is the GPU when the binary
    /// has CUDA and one is present, else the CPU; CUDA builds are planned (docs/gpu.md), so
    /// today `auto` is the CPU and `cuda` is refused by `nas config validate` and `nas run`.
    #[serde(default)]
    pub device: DeviceSetting,
    /// `f32` or `f64` (default `f32`).
    #[serde(default)]
    pub dtype: DTypeSetting,
    /// The search space.
    pub space: Component,
    /// The search strategy.
    pub strategy: Component,
    /// The supernet trainer; none: the space's default trainer.
    #[serde(default)]
    pub trainer: Option<Component>,
    /// The estimator (random and evolutionary search); none: not used.
    #[serde(default)]
    pub estimator: Option<Component>,
    /// Optimizers of weights and architecture (default: weights `sgd` with its defaults).
    #[serde(default)]
    pub optimizers: Optimizers,
    /// The data set; none: the space or estimator needs none (e.g. a tabular benchmark).
    #[serde(default)]
    pub data: Option<DataBlock>,
    /// How long the search runs (default: 1 epoch).
    #[serde(default)]
    pub budget: Budget,
    /// Where and how often the run writes.
    #[serde(default)]
    pub output: Output,
    /// Strategy plugins (shared libraries) to load before the run.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Settings of `nas train` (retraining a found architecture); none: not given.
    #[serde(default)]
    pub train: Option<TrainBlock>,
    /// Where each key was written (for error messages; not configuration, never written out,
    /// ignored by `==`).
    #[serde(skip)]
    pub source: Provenance,
}

impl Experiment {
    /// Where the key path `path` (e.g. `strategy.params.arch_lr`) was written, as
    /// `file:line:col` (or the `--set` that gave it, or the file alone). When the key itself
    /// was not written (a default), the nearest enclosing key that was is named. None for an
    /// experiment not loaded from files.
    pub fn locate(&self, path: &str) -> Option<String> {
        self.source
            .map()?
            .locate(&split_path(path), false)
            .map(|p| p.to_string())
    }

    /// A [`NasError::Config`] about the key path `path`, naming the file, line, column and
    /// key where it was written: for factories' parameter errors, e.g.
    /// `exp.error_at("strategy.params.arch_lr", "must be positive")`.
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> NasError {
        let segs = split_path(path);
        match self.source.map() {
            Some(m) => m.error(&segs, true, message),
            None => NasError::Config {
                file: format!("experiment `{}`", self.name),
                location: Some(format!("key `{}`", join_path(&segs))),
                message: message.into(),
            },
        }
    }
}

/// Settings of `nas train`: retraining one architecture from scratch.
///
/// Defaults are the DARTS evaluation recipe for CIFAR-10 (Liu et al. 2019, "DARTS:
/// Differentiable Architecture Search", reference code `cnn/train.py`: 600 epochs, batch 96,
/// 36 initial channels, 20 cells, auxiliary weight 0.4, drop path 0.2, cutout 16, SGD lr 0.025
/// momentum 0.9 weight decay 3e-4 with cosine annealing to 0, gradient clipping at 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainBlock {
    /// Training epochs (600).
    pub epochs: usize,
    /// Batch size (96).
    pub batch_size: usize,
    /// Initial channels (36).
    pub channels: usize,
    /// Number of cells (20).
    pub layers: usize,
    /// Weight of the auxiliary head's loss (0.4); 0: no auxiliary head.
    pub auxiliary_weight: f64,
    /// Drop-path probability, ramped linearly over training in DARTS (0.2).
    pub drop_path: f64,
    /// Cutout square side (16); 0: none.
    pub cutout: usize,
    /// Padding of the random crop (4).
    pub crop_padding: usize,
    /// Random horizontal flips (true).
    pub hflip: bool,
    /// The weights' optimizer (SGD lr 0.025, momentum 0.9, weight decay 3e-4, cosine to 0,
    /// clip 5).
    pub optimizer: OptimizerBlock,
    /// Use only this many batches per epoch (for quick checks); none: all.
    pub limit_batches: Option<usize>,
    /// Evaluate on the test split every this many epochs (1).
    pub eval_every: usize,
}

impl Default for TrainBlock {
    fn default() -> Self {
        TrainBlock {
            epochs: 600,
            batch_size: 96,
            channels: 36,
            layers: 20,
            auxiliary_weight: 0.4,
            drop_path: 0.2,
            cutout: 16,
            crop_padding: 4,
            hflip: true,
            optimizer: OptimizerBlock {
                name: "sgd".into(),
                params: json!({"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4}),
                schedule: Some(Component {
                    name: "cosine".into(),
                    params: json!({"eta_min": 0.0}),
                }),
                clip_grad_norm: Some(5.0),
            },
            limit_batches: None,
            eval_every: 1,
        }
    }
}
