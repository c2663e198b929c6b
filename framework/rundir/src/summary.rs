//! `summary.json`: a run's status and result, written at the start (status `running`), and
//! again when it ends; read by reports, sweeps and resumes.
use std::path::Path;

use nas_core::{NasError, Result};
use serde::{Deserialize, Serialize};

/// `status` of a run's `summary.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Written at the start; a summary that stays so belongs to a killed run.
    Running,
    /// The budget or the strategy ended it.
    Finished,
    /// An error ended it (`stop_reason` says which).
    Failed,
}

impl RunStatus {
    /// The name as written in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the name as written in `summary.json` (`status == "finished"`).
impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// `running`, `finished` or `failed`.
    pub status: RunStatus,
    /// Why the run stopped (`budget`, `strategy finished`, or the error).
    pub stop_reason: String,
    /// The experiment's name.
    pub name: String,
    /// Strategy name.
    pub strategy: String,
    /// Space name.
    pub space: String,
    /// Seed.
    pub seed: u64,
    /// The primary architecture found, in the space's notation.
    pub architecture: Option<String>,
    /// Its choices.
    pub choices: Option<Vec<usize>>,
    /// Parameters of its standalone network (DARTS: excluding the auxiliary head); written
    /// as an integer ([`crate::files::count_json`]).
    #[serde(serialize_with = "crate::files::serialize_count_opt")]
    pub params: Option<f64>,
    /// FLOPs (multiply-accumulates per example) of its standalone network; written as an
    /// integer when whole.
    #[serde(serialize_with = "crate::files::serialize_count_opt")]
    pub flops: Option<f64>,
    /// The last validation accuracy the strategy reported.
    pub valid_acc: Option<f64>,
    /// The last value of every epoch metric.
    pub final_metrics: serde_json::Map<String, serde_json::Value>,
    /// Every architecture the strategy returned.
    pub architectures: Vec<serde_json::Value>,
    /// Epochs completed.
    pub epochs: usize,
    /// Wall-clock seconds.
    pub wall_time_s: f64,
    /// Source revision, when known.
    pub git_revision: String,
    /// Compiler.
    pub rustc: String,
    /// Device.
    pub device: String,
}

/// Reads a run directory's `summary.json`, if it has one.
pub fn read_summary(dir: &Path) -> Result<Option<RunSummary>> {
    let p = dir.join("summary.json");
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| NasError::io(&p, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| NasError::data(&p, e.to_string()))
}
