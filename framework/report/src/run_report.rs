//! The report of one run directory: loss and accuracy curves, the alpha history per edge
//! (plot and `alpha_history.npy`), and diagrams of the derived cells.
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result, SpaceSpec};

use super::cell::CellGraph;
use super::npy;
use super::plot::{save, BandSeries, LineFigure, Panel, PanelsFigure};
use super::stats::BandPoint;
use super::{num, read_jsonl};
use nas_registry::Components;
use nas_rundir::files::write_atomic;
use nas_rundir::read_summary;

/// What a run report wrote.
#[derive(Debug)]
pub struct RunReport {
    /// The run directory.
    pub dir: PathBuf,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The text of the run's `report.md`.
    pub markdown: String,
}

type Line = serde_json::Map<String, serde_json::Value>;

/// Lines of `y` against the x key: one series per metric name matching `pick`.
fn metric_series(lines: &[&Line], x: &str, pick: impl Fn(&str) -> bool) -> Vec<BandSeries> {
    let mut names: Vec<String> = lines
        .iter()
        .flat_map(|l| l.keys().cloned())
        .filter(|k| pick(k))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let points: Vec<BandPoint> = lines
                .iter()
                .filter_map(|l| {
                    let xv = num(l, x)? + if x == "epoch" { 1.0 } else { 0.0 };
                    Some(BandPoint {
                        x: xv,
                        mean: num(l, &name)?,
                        std: 0.0,
                        n: 1,
                    })
                })
                .collect();
            (!points.is_empty()).then_some(BandSeries { name, points })
        })
        .collect()
}

/// Loss and accuracy curves: over epochs when the run has two or more epoch lines, else over
/// steps.
fn curves(dir: &Path, out: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let lines = read_jsonl(&dir.join("metrics.jsonl"))?;
    let kind = |k: &str| -> Vec<&Line> {
        lines
            .iter()
            .filter(|l| l.get("kind").and_then(|v| v.as_str()) == Some(k))
            .collect()
    };
    let epochs = kind("epoch");
    let (sel, x, x_label) = if epochs.len() >= 2 {
        (epochs, "epoch", "epoch")
    } else {
        (kind("step"), "global_step", "step")
    };
    let mut out_files = Vec::new();
    for (what, stem, pick) in [
        (
            "loss",
            "loss",
            Box::new(|k: &str| k.contains("loss")) as Box<dyn Fn(&str) -> bool>,
        ),
        (
            "accuracy",
            "accuracy",
            Box::new(|k: &str| k.contains("acc") && !k.ends_with("_epochs")),
        ),
    ] {
        let series = metric_series(&sel, x, pick);
        if series.is_empty() {
            continue;
        }
        let fig = LineFigure {
            title: format!("{what} per {x_label}"),
            x_label: x_label.into(),
            y_label: what.into(),
            series,
            steps: false,
            bands: false,
            focus_tail: false,
        };
        out_files.push((
            format!("{what} per {x_label}"),
            save(&fig, &out.join(stem))?,
        ));
    }
    Ok(out_files)
}

/// The space, rebuilt from `config.resolved.yaml` (for decision keys, option names and cell
/// diagrams); `None` when that is not possible.
fn space_of(dir: &Path, comps: Option<&Components>) -> Option<nas_registry::SpaceBox> {
    let comps = comps?;
    let exp = nas_config::load_experiment(&dir.join("config.resolved.yaml"), &[]).ok()?;
    nas_registry::build_space(&exp, comps, nas_registry::data_shape(None)).ok()
}

/// The alpha history as one array.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaArray {
    /// The epoch of each row (`-1`: before the first epoch).
    pub epochs: Vec<i64>,
    /// Decisions per row.
    pub decisions: usize,
    /// Options per decision (the most any decision has).
    pub options: usize,
    /// `[T, decisions, options]` in C order, NaN where a decision has fewer options.
    pub data: Vec<f32>,
}

/// The alpha history lines as an [`AlphaArray`]; `None` when there is none.
pub fn alpha_array(lines: &[Line]) -> Result<Option<AlphaArray>> {
    let mut epochs = Vec::new();
    let mut rows: Vec<Vec<Vec<f64>>> = Vec::new();
    for l in lines {
        let (Some(e), Some(w)) = (l.get("epoch").and_then(|v| v.as_i64()), l.get("weights")) else {
            continue;
        };
        let w: Vec<Vec<f64>> = serde_json::from_value(w.clone())
            .map_err(|err| NasError::Other(format!("alpha_history.jsonl: weights: {err}")))?;
        epochs.push(e);
        rows.push(w);
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let d = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let k = rows
        .iter()
        .flat_map(|r| r.iter().map(|o| o.len()))
        .max()
        .unwrap_or(0);
    let mut data = vec![f32::NAN; rows.len() * d * k];
    for (t, r) in rows.iter().enumerate() {
        for (i, o) in r.iter().enumerate() {
            for (j, &v) in o.iter().enumerate() {
                data[(t * d + i) * k + j] = v as f32;
            }
        }
    }
    Ok(Some(AlphaArray {
        epochs,
        decisions: d,
        options: k,
        data,
    }))
}

fn alpha_history(
    dir: &Path,
    out: &Path,
    spec: Option<&SpaceSpec>,
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let lines = read_jsonl(&dir.join("alpha_history.jsonl"))?;
    let Some(AlphaArray {
        epochs,
        decisions: d,
        options: k,
        data,
    }) = alpha_array(&lines)?
    else {
        return Ok(Vec::new());
    };
    let t = epochs.len();
    let arr = dir.join("alpha_history.npy");
    npy::write_f32(&arr, &[t, d, k], &data)?;
    let ep = dir.join("alpha_epochs.npy");
    npy::write_i64(&ep, &[t], &epochs)?;
    let mut files = vec![arr, ep];
    let legend: Vec<String> = (0..k)
        .map(|j| {
            spec.and_then(|s| s.decisions.first())
                .and_then(|dec| dec.options.get(j))
                .map(|o| o.name.clone())
                .unwrap_or_else(|| format!("option {j}"))
        })
        .collect();
    let panels: Vec<Panel> = (0..d)
        .map(|i| Panel {
            title: spec
                .and_then(|s| s.decisions.get(i))
                .map(|dec| dec.key.clone())
                .unwrap_or_else(|| format!("decision {i}")),
            lines: (0..k)
                .map(|j| {
                    (0..t)
                        .map(|ti| (epochs[ti] as f64 + 1.0, data[(ti * d + i) * k + j] as f64))
                        .filter(|p| p.1.is_finite())
                        .collect()
                })
                .collect(),
        })
        .collect();
    let all = data.iter().map(|&v| v as f64);
    let fig = PanelsFigure {
        title: "Mixing weights per edge over epochs (epoch 0: before training)".into(),
        x_label: "epoch".into(),
        legend,
        columns: if d > 8 { 4 } else { d.clamp(1, 3) },
        panels,
        y_range: Some(super::plot::padded_range(all)),
    };
    let plot_files = save(&fig, &out.join("alpha_history"))?;
    files.extend(plot_files.iter().cloned());
    Ok(vec![("alpha history per edge".into(), files)])
}

/// Cell diagrams of the architecture in `architecture.json`, as its space draws them
/// ([`nas_core::SpaceRules::cell_diagrams`]; the space is rebuilt from the run's config).
fn cells(
    dir: &Path,
    out: &Path,
    rules: Option<&dyn nas_core::SpaceRules>,
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let p = dir.join("architecture.json");
    let Some(rules) = rules.filter(|_| p.exists()) else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(&p).map_err(|e| NasError::io(&p, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| NasError::data(&p, e.to_string()))?;
    let Some(arch) = v.get("architecture") else {
        return Ok(Vec::new());
    };
    let arch = rules.parse_arch(&arch.to_string())?;
    rules
        .cell_diagrams(&arch)
        .iter()
        .map(|d| {
            let g = CellGraph::from_diagram(d);
            Ok((d.title.clone(), save(&g, &out.join(&d.stem))?))
        })
        .collect()
}

/// Writes the plots of the run directory `dir` into `dir/plots`, the alpha history as
/// `dir/alpha_history.npy` (`[T, decisions, options]`, f32) with `dir/alpha_epochs.npy`
/// (`[T]`, the epoch of each row, `-1` before the first), and `dir/report.md`.
pub fn write_run_report(dir: &Path, comps: Option<&Components>) -> Result<RunReport> {
    let out = dir.join("plots");
    let space = space_of(dir, comps);
    let rules = space.as_ref().map(|s| s.rules());
    let mut parts = curves(dir, &out)?;
    parts.extend(alpha_history(dir, &out, rules.map(|r| r.spec()))?);
    parts.extend(cells(dir, &out, rules)?);
    let summary = read_summary(dir)?;
    let mut md = format!(
        "# Run `{}`\n\n",
        summary
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| dir.display().to_string())
    );
    if let Some(s) = &summary {
        md.push_str(&format!(
            "Status: {} ({}). Strategy `{}` on space `{}`, seed {}, {} epochs, {:.1} s.\n\n",
            s.status, s.stop_reason, s.strategy, s.space, s.seed, s.epochs, s.wall_time_s
        ));
        if let Some(a) = &s.architecture {
            md.push_str(&format!("Architecture: `{a}`\n\n"));
        }
        if !s.final_metrics.is_empty() {
            md.push_str("| metric | value |\n|---|---|\n");
            for (k, v) in &s.final_metrics {
                md.push_str(&format!("| {k} | {v} |\n"));
            }
            md.push('\n');
        }
    }
    let mut files = Vec::new();
    for (title, paths) in &parts {
        if let Some(png) = paths
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "png"))
        {
            let rel = png.strip_prefix(dir).unwrap_or(png);
            md.push_str(&format!("## {title}\n\n![{title}]({})\n\n", rel.display()));
        }
        files.extend(paths.iter().cloned());
    }
    let report = dir.join("report.md");
    write_atomic(&report, md.as_bytes())?;
    files.push(report);
    Ok(RunReport {
        dir: dir.to_path_buf(),
        files,
        markdown: md,
    })
}
