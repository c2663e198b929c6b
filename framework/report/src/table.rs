//! The comparison table of a sweep: runs grouped (by `label` unless the sweep says
//! otherwise), with mean, standard deviation, minimum and maximum over the finished runs of
//! each group, as Markdown and as CSV.
use std::path::Path;

use nas_core::{NasError, Result};

use super::runs::{csv_num, metric_names, RunRow};
use super::stats::Stats;
use nas_rundir::files::write_atomic;

/// The runs of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's values of the grouping columns, joined with `, `.
    pub name: String,
    /// Runs in the group (any status).
    pub runs: usize,
    /// Finished runs.
    pub finished: usize,
    /// Per metric, statistics over the finished runs that report it.
    pub stats: Vec<(String, Stats)>,
}

impl Group {
    /// The statistics of `metric`, if any finished run reported it.
    pub fn stat(&self, metric: &str) -> Option<&Stats> {
        self.stats.iter().find(|(m, _)| m == metric).map(|(_, s)| s)
    }
}

/// Groups `rows` by the values of `group_by` (in the order groups first appear) and
/// computes the statistics of every metric over each group's finished runs.
pub fn group_rows(rows: &[RunRow], group_by: &[String]) -> Vec<Group> {
    let keys: Vec<String> = if group_by.is_empty() {
        vec!["label".into()]
    } else {
        group_by.to_vec()
    };
    let metrics = metric_names(rows);
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        let n = group_name(r, &keys);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let members: Vec<&RunRow> = rows
                .iter()
                .filter(|r| group_name(r, &keys) == name)
                .collect();
            let done: Vec<&&RunRow> = members.iter().filter(|r| r.finished()).collect();
            let stats = metrics
                .iter()
                .filter_map(|m| {
                    let xs: Vec<f64> = done
                        .iter()
                        .filter_map(|r| r.metrics.get(m))
                        .copied()
                        .collect();
                    Stats::of(&xs).map(|s| (m.clone(), s))
                })
                .collect();
            Group {
                name,
                runs: members.len(),
                finished: done.len(),
                stats,
            }
        })
        .collect()
}

/// A row's group name under `keys`.
pub fn group_name(r: &RunRow, keys: &[String]) -> String {
    keys.iter()
        .map(|k| r.column(k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decimals for a Markdown table showing numbers of the size of `x`: none from 10,000 on,
/// two from 1 on, four below.
pub fn decimals_for(x: f64) -> usize {
    if x.abs() >= 1e4 {
        0
    } else if x.abs() >= 1.0 {
        2
    } else {
        4
    }
}

/// A number for a Markdown table with `decimals` decimals (none for whole numbers when
/// `decimals` comes from [`decimals_for`] of a whole mean); `–` when not finite.
pub fn fmt_fixed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "–".into()
    }
}

/// A number for a Markdown table, with [`decimals_for`] itself.
pub fn fmt_num(x: f64) -> String {
    fmt_fixed(x, decimals_for(x))
}

/// The decimals of a statistic's row: from its mean's size; none when every value is whole.
fn stat_decimals(st: &Stats) -> usize {
    let whole = [st.mean, st.min, st.max].iter().all(|v| v.fract() == 0.0);
    if whole && (st.std == 0.0 || !st.std.is_finite()) {
        0
    } else {
        decimals_for(st.mean)
    }
}

/// The metrics the Markdown table shows: `wanted` when given (those present), else up to
/// six of the preferred ones present.
pub fn table_metrics(groups: &[Group], rows: &[RunRow], wanted: &[String]) -> Vec<String> {
    let present = |m: &str| groups.iter().any(|g| g.stat(m).is_some());
    if !wanted.is_empty() {
        return wanted.iter().filter(|m| present(m)).cloned().collect();
    }
    metric_names(rows)
        .into_iter()
        .filter(|m| super::runs::PREFERRED_METRICS.contains(&m.as_str()) && present(m))
        .take(6)
        .collect()
}

/// The Markdown tables: an overview (`mean ± std` of each metric per group) and, per
/// metric, `n, mean, std, min, max` per group.
pub fn markdown_tables(groups: &[Group], group_by: &[String], metrics: &[String]) -> String {
    let head = if group_by.is_empty() {
        "label".to_string()
    } else {
        group_by.join(", ")
    };
    let mut s = String::new();
    s.push_str(&format!("| {head} | runs (finished) |"));
    for m in metrics {
        s.push_str(&format!(" {m} |"));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(metrics.len()));
    s.push('\n');
    for g in groups {
        s.push_str(&format!("| {} | {} ({}) |", g.name, g.runs, g.finished));
        for m in metrics {
            let cell = match g.stat(m) {
                Some(st) if st.n >= 2 && st.std > 0.0 => {
                    let d = stat_decimals(st);
                    format!("{} ± {}", fmt_fixed(st.mean, d), fmt_fixed(st.std, d))
                }
                Some(st) => fmt_fixed(st.mean, stat_decimals(st)),
                None => "–".into(),
            };
            s.push_str(&format!(" {cell} |"));
        }
        s.push('\n');
    }
    for m in metrics {
        s.push_str(&format!(
            "\n### {m}\n\n| {head} | n | mean | std | min | max |\n|---|---|---|---|---|---|\n"
        ));
        for g in groups {
            if let Some(st) = g.stat(m) {
                let d = stat_decimals(st);
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    g.name,
                    st.n,
                    fmt_fixed(st.mean, d),
                    fmt_fixed(st.std, d),
                    fmt_fixed(st.min, d),
                    fmt_fixed(st.max, d)
                ));
            }
        }
    }
    s
}

/// Writes the long-form table (`group, runs, finished, metric, n, mean, std, min, max`, one
/// line per group and metric, full precision) to `path`.
pub fn write_table_csv(path: &Path, groups: &[Group], group_by: &[String]) -> Result<()> {
    let err = |e: csv::Error| NasError::Other(format!("writing {}: {e}", path.display()));
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = if group_by.is_empty() {
        "label".to_string()
    } else {
        group_by.join("+")
    };
    w.write_record([
        head.as_str(),
        "runs",
        "finished",
        "metric",
        "n",
        "mean",
        "std",
        "min",
        "max",
    ])
    .map_err(err)?;
    for g in groups {
        for (m, st) in &g.stats {
            w.write_record([
                g.name.clone(),
                g.runs.to_string(),
                g.finished.to_string(),
                m.clone(),
                st.n.to_string(),
                csv_num(Some(st.mean)),
                csv_num(Some(st.std)),
                csv_num(Some(st.min)),
                csv_num(Some(st.max)),
            ])
            .map_err(err)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| NasError::Other(format!("writing {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}
