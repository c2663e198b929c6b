//! Expanding a sweep into its runs: strategies x seeds x axes, minus excludes.
//!
//! Order: strategies (as listed), then seeds (as listed), then the axes (in key order, the
//! last key varying fastest, each in its listed order). Excluded combinations are dropped
//! before numbering, so indices are contiguous. Each run's config is built as: base experiment
//! (with its includes) <- sweep `set` <- the entry's `strategy` / `trainer` (replacing the base
//! blocks) <- the entry's `set` <- axis values <- seed <- `name` <- `--set` overrides.
use std::path::Path;

use nas_core::{NasError, Result};
use serde_json::Value;

use crate::experiment::Experiment;
use crate::source::{Layer, SourceMap};
use crate::sweep::{id_safe, Sweep};
use crate::tree::{get_path, set_path, split_path};
use crate::{experiment_from_parts, include, overrides};

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// Position in the plan, from 0.
    pub index: usize,
    /// `{index:03}-{label}-s{seed}` followed by `-{key}_{value}` for each axis (the key's last
    /// segment; characters other than letters, digits, `.`, `_`, `-` become `_`).
    pub id: String,
    /// The strategy's label.
    pub label: String,
    /// The run's seed.
    pub seed: u64,
    /// The run's experiment; its `name` is `{sweep name}-{id}`.
    pub experiment: Experiment,
}

/// One strategy of the plan: index in `matrix.strategies` (none: the base's own strategy).
struct Entry<'a> {
    label: String,
    entry: Option<(usize, &'a crate::sweep::MatrixEntry)>,
}

/// Writes settings into a run's value and records where they came from.
struct Builder<'a> {
    value: Value,
    sources: SourceMap,
    sweep_layer: &'a Layer,
}

impl Builder<'_> {
    /// Sets `key` (dotted) to `v`, written in the sweep file at `text_path`.
    fn set(&mut self, key: &[String], v: &Value, text_path: Vec<String>) -> Result<()> {
        let layer = Layer {
            name: self.sweep_layer.name.clone(),
            index: self.sweep_layer.index.clone(),
            mount: key.to_vec(),
            at: text_path.clone(),
            replaces: true,
        };
        set_path(&mut self.value, key, v.clone())
            .map_err(|m| SourceMap::new(vec![layer.clone()]).error(key, false, m))?;
        self.sources.push_top(layer);
        Ok(())
    }
}

fn segs(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Numbers compare by value (`3` matches `3.0`); everything else by JSON equality.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn id_part(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Every combination of axis value indices, last axis fastest.
fn axis_combos(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &n in lens {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..n).map(move |i| {
                    let mut c = prefix.clone();
                    c.push(i);
                    c
                })
            })
            .collect();
    }
    out
}

/// Expands `sweep` (read from `path`, against which `base` is resolved) into its runs, with
/// `sets` (`a.b=value`) applied last to every run. Every run's experiment is decoded and
/// checked; an error names the run and the place (sweep file, base file or `--set`).
pub fn plan_sweep(path: &Path, sweep: &Sweep, sets: &[String]) -> Result<Vec<PlannedRun>> {
    let base_path = path.parent().unwrap_or(Path::new("")).join(&sweep.base);
    let base = include::resolve(&base_path)?;
    let fallback_layer = Layer {
        name: path.display().to_string(),
        index: None,
        mount: Vec::new(),
        at: Vec::new(),
        replaces: true,
    };
    let sweep_layer = sweep
        .source
        .map()
        .and_then(SourceMap::main_layer)
        .unwrap_or(&fallback_layer);

    let entries: Vec<Entry> = if sweep.matrix.strategies.is_empty() {
        let name = get_path(&base.value, &segs(&["strategy", "name"]))
            .and_then(Value::as_str)
            .unwrap_or("base");
        let label = if id_safe(name) {
            name.to_string()
        } else {
            "base".into()
        };
        vec![Entry { label, entry: None }]
    } else {
        sweep
            .matrix
            .strategies
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                label: if e.label.is_empty() {
                    e.strategy.name.clone()
                } else {
                    e.label.clone()
                },
                entry: Some((i, e)),
            })
            .collect()
    };
    let seeds: Vec<Option<(usize, u64)>> = if sweep.matrix.seeds.is_empty() {
        vec![None]
    } else {
        sweep
            .matrix
            .seeds
            .iter()
            .copied()
            .enumerate()
            .map(Some)
            .collect()
    };
    let axes: Vec<(&String, &Vec<Value>)> = sweep.matrix.axes.iter().collect();
    let combos = axis_combos(&axes.iter().map(|(_, v)| v.len()).collect::<Vec<_>>());

    let mut runs = Vec::new();
    for entry in &entries {
        for seed in &seeds {
            for combo in &combos {
                let mut b = Builder {
                    value: base.value.clone(),
                    sources: base.sources.clone(),
                    sweep_layer,
                };
                for (k, v) in &sweep.set {
                    b.set(&split_path(k), v, segs(&["set", k]))?;
                }
                if let Some((i, e)) = entry.entry {
                    let i = i.to_string();
                    let strat = serde_json::to_value(&e.strategy)
                        .map_err(|err| NasError::Other(err.to_string()))?;
                    b.set(
                        &segs(&["strategy"]),
                        &strat,
                        segs(&["matrix", "strategies", &i, "strategy"]),
                    )?;
                    if let Some(t) = &e.trainer {
                        let t = serde_json::to_value(t)
                            .map_err(|err| NasError::Other(err.to_string()))?;
                        b.set(
                            &segs(&["trainer"]),
                            &t,
                            segs(&["matrix", "strategies", &i, "trainer"]),
                        )?;
                    }
                    for (k, v) in &e.set {
                        b.set(
                            &split_path(k),
                            v,
                            segs(&["matrix", "strategies", &i, "set", k]),
                        )?;
                    }
                }
                for (a, &vi) in combo.iter().enumerate() {
                    let (k, values) = axes[a];
                    let j = vi.to_string();
                    b.set(&split_path(k), &values[vi], segs(&["matrix", k, &j]))?;
                }
                if let Some((j, s)) = seed {
                    let j = j.to_string();
                    b.set(
                        &segs(&["seed"]),
                        &Value::from(*s),
                        segs(&["matrix", "seeds", &j]),
                    )?;
                }
                let run_seed = b.value.get("seed").and_then(Value::as_u64).unwrap_or(0);
                let excluded = sweep.exclude.iter().any(|ex| {
                    ex.iter().all(|(k, v)| match k.as_str() {
                        "label" => v.as_str() == Some(entry.label.as_str()),
                        "seed" => v.as_u64() == Some(run_seed),
                        _ => axes
                            .iter()
                            .zip(combo)
                            .any(|((ak, vals), &vi)| *ak == k && same(&vals[vi], v)),
                    })
                });
                if excluded {
                    continue;
                }
                let index = runs.len();
                let mut id = format!("{index:03}-{}-s{run_seed}", entry.label);
                for (a, &vi) in combo.iter().enumerate() {
                    let (k, values) = axes[a];
                    let short = k.rsplit('.').next().unwrap_or(k);
                    id.push_str(&format!(
                        "-{}_{}",
                        id_part(&Value::from(short)),
                        id_part(&values[vi])
                    ));
                }
                let name = Value::String(format!("{}-{id}", sweep.name));
                b.set(&segs(&["name"]), &name, segs(&["name"]))?;
                let Builder {
                    mut value,
                    mut sources,
                    ..
                } = b;
                overrides::apply_overrides(&mut value, &mut sources, sets)?;
                let experiment =
                    experiment_from_parts(value, sources, &id).map_err(|e| in_run(e, &id))?;
                runs.push(PlannedRun {
                    index,
                    label: entry.label.clone(),
                    seed: experiment.seed,
                    id,
                    experiment,
                });
            }
        }
    }
    Ok(runs)
}

/// Prefixes a config error's message with the run it is about.
fn in_run(e: NasError, id: &str) -> NasError {
    match e {
        NasError::Config {
            file,
            location,
            message,
        } => NasError::Config {
            file,
            location,
            message: format!("in sweep run {id}: {message}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combos_are_row_major() {
        assert_eq!(
            axis_combos(&[2, 3]),
            vec![
                vec![0, 0],
                vec![0, 1],
                vec![0, 2],
                vec![1, 0],
                vec![1, 1],
                vec![1, 2]
            ]
        );
        assert_eq!(axis_combos(&[]), vec![Vec::<usize>::new()]);
        assert!(axis_combos(&[2, 0]).is_empty());
    }

    #[test]
    fn id_parts_are_directory_safe() {
        assert_eq!(id_part(&Value::from("a b/c")), "a_b_c");
        assert_eq!(id_part(&Value::from(0.001)), "0.001");
        assert_eq!(id_part(&Value::from(true)), "true");
        assert_eq!(id_part(&serde_json::json!([1, 2])), "_1_2_");
    }
}
