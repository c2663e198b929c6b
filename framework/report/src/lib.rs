//! # nas-report
//!
//! Reports from files alone (`nas report DIR`).
//!
//! * A sweep directory (`sweep.json`, one subdirectory per run): `runs.csv` (one row per
//!   run), `table.csv` and `report.md` (runs grouped by label with mean, std, min and max
//!   over seeds), and `plots/` (best-so-far accuracy against queries and against simulated
//!   search time, per group the mean with a `± std` band; accuracy against parameters).
//! * A run directory (`summary.json`, `metrics.jsonl`, ...): `plots/` with the loss and
//!   accuracy curves, the alpha history per edge (also written as `alpha_history.npy`) and
//!   diagrams of the derived cells (from the space, [`nas_core::SpaceRules::cell_diagrams`]);
//!   and a short `report.md`.
//!
//! Every figure is written as SVG and PNG. A DARTS-CC family directory has its own report
//! (`nas-darts-cc-family`), drawn with this crate's [`plot`] module.
#![deny(missing_docs)]
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

pub mod cell;
pub mod npy;
pub mod plot;
pub mod retrain_report;
pub mod run_report;
pub mod runs;
pub mod stats;
pub mod sweep_report;
pub mod table;
pub mod table_figures;

use nas_registry::Components;

pub use run_report::{write_run_report, RunReport};
pub use runs::{collect_runs, IndexedRun, ReportSettings, RunRow, SweepIndex, SWEEP_INDEX};
pub use stats::{band, BandPoint, Stats};
pub use sweep_report::{write_sweep_report, SweepReport};
pub use table::{group_rows, Group};

/// What `nas report DIR` wrote.
#[derive(Debug)]
pub enum Report {
    /// A sweep's report.
    Sweep(SweepReport),
    /// One run's report.
    Run(RunReport),
}

impl Report {
    /// Every file written.
    pub fn files(&self) -> &[PathBuf] {
        match self {
            Report::Sweep(r) => &r.files,
            Report::Run(r) => &r.files,
        }
    }
}

/// Whether `dir` is a sweep directory: it has `sweep.json`, or no `summary.json` of its own
/// but subdirectories with one.
pub fn is_sweep_dir(dir: &Path) -> bool {
    if dir.join(SWEEP_INDEX).is_file() {
        return true;
    }
    if dir.join("summary.json").is_file() {
        return false;
    }
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.path().join("summary.json").is_file())
        })
        .unwrap_or(false)
}

/// Rebuilds the report of a sweep or run directory. `comps` lets a run report name the
/// decisions and options of its space (read from `config.resolved.yaml`).
pub fn report_dir(dir: &Path, comps: Option<&Components>) -> Result<Report> {
    if !dir.is_dir() {
        return Err(NasError::Other(format!(
            "`{}` is not a directory (give a sweep or run directory)",
            dir.display()
        )));
    }
    if is_sweep_dir(dir) {
        return Ok(Report::Sweep(write_sweep_report(dir, None, comps)?));
    }
    if dir.join("summary.json").is_file() || dir.join("metrics.jsonl").is_file() {
        return Ok(Report::Run(write_run_report(dir, comps)?));
    }
    Err(NasError::Other(format!(
        "`{}` is neither a sweep directory (sweep.json or runs with summary.json) nor a run \
         directory (summary.json, metrics.jsonl)",
        dir.display()
    )))
}

/// Reads a JSON-lines file: every line that is a JSON object (a line cut short by a crash
/// is skipped); an absent file gives no lines.
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .collect())
}

/// The number at `key` of a JSON line.
pub fn num(line: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<f64> {
    line.get(key)
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite())
}
