//! The retrain part of a sweep report: `retrain.csv` (one row per run and retraining seed),
//! the "Retrained" table of `report.md` (per group: retrained test accuracy mean ± std,
//! parameters, FLOPs, search cost) and `plots/retrained_acc_vs_params`.
//!
//! Read from the files alone: every `DIR/<run id>/retrain-s<seed>/summary.json`.
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

use super::plot::{save, ScatterFigure};
use super::runs::{csv_num, RunRow};
use super::stats::Stats;
use super::table::{fmt_num, group_name};
use nas_rundir::files::write_atomic;

/// One retraining of one run's architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainRow {
    /// The search run's position in the plan.
    pub index: usize,
    /// The search run's id.
    pub id: String,
    /// The group the search run belongs to (see `report.group_by`).
    pub group: String,
    /// The search run's seed.
    pub search_seed: u64,
    /// The retraining seed.
    pub seed: u64,
    /// `finished`, `failed`, or `running` (interrupted; no summary yet).
    pub status: String,
    /// Final test accuracy of the retrained network.
    pub test_acc: Option<f64>,
    /// Parameters of the retrained network (excluding an auxiliary head).
    pub params: Option<f64>,
    /// Multiply-accumulates per example.
    pub flops: Option<f64>,
    /// Wall-clock seconds of the retraining.
    pub retrain_wall_time_s: Option<f64>,
    /// Wall-clock seconds of the search that found the architecture.
    pub search_wall_time_s: Option<f64>,
    /// The search's CPU hours: its wall time times the CPUs a run had.
    pub search_cpu_hours: Option<f64>,
    /// The architecture, in the space's notation.
    pub architecture: String,
    /// Why it failed.
    pub error: Option<String>,
}

fn seed_of(name: &str) -> Option<u64> {
    name.strip_prefix("retrain-s")?.parse().ok()
}

/// The retrainings under the runs `rows` (sorted by run, then seed), grouped by `keys`.
/// `cpus_per_run`: the CPUs each search had (for CPU hours), when known.
pub fn collect_retrains(
    rows: &[RunRow],
    keys: &[String],
    cpus_per_run: Option<f64>,
) -> Result<Vec<RetrainRow>> {
    let mut out = Vec::new();
    for r in rows {
        let Ok(entries) = std::fs::read_dir(&r.dir) else {
            continue;
        };
        let mut seeds: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                Some((seed_of(&name)?, e.path()))
            })
            .filter(|(_, p)| p.is_dir())
            .collect();
        seeds.sort();
        for (seed, dir) in seeds {
            let p = dir.join("summary.json");
            let s: serde_json::Value = match std::fs::read_to_string(&p) {
                Ok(t) => serde_json::from_str(&t).map_err(|e| NasError::data(&p, e.to_string()))?,
                Err(_) => serde_json::json!({"status": "running"}),
            };
            let f = |k: &str| s[k].as_f64();
            let wall = r.metrics.get("wall_time_s").copied();
            out.push(RetrainRow {
                index: r.index,
                id: r.id.clone(),
                group: group_name(r, keys),
                search_seed: r.seed,
                seed,
                status: s["status"].as_str().unwrap_or("unknown").to_string(),
                test_acc: f("test_acc"),
                params: f("params"),
                flops: f("flops"),
                retrain_wall_time_s: f("wall_time_s"),
                search_wall_time_s: wall,
                search_cpu_hours: wall.zip(cpus_per_run).map(|(w, c)| w * c / 3600.0),
                architecture: s["architecture"].as_str().unwrap_or_default().to_string(),
                error: s["stop_reason"].as_str().map(String::from),
            });
        }
    }
    Ok(out)
}

/// Writes `retrain.csv`.
pub fn write_retrain_csv(path: &Path, rows: &[RetrainRow]) -> Result<()> {
    let err = |e: csv::Error| NasError::Other(format!("writing {}: {e}", path.display()));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "index",
        "id",
        "group",
        "search_seed",
        "retrain_seed",
        "status",
        "test_acc",
        "params",
        "flops",
        "retrain_wall_time_s",
        "search_wall_time_s",
        "search_cpu_hours",
        "architecture",
        "error",
    ])
    .map_err(err)?;
    for r in rows {
        w.write_record([
            r.index.to_string(),
            r.id.clone(),
            r.group.clone(),
            r.search_seed.to_string(),
            r.seed.to_string(),
            r.status.clone(),
            csv_num(r.test_acc),
            csv_num(r.params),
            csv_num(r.flops),
            csv_num(r.retrain_wall_time_s),
            csv_num(r.search_wall_time_s),
            csv_num(r.search_cpu_hours),
            r.architecture.clone(),
            r.error.clone().unwrap_or_default(),
        ])
        .map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| NasError::Other(format!("writing {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// `mean ± std` (or the mean alone for one value), `-` for none.
fn mean_std(xs: &[Option<f64>]) -> String {
    let v: Vec<f64> = xs.iter().flatten().copied().collect();
    match Stats::of(&v) {
        None => "-".into(),
        Some(s) if s.n < 2 => fmt_num(s.mean),
        Some(s) => format!("{} ± {}", fmt_num(s.mean), fmt_num(s.std)),
    }
}

/// The groups of `rows`, in order of first appearance.
fn groups(rows: &[RetrainRow]) -> Vec<String> {
    let mut g: Vec<String> = Vec::new();
    for r in rows {
        if !g.contains(&r.group) {
            g.push(r.group.clone());
        }
    }
    g
}

/// The "Retrained" table: per group, over its finished retrainings (every run and seed),
/// the test accuracy, parameters and FLOPs as mean ± std (sample std, n - 1), and the search
/// cost of its runs (each search counted once).
pub fn retrain_markdown(rows: &[RetrainRow]) -> String {
    let mut md = String::from(
        "| group | retrainings | test_acc | params | FLOPs | search wall time (s) | \
         search CPU hours | retrain wall time (s) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for g in groups(rows) {
        let done: Vec<&RetrainRow> = rows
            .iter()
            .filter(|r| r.group == g && r.status == "finished")
            .collect();
        let all = rows.iter().filter(|r| r.group == g).count();
        let mut searches: Vec<&RetrainRow> = Vec::new();
        for r in rows.iter().filter(|r| r.group == g) {
            if !searches.iter().any(|s| s.id == r.id) {
                searches.push(r);
            }
        }
        let col = |f: &dyn Fn(&RetrainRow) -> Option<f64>, of: &[&RetrainRow]| {
            mean_std(&of.iter().map(|r| f(r)).collect::<Vec<_>>())
        };
        md.push_str(&format!(
            "| {g} | {}/{all} | {} | {} | {} | {} | {} | {} |\n",
            done.len(),
            col(&|r| r.test_acc, &done),
            col(&|r| r.params, &done),
            col(&|r| r.flops, &done),
            col(&|r| r.search_wall_time_s, &searches),
            col(&|r| r.search_cpu_hours, &searches),
            col(&|r| r.retrain_wall_time_s, &done),
        ));
    }
    md
}

/// `plots/retrained_acc_vs_params`: the retrained test accuracy of each run (mean over its
/// seeds) against its parameters, one colour per group.
pub fn retrain_plot(dir: &Path, rows: &[RetrainRow]) -> Result<Option<(String, Vec<PathBuf>)>> {
    let mut pts = Vec::new();
    for g in groups(rows) {
        let mut ids: Vec<&str> = Vec::new();
        for r in rows.iter().filter(|r| r.group == g) {
            if !ids.contains(&r.id.as_str()) {
                ids.push(&r.id);
            }
        }
        let p: Vec<(f64, f64)> = ids
            .iter()
            .filter_map(|id| {
                let of: Vec<&RetrainRow> = rows
                    .iter()
                    .filter(|r| r.id == *id && r.status == "finished")
                    .collect();
                let acc: Vec<f64> = of.iter().filter_map(|r| r.test_acc).collect();
                let params = of.first()?.params?;
                Some((params / 1e6, Stats::of(&acc)?.mean))
            })
            .collect();
        if !p.is_empty() {
            pts.push((g, p));
        }
    }
    if pts.is_empty() {
        return Ok(None);
    }
    let fig = ScatterFigure {
        title: "Retrained test accuracy vs parameters (one point per search, mean over seeds)"
            .into(),
        x_label: "parameters (millions)".into(),
        y_label: "retrained test_acc".into(),
        groups: pts,
    };
    let files = save(&fig, &dir.join("plots").join("retrained_acc_vs_params"))?;
    Ok(Some(("retrained test_acc vs parameters".into(), files)))
}
