//! The runs of a sweep directory as flat rows: `sweep.json` (the plan and each run's
//! status) joined with each run's `summary.json`; and `runs.csv`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};
use serde::{Deserialize, Serialize};

use nas_rundir::files::write_atomic;
use nas_rundir::{read_summary, RunStatus, RunSummary};

/// The file a sweep keeps in its directory: what it planned and how each run went.
pub const SWEEP_INDEX: &str = "sweep.json";

/// What the report tabulates (from the sweep file's `report` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSettings {
    /// Metrics of the Markdown table; empty: a default choice among those present.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Columns that group runs (`label`, `seed` or a matrix key).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
}

fn default_group_by() -> Vec<String> {
    vec!["label".into()]
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            metrics: Vec::new(),
            group_by: default_group_by(),
        }
    }
}

/// One planned run in `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedRun {
    /// Position in the plan.
    pub index: usize,
    /// Run id = its directory name.
    pub id: String,
    /// Strategy label.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// The value of each matrix axis (dotted key) for this run.
    #[serde(default)]
    pub axes: BTreeMap<String, serde_json::Value>,
    /// `pending`, `running`, `finished`, `failed`, `skipped` (finished before) or
    /// `not_started` (the sweep stopped before it).
    pub status: String,
    /// The error of a failed run.
    #[serde(default)]
    pub error: Option<String>,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepIndex {
    /// The sweep's name.
    pub name: String,
    /// The sweep file it was planned from.
    pub file: String,
    /// The report settings.
    #[serde(default)]
    pub report: ReportSettings,
    /// Every planned run, in plan order.
    pub runs: Vec<IndexedRun>,
    /// CPUs each run had (the report's CPU hours are wall time times this): the machine's
    /// CPUs over `jobs` for the local executor, `--cpus-per-task` for Slurm.
    #[serde(default)]
    pub cpus_per_run: Option<f64>,
}

impl SweepIndex {
    /// Reads `dir/sweep.json`.
    pub fn read(dir: &Path) -> Result<SweepIndex> {
        let p = dir.join(SWEEP_INDEX);
        let text = std::fs::read_to_string(&p).map_err(|e| NasError::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| NasError::data(&p, e.to_string()))
    }
}

/// One run as a flat row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Position in the plan.
    pub index: usize,
    /// Run id (directory name).
    pub id: String,
    /// Strategy label.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// Matrix axis values, as text.
    pub axes: BTreeMap<String, String>,
    /// `finished`, `failed`, `not_started`, ...: the run's `summary.json` when it has one.
    pub status: String,
    /// The architecture found, in the space's notation.
    pub architecture: Option<String>,
    /// Every number the run reported: the final metrics of `summary.json` (nested objects
    /// flattened with dots), plus `wall_time_s`, `epochs`, and `arch_params` / `arch_flops`
    /// (the space's cost model for the architecture found).
    pub metrics: BTreeMap<String, f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Its directory.
    pub dir: PathBuf,
}

impl RunRow {
    /// The value of a grouping column: `label`, `seed`, `status`, `id` or an axis key.
    pub fn column(&self, key: &str) -> String {
        match key {
            "label" => self.label.clone(),
            "seed" => self.seed.to_string(),
            "status" => self.status.clone(),
            "id" => self.id.clone(),
            k => self.axes.get(k).cloned().unwrap_or_default(),
        }
    }

    /// Whether the run finished.
    pub fn finished(&self) -> bool {
        self.status == "finished"
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_string(), x);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {}
    }
}

/// The flat metrics of a summary (see [`RunRow::metrics`]).
pub fn summary_metrics(s: &RunSummary) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    flatten(
        "",
        &serde_json::Value::Object(s.final_metrics.clone()),
        &mut m,
    );
    m.insert("wall_time_s".into(), s.wall_time_s);
    m.insert("epochs".into(), s.epochs as f64);
    if let Some(p) = s.params {
        m.insert("arch_params".into(), p);
    }
    if let Some(f) = s.flops {
        m.insert("arch_flops".into(), f);
    }
    m
}

fn axis_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows of a sweep directory: from `sweep.json` when present, else every
/// subdirectory with a `summary.json` (label = the strategy's name).
pub fn collect_runs(dir: &Path) -> Result<(Option<SweepIndex>, Vec<RunRow>)> {
    if dir.join(SWEEP_INDEX).exists() {
        let index = SweepIndex::read(dir)?;
        let mut rows = Vec::new();
        for r in &index.runs {
            let rd = dir.join(&r.id);
            let summary = read_summary(&rd)?;
            let (status, metrics, architecture, error) = match &summary {
                Some(s) => (
                    s.status.to_string(),
                    summary_metrics(s),
                    s.architecture.clone(),
                    (s.status != RunStatus::Finished).then(|| s.stop_reason.clone()),
                ),
                None => (
                    match r.status.as_str() {
                        "pending" | "running" => "not_started".to_string(),
                        s => s.to_string(),
                    },
                    BTreeMap::new(),
                    None,
                    r.error.clone(),
                ),
            };
            rows.push(RunRow {
                index: r.index,
                id: r.id.clone(),
                label: r.label.clone(),
                seed: r.seed,
                axes: r
                    .axes
                    .iter()
                    .map(|(k, v)| (k.clone(), axis_text(v)))
                    .collect(),
                status,
                architecture,
                metrics,
                error,
                dir: rd,
            });
        }
        return Ok((Some(index), rows));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| NasError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    dirs.sort();
    let mut rows = Vec::new();
    for (i, rd) in dirs.into_iter().enumerate() {
        if let Some(s) = read_summary(&rd)? {
            rows.push(RunRow {
                index: i,
                id: rd
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                label: s.strategy.clone(),
                seed: s.seed,
                axes: BTreeMap::new(),
                status: s.status.to_string(),
                architecture: s.architecture.clone(),
                metrics: summary_metrics(&s),
                error: (s.status != RunStatus::Finished).then(|| s.stop_reason.clone()),
                dir: rd,
            });
        }
    }
    Ok((None, rows))
}

/// Metrics listed first in tables, in this order, when present.
pub const PREFERRED_METRICS: [&str; 10] = [
    "test_acc",
    "valid_acc",
    "best_fitness",
    "fitness",
    "queries",
    "search_seconds",
    "params",
    "arch_params",
    "flops",
    "wall_time_s",
];

/// Every metric name of `rows`: the preferred ones first, then the rest by name.
pub fn metric_names(rows: &[RunRow]) -> Vec<String> {
    let mut all: Vec<String> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect();
    all.sort();
    all.dedup();
    let mut out: Vec<String> = PREFERRED_METRICS
        .iter()
        .filter(|m| all.iter().any(|a| a == *m))
        .map(|m| m.to_string())
        .collect();
    let rest: Vec<String> = all.into_iter().filter(|a| !out.contains(a)).collect();
    out.extend(rest);
    out
}

/// Formats a number for CSV: full precision, empty when not finite.
pub fn csv_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

fn csv_err(path: &Path, e: impl std::fmt::Display) -> NasError {
    NasError::Other(format!("writing {}: {e}", path.display()))
}

/// Writes `runs.csv`: one row per run with `index, id, label, seed, status`, the axis
/// columns, every metric ([`metric_names`]), `architecture` and `error`.
pub fn write_runs_csv(path: &Path, rows: &[RunRow]) -> Result<()> {
    let mut axes: Vec<String> = rows.iter().flat_map(|r| r.axes.keys().cloned()).collect();
    axes.sort();
    axes.dedup();
    let metrics = metric_names(rows);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["index", "id", "label", "seed", "status"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(axes.iter().cloned());
    header.extend(metrics.iter().cloned());
    header.push("architecture".into());
    header.push("error".into());
    w.write_record(&header).map_err(|e| csv_err(path, e))?;
    for r in rows {
        let mut rec = vec![
            r.index.to_string(),
            r.id.clone(),
            r.label.clone(),
            r.seed.to_string(),
            r.status.clone(),
        ];
        rec.extend(
            axes.iter()
                .map(|a| r.axes.get(a).cloned().unwrap_or_default()),
        );
        rec.extend(metrics.iter().map(|m| csv_num(r.metrics.get(m).copied())));
        rec.push(r.architecture.clone().unwrap_or_default());
        rec.push(r.error.clone().unwrap_or_default());
        w.write_record(&rec).map_err(|e| csv_err(path, e))?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    write_atomic(path, &bytes)
}
