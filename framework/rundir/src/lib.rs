//! # nas-rundir
//!
//! The files of a run directory and how they are written: atomic writes and JSON lines
//! ([`files`]), `summary.json` ([`summary`]), and the checkpoint a killed run resumes from
//! ([`checkpoint`]: an atomic directory swap, verified by a manifest). Shared by the run loop,
//! retraining, sweeps and reports, which work from these files alone.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod files;
pub mod summary;

pub use summary::{read_summary, RunStatus, RunSummary};
