//! # nas-runner
//!
//! Turns a resolved [`nas_config::Experiment`] into a run: builds every component from the
//! one [`Components`] registry, drives the strategy through its epochs, and writes the run
//! directory (`config.resolved.yaml`, `metrics.jsonl`, `alpha_history.jsonl`,
//! `architecture.json`, `summary.json`, `log.txt`). Every result file is written
//! atomically (temporary file, then rename).
#![deny(missing_docs)]

pub mod bench;
pub mod components;
pub mod env;
pub mod files;
pub mod plugins;
pub mod report;
pub mod retrain;
pub mod run;
pub mod sweep;

pub use components::{Components, SpaceBox};
pub use retrain::{retrain, RetrainOptions};
pub use run::{run_experiment, RunOptions, RunSummary};
pub use sweep::{run_sweep, SweepOptions, SweepOutcome};
