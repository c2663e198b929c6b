//! The typed blocks of an experiment file, other than the experiment itself.
//!
//! Every block rejects unknown keys; every optional key has a default written next to it, and
//! [`crate::to_yaml`] writes them all out.
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A component chosen by name, with its parameters left untyped for the component's factory
/// to decode and check (`nas_core::decode_params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Registered name (`darts`, `nb201`, `gdas`, ...).
    pub name: String,
    /// The factory's parameters; `null` (the default) means all of its defaults.
    #[serde(default)]
    pub params: Value,
}

impl Component {
    /// A component with no params.
    pub fn named(name: &str) -> Component {
        Component {
            name: name.to_string(),
            params: Value::Null,
        }
    }
}

/// An optimizer with its learning-rate schedule and gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerBlock {
    /// Registered optimizer name (`sgd`, `adam`, `adamw`, `rmsprop`).
    pub name: String,
    /// The optimizer's parameters (`lr`, `momentum`, `weight_decay`, ...); `null`: defaults.
    #[serde(default)]
    pub params: Value,
    /// Learning-rate schedule (`constant`, `step`, `cosine`); none: constant.
    #[serde(default)]
    pub schedule: Option<Component>,
    /// Clip the global gradient norm to this value; none: no clipping.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
}

impl OptimizerBlock {
    /// An optimizer with no params, schedule or clipping.
    pub fn named(name: &str) -> OptimizerBlock {
        OptimizerBlock {
            name: name.to_string(),
            params: Value::Null,
            schedule: None,
            clip_grad_norm: None,
        }
    }
}

/// The two optimizers of a search: supernet weights, and (for gradient-based strategies) the
/// architecture parameters, which the strategy owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizers {
    /// Optimizer of the supernet weights (trainer side).
    pub weights: OptimizerBlock,
    /// Optimizer of the architecture parameters (strategy side); none: the strategy's default.
    #[serde(default)]
    pub arch: Option<OptimizerBlock>,
}

impl Default for Optimizers {
    /// Weights: `sgd` with its own defaults; no arch optimizer block.
    fn default() -> Self {
        Optimizers {
            weights: OptimizerBlock::named("sgd"),
            arch: None,
        }
    }
}

/// Training-time augmentation of images.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentBlock {
    /// Zero padding before a random crop back to size; 0: no random crop.
    pub crop_padding: usize,
    /// Random horizontal flips.
    pub hflip: bool,
    /// Cutout square side in pixels (DeVries & Taylor 2017); 0: none.
    pub cutout: usize,
}

fn default_batch_size() -> usize {
    64
}

fn default_train_portion() -> f64 {
    0.5
}

/// The data set and how it is split and batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataBlock {
    /// Registered data set name (`digits`, `cifar10`, ...).
    pub name: String,
    /// The data set's parameters (`root`, `limit_train`, ...); `null`: defaults.
    #[serde(default)]
    pub params: Value,
    /// Training batch size (default 64, DARTS search, Liu et al. 2019).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Portion of the training set used for weights; the rest drives the architecture
    /// (default 0.5, the DARTS search split, `train_search.py --train_portion`).
    #[serde(default = "default_train_portion")]
    pub train_portion: f64,
    /// Augmentation of training images (default: none).
    #[serde(default)]
    pub augment: AugmentBlock,
    /// Batch size for evaluation; none: `batch_size`.
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
}

fn default_epochs() -> usize {
    1
}

/// How long a search runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Search epochs (default 1).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Cap on steps per epoch; none: the whole training split.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// Cap on estimator queries (random and evolutionary search); none: no cap.
    #[serde(default)]
    pub queries: Option<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            epochs: default_epochs(),
            steps_per_epoch: None,
            queries: None,
        }
    }
}

fn default_checkpoint_every() -> usize {
    1
}

fn default_log_every() -> usize {
    10
}

/// Where and how often a run writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Run directory; none: the runner picks `runs/<name>-<timestamp>`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Write a checkpoint every this many epochs (default 1). 0 is left to the runner's
    /// reading (no periodic checkpoints).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Log every this many steps (default 10).
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Also write TensorBoard event files (`RUN/tensorboard/`): the logged step and epoch
    /// metrics as scalars and the alpha history (default false).
    #[serde(default)]
    pub tensorboard: bool,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            dir: None,
            checkpoint_every: default_checkpoint_every(),
            log_every: default_log_every(),
            tensorboard: false,
        }
    }
}
