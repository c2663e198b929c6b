//! The report of a sweep directory: `runs.csv`, `table.csv`, `report.md`, `plots/`.
use std::path::{Path, PathBuf};

use nas_core::Result;

use super::plot::{save, BandSeries, LineFigure, ScatterFigure};
use super::retrain_report::{collect_retrains, retrain_markdown, retrain_plot, write_retrain_csv};
use super::runs::{collect_runs, write_runs_csv, ReportSettings, RunRow};
use super::stats::band;
use super::table::{
    group_name, group_rows, markdown_tables, table_metrics, write_table_csv, Group,
};
use super::{num, read_jsonl};
use nas_registry::Components;
use nas_rundir::files::write_atomic;

/// What a sweep report wrote and found.
#[derive(Debug)]
pub struct SweepReport {
    /// The sweep directory.
    pub dir: PathBuf,
    /// Every run, in plan order.
    pub rows: Vec<RunRow>,
    /// The groups and their statistics.
    pub groups: Vec<Group>,
    /// The text of `report.md`.
    pub markdown: String,
    /// The comparison table alone (Markdown), as printed at the end of a sweep.
    pub table: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// The accuracy that best-so-far plots show: the first of `test_acc`, `valid_acc`,
/// `best_fitness` that the runs' step lines report.
const CURVE_METRICS: [&str; 3] = ["test_acc", "valid_acc", "best_fitness"];

/// A best-so-far curve of one run: `(x, y)` from its step lines with both keys.
fn run_curve(
    lines: &[serde_json::Map<String, serde_json::Value>],
    kind: &str,
    x: &str,
    y: &str,
) -> Vec<(f64, f64)> {
    lines
        .iter()
        .filter(|l| l.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .filter_map(|l| Some((num(l, x)?, num(l, y)?)))
        .collect()
}

/// Which curve of each run: `y` against `x` from its `kind` lines, `x` shifted by
/// `x_offset`.
struct CurveSpec<'a> {
    kind: &'a str,
    x: &'a str,
    y: &'a str,
    x_offset: f64,
}

/// Per group, the band of the runs' curves.
fn group_bands(
    rows: &[RunRow],
    lines: &[Vec<serde_json::Map<String, serde_json::Value>>],
    keys: &[String],
    order: &[Group],
    c: &CurveSpec,
) -> Vec<BandSeries> {
    let CurveSpec {
        kind,
        x,
        y,
        x_offset,
    } = *c;
    order
        .iter()
        .filter_map(|g| {
            let curves: Vec<Vec<(f64, f64)>> = rows
                .iter()
                .zip(lines)
                .filter(|(r, _)| r.finished() && group_name(r, keys) == g.name)
                .map(|(_, l)| {
                    run_curve(l, kind, x, y)
                        .into_iter()
                        .map(|(a, b)| (a + x_offset, b))
                        .collect()
                })
                .filter(|c: &Vec<(f64, f64)>| !c.is_empty())
                .collect();
            if curves.is_empty() {
                return None;
            }
            Some(BandSeries {
                name: format!("{} (n={})", g.name, curves.len()),
                points: band(&curves),
            })
        })
        .collect()
}

/// Writes the plots of a sweep; returns `(markdown line, files)` per plot.
fn sweep_plots(
    dir: &Path,
    rows: &[RunRow],
    groups: &[Group],
    keys: &[String],
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let plots = dir.join("plots");
    let lines: Vec<_> = rows
        .iter()
        .map(|r| {
            if r.finished() {
                read_jsonl(&r.dir.join("metrics.jsonl"))
            } else {
                Ok(Vec::new())
            }
        })
        .collect::<Result<_>>()?;
    let has =
        |kind: &str, x: &str, y: &str| lines.iter().any(|l| !run_curve(l, kind, x, y).is_empty());
    let mut out = Vec::new();
    let y = CURVE_METRICS.iter().find(|m| has("step", "queries", m));
    if let Some(y) = y {
        let what = if *y == "test_acc" {
            "test accuracy of the incumbent (best by search signal)"
        } else {
            y
        };
        for (x, stem, x_label) in [
            ("queries", "best_vs_queries", "queries"),
            (
                "search_seconds",
                "best_vs_time",
                "search time (simulated seconds)",
            ),
        ] {
            let spec = CurveSpec {
                kind: "step",
                x,
                y,
                x_offset: 0.0,
            };
            let series = group_bands(rows, &lines, keys, groups, &spec);
            if series.is_empty() {
                continue;
            }
            let fig = LineFigure {
                title: format!("Best so far vs {x_label}: mean ± std over seeds"),
                x_label: x_label.into(),
                y_label: what.into(),
                series,
                steps: true,
                bands: true,
                focus_tail: true,
            };
            let files = save(&fig, &plots.join(stem))?;
            out.push((format!("{y} of the incumbent vs {x_label}"), files));
        }
    } else if let Some(y) = ["valid_acc", "test_acc", "train_acc"]
        .iter()
        .find(|m| has("epoch", "epoch", m))
    {
        let spec = CurveSpec {
            kind: "epoch",
            x: "epoch",
            y,
            x_offset: 1.0,
        };
        let series = group_bands(rows, &lines, keys, groups, &spec);
        let fig = LineFigure {
            title: format!("{y} per epoch: mean ± std over seeds"),
            x_label: "epoch".into(),
            y_label: y.to_string(),
            series,
            steps: false,
            bands: true,
            focus_tail: false,
        };
        out.push((
            format!("{y} per epoch"),
            save(&fig, &plots.join(format!("{y}_vs_epoch")))?,
        ));
    }
    // Accuracy against parameters: the table's own `params` (millions) when the runs
    // report it, else the space's cost model.
    let acc = ["test_acc", "valid_acc"].into_iter().find(|m| {
        rows.iter()
            .any(|r| r.finished() && r.metrics.contains_key(*m))
    });
    if let Some(acc) = acc {
        let params = |r: &RunRow| {
            r.metrics
                .get("params")
                .copied()
                .or_else(|| r.metrics.get("arch_params").map(|p| p / 1e6))
        };
        let pts: Vec<(String, Vec<(f64, f64)>)> = groups
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    rows.iter()
                        .filter(|r| r.finished() && group_name(r, keys) == g.name)
                        .filter_map(|r| Some((params(r)?, *r.metrics.get(acc)?)))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if !pts.is_empty() {
            let fig = ScatterFigure {
                title: format!("{acc} vs parameters of the architecture found (one point per run)"),
                x_label: "parameters (millions)".into(),
                y_label: acc.into(),
                groups: pts,
            };
            out.push((
                format!("{acc} vs parameters"),
                save(&fig, &plots.join("acc_vs_params"))?,
            ));
        }
    }
    Ok(out)
}

/// Rebuilds `runs.csv`, `table.csv`, `report.md` and `plots/` of the sweep directory `dir`
/// from its files. `settings` overrides the report block saved in `sweep.json`; with `comps`,
/// runs get the figures of their space's benchmark table ([`super::table_figures`]).
pub fn write_sweep_report(
    dir: &Path,
    settings: Option<&ReportSettings>,
    comps: Option<&Components>,
) -> Result<SweepReport> {
    let (index, mut rows) = collect_runs(dir)?;
    if let Some(comps) = comps {
        super::table_figures::add_table_figures(&mut rows, comps);
    }
    let settings = settings
        .cloned()
        .or_else(|| index.as_ref().map(|i| i.report.clone()))
        .unwrap_or_default();
    let keys = if settings.group_by.is_empty() {
        vec!["label".to_string()]
    } else {
        settings.group_by.clone()
    };
    let mut files = Vec::new();
    let runs_csv = dir.join("runs.csv");
    write_runs_csv(&runs_csv, &rows)?;
    files.push(runs_csv);
    let groups = group_rows(&rows, &keys);
    let table_csv = dir.join("table.csv");
    write_table_csv(&table_csv, &groups, &keys)?;
    files.push(table_csv);
    let metrics = table_metrics(&groups, &rows, &settings.metrics);
    let table = markdown_tables(&groups, &keys, &metrics);
    let mut plots = sweep_plots(dir, &rows, &groups, &keys)?;
    let cpus = index.as_ref().and_then(|i| i.cpus_per_run);
    let retrains = collect_retrains(&rows, &keys, cpus)?;
    let mut retrain_md = String::new();
    if !retrains.is_empty() {
        let csv = dir.join("retrain.csv");
        write_retrain_csv(&csv, &retrains)?;
        files.push(csv);
        retrain_md = format!(
            "\n## Retrained\n\nEvery architecture found, retrained from scratch with the \
             `train` block (and the sweep's `retrain` overrides) once per retraining seed: \
             statistics over a group's finished retrainings (mean ± sample std), search cost \
             over its searches (CPU hours: wall time x {} CPUs per run). Every retraining is \
             in `retrain.csv`.\n\n{}",
            cpus.map_or("?".to_string(), |c| format!("{c}")),
            retrain_markdown(&retrains)
        );
        if let Some(p) = retrain_plot(dir, &retrains)? {
            plots.push(p);
        }
    }

    let name = index.as_ref().map(|i| i.name.clone()).unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    let mut md = format!("# Sweep `{name}`\n\n");
    if let Some(i) = &index {
        md.push_str(&format!("Sweep file: `{}`.\n\n", i.file));
    }
    md.push_str(&format!(
        "{} runs: {} finished, {} failed, {} not run. Statistics are over the finished runs \
         of each group (std: sample standard deviation, n - 1). Every metric of every run is in \
         `runs.csv`; every statistic in `table.csv`.\n\n## Table\n\n",
        rows.len(),
        count("finished"),
        count("failed"),
        rows.len() - count("finished") - count("failed"),
    ));
    md.push_str(&table);
    md.push_str(&retrain_md);
    if !plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        for (title, paths) in &plots {
            if let Some(png) = paths
                .iter()
                .find(|p| p.extension().is_some_and(|e| e == "png"))
            {
                let rel = png.strip_prefix(dir).unwrap_or(png);
                md.push_str(&format!("![{title}]({})\n\n", rel.display()));
            }
        }
    }
    let failed: Vec<&RunRow> = rows.iter().filter(|r| r.status == "failed").collect();
    if !failed.is_empty() {
        md.push_str("## Failed runs\n\n| run | error |\n|---|---|\n");
        for r in failed {
            let e = r
                .error
                .clone()
                .unwrap_or_default()
                .replace('|', "\\|")
                .replace('\n', " ");
            md.push_str(&format!("| {} | {e} |\n", r.id));
        }
    }
    let report_md = dir.join("report.md");
    write_atomic(&report_md, md.as_bytes())?;
    files.push(report_md);
    files.extend(plots.into_iter().flat_map(|(_, f)| f));
    Ok(SweepReport {
        dir: dir.to_path_buf(),
        rows,
        groups,
        markdown: md,
        table,
        files,
    })
}
