//! # nas-sweep
//!
//! Sweeps: every planned run of a sweep file on worker threads or as one Slurm job array,
//! each resumable, optionally retrained, then the sweep's report ([`sweep`], [`slurm`]).
#![deny(missing_docs)]

pub mod slurm;
pub mod sweep;
pub mod sweep_retrain;
pub mod sweep_task;

pub use sweep::{run_sweep, SweepOptions, SweepOutcome};
