//! The report of a family directory (`nas family`, or `nas report` on its output): the
//! DARTS-CC family's parameters and retrained accuracy against `t`, beside random
//! architectures of the same sizes and the baselines, from the files alone.
//!
//! * `family.csv`: one row per entry and seed (status, test accuracy and loss, wall time).
//! * `table.csv`: one row per entry (test accuracy mean, std, min and max over the seeds).
//! * `report.md`: the family against its random controls, `t` by `t`, and every entry.
//! * `plots/acc_vs_params` (accuracy against parameters, `mean ± std` over seeds) and
//!   `plots/params_vs_t`, as SVG and PNG.
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

use crate::{EntryKind, FamilyEntry, FamilyIndex, FAMILY_INDEX};
use nas_report::plot::{save, ErrorBarFigure, ErrorBarSeries, Marker};
use nas_report::runs::csv_num;
use nas_report::stats::Stats;
use nas_rundir::files::write_atomic;

/// One retraining of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyRun {
    /// Seed.
    pub seed: u64,
    /// `finished`, `failed`, or `missing` (not trained yet).
    pub status: String,
    /// Test accuracy, when finished.
    pub test_acc: Option<f64>,
    /// Test loss, when finished.
    pub test_loss: Option<f64>,
    /// Wall time in seconds.
    pub wall_time_s: Option<f64>,
}

/// An entry with its retrainings.
#[derive(Debug, Clone)]
pub struct FamilyRow {
    /// The entry of `family.json`.
    pub entry: FamilyEntry,
    /// One per seed of the index.
    pub runs: Vec<FamilyRun>,
    /// Test accuracy over the finished runs.
    pub acc: Option<Stats>,
}

/// What the family report wrote.
#[derive(Debug)]
pub struct FamilyReport {
    /// One row per entry, in `family.json` order.
    pub rows: Vec<FamilyRow>,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

/// Whether `dir` is a family directory (it has `family.json`).
pub fn is_family_dir(dir: &Path) -> bool {
    dir.join(FAMILY_INDEX).is_file()
}

fn read_run(dir: &Path, seed: u64) -> Result<FamilyRun> {
    let p = dir.join("summary.json");
    let missing = FamilyRun {
        seed,
        status: "missing".into(),
        test_acc: None,
        test_loss: None,
        wall_time_s: None,
    };
    if !p.is_file() {
        return Ok(missing);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| NasError::io(&p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| NasError::Other(format!("{}: {e}", p.display())))?;
    let num = |k: &str| v[k].as_f64().filter(|x| x.is_finite());
    Ok(FamilyRun {
        seed,
        status: v["status"].as_str().unwrap_or("unknown").to_string(),
        test_acc: num("test_acc"),
        test_loss: num("test_loss"),
        wall_time_s: num("wall_time_s"),
    })
}

/// Reads the entries of `dir/family.json` and their retrainings.
pub fn collect_family(dir: &Path) -> Result<(FamilyIndex, Vec<FamilyRow>)> {
    let index = FamilyIndex::read(dir)?;
    let mut rows = Vec::with_capacity(index.entries.len());
    for e in &index.entries {
        let runs = index
            .seeds
            .iter()
            .map(|&s| read_run(&FamilyIndex::run_dir(dir, e, s), s))
            .collect::<Result<Vec<_>>>()?;
        let accs: Vec<f64> = runs
            .iter()
            .filter(|r| r.status == "finished")
            .filter_map(|r| r.test_acc)
            .collect();
        rows.push(FamilyRow {
            entry: e.clone(),
            acc: Stats::of(&accs),
            runs,
        });
    }
    Ok((index, rows))
}

fn opt(x: Option<f64>) -> String {
    csv_num(x)
}

fn csv_err(path: &Path, e: impl std::fmt::Display) -> NasError {
    NasError::Other(format!("writing {}: {e}", path.display()))
}

fn write_csv(path: &Path, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(|e| csv_err(path, e))?;
    for r in rows {
        w.write_record(&r).map_err(|e| csv_err(path, e))?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    write_atomic(path, &bytes)
}

/// `mean ± std (n)` as percentages, or `-`.
fn acc_cell(s: Option<&Stats>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n < 2 => format!("{:.2}% (1 seed)", s.mean * 100.0),
        Some(s) => format!(
            "{:.2} ± {:.2}% ({} seeds)",
            s.mean * 100.0,
            s.std * 100.0,
            s.n
        ),
    }
}

/// A whole number with thousands separators (`23,482`).
fn params_cell(p: f64) -> String {
    if !p.is_finite() {
        return "-".into();
    }
    let digits = format!("{}", p.round().abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if p < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Mean test accuracy of the random controls of the member at `t`, over controls and seeds.
fn random_at(rows: &[FamilyRow], t: f64) -> (Vec<&FamilyRow>, Option<Stats>) {
    let rs: Vec<&FamilyRow> = rows
        .iter()
        .filter(|r| r.entry.kind == EntryKind::Random && r.entry.t == Some(t))
        .collect();
    let accs: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.runs.iter())
        .filter(|x| x.status == "finished")
        .filter_map(|x| x.test_acc)
        .collect();
    (rs, Stats::of(&accs))
}

fn markdown(index: &FamilyIndex, rows: &[FamilyRow]) -> String {
    let mut md = String::new();
    md.push_str("# DARTS-CC family report\n\n");
    md.push_str(&format!(
        "Search run `{}`, `{}` extraction; every architecture retrained from scratch by the \
         `train` block of `{}`{} with seeds {:?}. Random controls: drawn by the same rule with \
         a parameter count within {:.0}% of the member's. Test accuracy: mean ± std over seeds.\n\n",
        index.search_run,
        index.mode,
        index.train_config,
        if index.sets.is_empty() {
            String::new()
        } else {
            format!(" (`--set {}`)", index.sets.join(" "))
        },
        index.seeds,
        index.tolerance * 100.0
    ));
    md.push_str("## The family against random architectures of the same sizes\n\n");
    md.push_str(
        "| t | lambda | parameters | test accuracy | random: parameters | random: test accuracy | family - random |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.entry.kind == EntryKind::Family) {
        let t = r.entry.t.unwrap_or(f64::NAN);
        let (rs, racc) = random_at(rows, t);
        let rparams = rs
            .iter()
            .map(|x| params_cell(x.entry.params))
            .collect::<Vec<_>>()
            .join(", ");
        let diff = match (&r.acc, &racc) {
            (Some(a), Some(b)) => format!("{:+.2} pt", (a.mean - b.mean) * 100.0),
            _ => "-".into(),
        };
        md.push_str(&format!(
            "| {t} | {:.2e} | {} | {} | {} | {} | {diff} |\n",
            r.entry.lambda.unwrap_or(f64::NAN),
            params_cell(r.entry.params),
            acc_cell(r.acc.as_ref()),
            if rparams.is_empty() {
                "-".into()
            } else {
                rparams
            },
            acc_cell(racc.as_ref()),
        ));
    }
    let baselines: Vec<&FamilyRow> = rows
        .iter()
        .filter(|r| r.entry.kind == EntryKind::Baseline)
        .collect();
    if !baselines.is_empty() {
        md.push_str("\n## Baselines\n\n| baseline | parameters | test accuracy | architecture |\n|---|---|---|---|\n");
        for r in baselines {
            md.push_str(&format!(
                "| {} | {} | {} | `{}` |\n",
                r.entry.label,
                params_cell(r.entry.params),
                acc_cell(r.acc.as_ref()),
                r.entry.notation
            ));
        }
    }
    md.push_str("\n## Every entry\n\n| id | kind | parameters | MACs | test accuracy | runs (finished/failed/missing) | architecture |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let count = |s: &str| r.runs.iter().filter(|x| x.status == s).count();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {}/{}/{} | `{}` |\n",
            r.entry.id,
            r.entry.kind.name(),
            params_cell(r.entry.params),
            params_cell(r.entry.flops),
            acc_cell(r.acc.as_ref()),
            count("finished"),
            count("failed"),
            count("missing"),
            r.entry.notation
        ));
    }
    md.push_str("\n![accuracy against parameters](plots/acc_vs_params.svg)\n\n![parameters against t](plots/params_vs_t.svg)\n");
    md
}

/// The unit parameters are plotted in: thousands below a million, else millions.
fn params_unit(rows: &[FamilyRow]) -> (f64, &'static str) {
    let max = rows.iter().map(|r| r.entry.params).fold(0.0, f64::max);
    if max >= 1e6 {
        (1e6, "parameters (millions)")
    } else {
        (1e3, "parameters (thousands)")
    }
}

fn point(r: &FamilyRow, scale: f64) -> (f64, f64, f64) {
    let (m, s) = r
        .acc
        .as_ref()
        .map(|a| (a.mean * 100.0, a.std * 100.0))
        .unwrap_or((f64::NAN, f64::NAN));
    (r.entry.params / scale, m, s)
}

fn plots(dir: &Path, rows: &[FamilyRow]) -> Result<Vec<PathBuf>> {
    let plots = dir.join("plots");
    let (scale, x_label) = params_unit(rows);
    let of = |k: EntryKind| rows.iter().filter(move |r| r.entry.kind == k);
    let mut family: Vec<&FamilyRow> = of(EntryKind::Family).collect();
    family.sort_by(|a, b| {
        a.entry
            .t
            .partial_cmp(&b.entry.t)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut series = vec![ErrorBarSeries {
        name: "DARTS-CC family".into(),
        points: family.iter().map(|r| point(r, scale)).collect(),
        joined: true,
        marker: Marker::Circle,
        labels: family
            .iter()
            .map(|r| format!("t={}", r.entry.t.unwrap_or(f64::NAN)))
            .collect(),
    }];
    let random: Vec<&FamilyRow> = of(EntryKind::Random).collect();
    if !random.is_empty() {
        series.push(ErrorBarSeries {
            name: "random, same sizes".into(),
            points: random.iter().map(|r| point(r, scale)).collect(),
            joined: false,
            marker: Marker::Triangle,
            labels: Vec::new(),
        });
    }
    for r in of(EntryKind::Baseline) {
        series.push(ErrorBarSeries {
            name: r.entry.label.clone(),
            points: vec![point(r, scale)],
            joined: false,
            marker: Marker::Cross,
            labels: Vec::new(),
        });
    }
    let mut files = save(
        &ErrorBarFigure {
            title: "Retrained test accuracy against parameters (mean ± std over seeds)".into(),
            x_label: x_label.into(),
            y_label: "test accuracy (%)".into(),
            series,
        },
        &plots.join("acc_vs_params"),
    )?;
    let by_t = |k: EntryKind, name: &str, joined: bool, marker: Marker| ErrorBarSeries {
        name: name.into(),
        points: {
            let mut p: Vec<(f64, f64, f64)> = of(k)
                .filter_map(|r| Some((r.entry.t?, r.entry.params / scale, f64::NAN)))
                .collect();
            p.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            p
        },
        joined,
        marker,
        labels: Vec::new(),
    };
    let mut series = vec![by_t(
        EntryKind::Family,
        "DARTS-CC family",
        true,
        Marker::Circle,
    )];
    if !random.is_empty() {
        series.push(by_t(
            EntryKind::Random,
            "random, same sizes",
            false,
            Marker::Triangle,
        ));
    }
    files.extend(save(
        &ErrorBarFigure {
            title: "Parameters of the family against the complexity t".into(),
            x_label: "t = (log10 lambda - L_min) / (L_max - L_min)".into(),
            y_label: x_label.into(),
            series,
        },
        &plots.join("params_vs_t"),
    )?);
    Ok(files)
}

/// Rebuilds `family.csv`, `table.csv`, `report.md` and `plots/` of the family directory
/// `dir` from its files.
pub fn write_family_report(dir: &Path) -> Result<FamilyReport> {
    let (index, rows) = collect_family(dir)?;
    let mut files = Vec::new();
    let runs_csv = dir.join("family.csv");
    let mut lines = Vec::new();
    for r in &rows {
        for x in &r.runs {
            lines.push(vec![
                r.entry.id.clone(),
                r.entry.kind.name().into(),
                r.entry.label.clone(),
                opt(r.entry.t),
                opt(r.entry.lambda),
                opt(r.entry.target_params),
                opt(Some(r.entry.params)),
                opt(Some(r.entry.flops)),
                x.seed.to_string(),
                x.status.clone(),
                opt(x.test_acc),
                opt(x.test_loss),
                opt(x.wall_time_s),
            ]);
        }
    }
    write_csv(
        &runs_csv,
        &[
            "id",
            "kind",
            "label",
            "t",
            "lambda",
            "target_params",
            "params",
            "flops",
            "seed",
            "status",
            "test_acc",
            "test_loss",
            "wall_time_s",
        ],
        lines,
    )?;
    files.push(runs_csv);
    let table_csv = dir.join("table.csv");
    let lines = rows
        .iter()
        .map(|r| {
            let a = r.acc.as_ref();
            vec![
                r.entry.id.clone(),
                r.entry.kind.name().into(),
                r.entry.label.clone(),
                opt(r.entry.t),
                opt(r.entry.lambda),
                opt(Some(r.entry.params)),
                opt(Some(r.entry.flops)),
                a.map(|s| s.n).unwrap_or(0).to_string(),
                opt(a.map(|s| s.mean)),
                opt(a.map(|s| s.std)),
                opt(a.map(|s| s.min)),
                opt(a.map(|s| s.max)),
                r.entry.notation.clone(),
            ]
        })
        .collect();
    write_csv(
        &table_csv,
        &[
            "id",
            "kind",
            "label",
            "t",
            "lambda",
            "params",
            "flops",
            "n",
            "test_acc_mean",
            "test_acc_std",
            "test_acc_min",
            "test_acc_max",
            "architecture",
        ],
        lines,
    )?;
    files.push(table_csv);
    let md = dir.join("report.md");
    write_atomic(&md, markdown(&index, &rows).as_bytes())?;
    files.push(md);
    files.extend(plots(dir, &rows)?);
    Ok(FamilyReport { rows, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(params_cell(23482.0), "23,482");
        assert_eq!(params_cell(8154.4), "8,154");
        assert_eq!(params_cell(999.0), "999");
        assert_eq!(params_cell(1_930_618.0), "1,930,618");
        assert_eq!(params_cell(f64::NAN), "-");
    }
}
