//! # nas-runner
//!
//! Turns a resolved [`nas_config::Experiment`] into a run: builds every component from the
//! one [`Components`] registry, drives the strategy through its epochs, and writes the run
//! directory (`config.resolved.yaml`, `metrics.jsonl`, `alpha_history.jsonl`,
//! `architecture.json`, `summary.json`, `log.txt`, and `checkpoint/`). Every result file is
//! written atomically (temporary file, then rename); a killed run continues with
//! [`resume_experiment`] (see [`checkpoint`] for what is saved and when).
#![deny(missing_docs)]

pub mod bench;
pub mod build;
pub mod checkpoint;
pub mod components;
pub mod env;
pub mod export;
pub mod family;
mod fault;
pub mod files;
pub mod plugins;
pub mod report;
pub mod resume;
pub mod retrain;
pub mod retrain_checkpoint;
pub mod run;
pub mod slurm;
pub mod sweep;
pub mod sweep_retrain;
pub mod sweep_task;
pub mod tensorboard;
pub mod trained_supernet;
pub mod zero_cost;

pub use components::{Components, EstimatorContext, SpaceBox};
pub use resume::resume_experiment;
pub use retrain::{retrain, retrain_resumable, RetrainOptions, RetrainStart};
pub use run::{run_experiment, RunOptions, RunStatus, RunSummary};
pub use sweep::{run_sweep, SweepOptions, SweepOutcome};
