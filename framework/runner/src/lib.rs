//! # nas-runner
//!
//! Turns a resolved [`nas_config::Experiment`] into a run: builds every component through the
//! one registry ([`nas_registry::Components`]), drives the strategy through its epochs
//! ([`run`]), and writes the run directory (`config.resolved.yaml`, `metrics.jsonl`,
//! `alpha_history.jsonl`, `architecture.json`, `summary.json`, `log.txt`, and `checkpoint/`,
//! with the file formats of `nas-rundir`). Every result file is written atomically
//! (temporary file, then rename); a killed run continues with [`resume_experiment`]. Also:
//! retraining from scratch ([`retrain`]), `nas export --inherit` ([`export`]), `nas bench`
//! ([`bench`]), and the runner's own components ([`register`]: the `supernet` trainer, the
//! `zero_cost` estimator).
#![deny(missing_docs)]

pub mod bench;
pub mod env;
pub mod export;
mod fault;
pub mod plugins;
pub mod register;
pub mod resume;
pub mod retrain;
pub mod retrain_checkpoint;
pub mod run;
pub mod run_files;
pub mod run_loop;
pub mod tensorboard;
pub mod zero_cost;

pub use register::register;
pub use resume::resume_experiment;
pub use retrain::{retrain, retrain_resumable, RetrainOptions, RetrainStart};
pub use run::{run_experiment, RunOptions};
