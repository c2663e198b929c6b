//! Sweep files: a base experiment, a matrix (strategies x seeds x any key), excludes, shared
//! settings, concurrency and a report block (CONVENTIONS.md section 3).
//!
//! ```yaml
//! schema: 1
//! base: ../experiments/nb201_search.yaml   # relative to the sweep file
//! matrix:
//!   strategies:
//!     - {label: darts, strategy: {name: darts}}
//!     - {label: gdas, strategy: {name: gdas, params: {tau_max: 10}}, trainer: {name: supernet}}
//!   seeds: [0, 1, 2]
//!   budget.epochs: [10, 50]                 # any dotted key -> list of values
//! exclude:
//!   - {label: gdas, budget.epochs: 10}
//! set: {data.batch_size: 32}
//! jobs: 2
//! on_failure: continue
//! report: {metrics: [test_acc], group_by: [label]}
//! retrain: {seeds: [0, 1], epochs: 20}     # retrain every architecture found (optional)
//! ```
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use nas_core::Result;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::blocks::Component;
use crate::schema::{check_schema, default_schema};
use crate::source::{Provenance, SourceMap};
use crate::tree::split_path;
use crate::{decode, file_stem, include};

pub use crate::plan::{plan_sweep, PlannedRun};

fn default_jobs() -> usize {
    1
}

/// A sweep: many experiments from one base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Config schema version (default and only supported: 1).
    #[serde(default = "default_schema")]
    pub schema: u32,
    /// Sweep name (default: the sweep file's stem).
    #[serde(default)]
    pub name: String,
    /// The base experiment file, relative to the sweep file.
    pub base: String,
    /// What varies.
    #[serde(default)]
    pub matrix: Matrix,
    /// Combinations to leave out: an entry matches a run when every key it gives (`label`,
    /// `seed`, or a matrix axis key) equals the run's value.
    #[serde(default)]
    pub exclude: Vec<BTreeMap<String, Value>>,
    /// Dotted key -> value, set on every run (before the matrix's own settings).
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// How many runs at once (default 1).
    #[serde(default = "default_jobs")]
    pub jobs: usize,
    /// What to do when a run fails (default: continue with the others).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The comparison table and plots.
    #[serde(default)]
    pub report: ReportBlock,
    /// Retrain every architecture found from scratch (the experiment's `train` block with
    /// these overrides), once per seed; none: no retraining.
    #[serde(default)]
    pub retrain: Option<RetrainStage>,
    /// Where each key was written (for error messages; ignored by `==`).
    #[serde(skip)]
    pub source: Provenance,
}

/// The matrix of a sweep. Every key other than `strategies` and `seeds` is a dotted experiment
/// key with a list of values (an axis).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Matrix {
    /// The strategies to compare; empty: the base experiment's strategy alone.
    pub strategies: Vec<MatrixEntry>,
    /// The seeds; empty: the base experiment's seed alone.
    pub seeds: Vec<u64>,
    /// Any dotted key -> the values it takes.
    #[serde(flatten)]
    pub axes: BTreeMap<String, Vec<Value>>,
}

/// Decoded by hand (not with `#[serde(flatten)]`) so that errors inside `strategies` keep
/// their full key path.
impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct MatrixVisitor;
        impl<'de> Visitor<'de> for MatrixVisitor {
            type Value = Matrix;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of `strategies`, `seeds` and dotted keys to lists")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Matrix, A::Error> {
                let mut m = Matrix::default();
                let (mut strategies, mut seeds) = (false, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "strategies" if strategies => {
                            return Err(de::Error::duplicate_field("strategies"))
                        }
                        "strategies" => {
                            strategies = true;
                            m.strategies = map.next_value()?;
                        }
                        "seeds" if seeds => return Err(de::Error::duplicate_field("seeds")),
                        "seeds" => {
                            seeds = true;
                            m.seeds = map.next_value()?;
                        }
                        _ => {
                            let values: Vec<Value> = map.next_value()?;
                            if m.axes.insert(key.clone(), values).is_some() {
                                return Err(de::Error::custom(format!("duplicate key `{key}`")));
                            }
                        }
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(MatrixVisitor)
    }
}

/// One strategy of a sweep's matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixEntry {
    /// Short name used in run ids and reports (letters, digits, `.`, `_`, `-`; default: the
    /// strategy's name).
    #[serde(default)]
    pub label: String,
    /// The strategy: replaces the base experiment's `strategy` block as a whole.
    pub strategy: Component,
    /// The trainer this strategy needs; replaces the base's `trainer` block when given.
    #[serde(default)]
    pub trainer: Option<Component>,
    /// Dotted key -> value, set for this strategy's runs only.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
}

/// What a sweep does when one run fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Record the failure and run the others.
    #[default]
    Continue,
    /// Stop starting new runs.
    Stop,
}

fn default_group_by() -> Vec<String> {
    vec!["label".into()]
}

/// The sweep's comparison table and plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBlock {
    /// Metrics to tabulate (e.g. `test_acc`); empty: the runner's choice.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Columns to group runs by, aggregating over the rest (default `[label]`).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
}

impl Default for ReportBlock {
    fn default() -> Self {
        ReportBlock {
            metrics: Vec::new(),
            group_by: default_group_by(),
        }
    }
}

/// A sweep's retrain stage: `retrain: {seeds: [0, 1], epochs: 2, limit_batches: 3}`. Every
/// key besides `seeds` overrides the run's `train` block (maps are merged deeply, e.g.
/// `optimizer: {params: {lr: 0.05}}`), and each retraining runs with the run's config, its
/// `seed` replaced by the retraining seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainStage {
    /// The retraining seeds (at least one, each once).
    pub seeds: Vec<u64>,
    /// Keys of the `train` block (see [`crate::TrainBlock`]) and their values.
    #[serde(flatten)]
    pub train: BTreeMap<String, Value>,
}

impl RetrainStage {
    /// `exp` as retrained under `seed`: its `train` block (or the default recipe) with this
    /// stage's overrides merged in, and its seed replaced.
    pub fn experiment(&self, exp: &crate::Experiment, seed: u64) -> Result<crate::Experiment> {
        let mut train = serde_json::to_value(exp.train.clone().unwrap_or_default())
            .map_err(|e| nas_core::NasError::Other(format!("train block: {e}")))?;
        crate::tree::deep_merge(
            &mut train,
            Value::Object(self.train.clone().into_iter().collect()),
        );
        let block: crate::TrainBlock =
            serde_json::from_value(train).map_err(|e| nas_core::NasError::Config {
                file: "<sweep>".into(),
                location: Some("retrain".into()),
                message: format!("the train block with the retrain overrides: {e}"),
            })?;
        let mut out = exp.clone();
        out.train = Some(block);
        out.seed = seed;
        Ok(out)
    }
}

/// Whether `s` may appear in a run id (a directory name).
pub(crate) fn id_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_key(k: &str) -> bool {
    split_path(k)
        .iter()
        .all(|s| !s.is_empty() && !s.chars().any(char::is_whitespace))
}

/// Reads and checks a sweep file (includes are allowed, as in experiments).
pub fn load_sweep(path: &Path) -> Result<Sweep> {
    let include::Resolved { mut value, sources } = include::resolve(path)?;
    check_schema(&value, &sources)?;
    if let Value::Object(m) = &mut value {
        m.entry("name")
            .or_insert_with(|| Value::String(file_stem(path)));
    }
    let mut sweep: Sweep = decode::decode(value, &sources)?;
    check_sweep(&mut sweep, &sources)?;
    sweep.source = Provenance::new(sources);
    Ok(sweep)
}

fn at(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Checks a sweep and fills default labels.
fn check_sweep(s: &mut Sweep, src: &SourceMap) -> Result<()> {
    if !id_safe(&s.name) {
        return Err(src.error(
            &at(&["name"]),
            true,
            format!(
                "`name` must be letters, digits, `.`, `_` or `-`, got `{}`",
                s.name
            ),
        ));
    }
    if s.jobs == 0 {
        return Err(src.error(&at(&["jobs"]), true, "`jobs` must be at least 1"));
    }
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in s.matrix.strategies.iter_mut().enumerate() {
        let idx = i.to_string();
        if e.label.is_empty() {
            e.label = e.strategy.name.clone();
        }
        let path = at(&["matrix", "strategies", &idx, "label"]);
        if !id_safe(&e.label) {
            return Err(src.error(
                &path,
                true,
                format!(
                    "a label must be letters, digits, `.`, `_` or `-` (it names run \
                     directories), got `{}`",
                    e.label
                ),
            ));
        }
        if let Some(j) = labels.insert(e.label.clone(), i) {
            return Err(src.error(
                &path,
                true,
                format!(
                    "label `{}` is used by strategies {j} and {i}; give each a distinct `label`",
                    e.label
                ),
            ));
        }
        for k in e.set.keys() {
            if !valid_key(k) {
                return Err(src.error(
                    &at(&["matrix", "strategies", &idx, "set", k]),
                    false,
                    format!("`{k}` is not a dotted key"),
                ));
            }
        }
    }
    for (k, values) in &s.matrix.axes {
        if !valid_key(k) {
            return Err(src.error(
                &at(&["matrix", k]),
                false,
                format!("`{k}` is not a dotted key"),
            ));
        }
        if values.is_empty() {
            return Err(src.error(
                &at(&["matrix", k]),
                true,
                format!("the axis `{k}` has no values, so the sweep would have no runs"),
            ));
        }
    }
    if let Some(r) = &s.retrain {
        if r.seeds.is_empty() {
            return Err(src.error(
                &at(&["retrain", "seeds"]),
                true,
                "give at least one retraining seed",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(d) = r.seeds.iter().find(|x| !seen.insert(**x)) {
            return Err(src.error(
                &at(&["retrain", "seeds"]),
                true,
                format!("seed {d} is listed twice"),
            ));
        }
        for (k, v) in &r.train {
            let one = Value::Object([(k.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<crate::TrainBlock>(one) {
                return Err(src.error(
                    &at(&["retrain", k]),
                    !e.to_string().starts_with("unknown field"),
                    format!("not a valid `train` setting: {e}"),
                ));
            }
        }
    }
    for k in s.set.keys() {
        if !valid_key(k) {
            return Err(src.error(
                &at(&["set", k]),
                false,
                format!("`{k}` is not a dotted key"),
            ));
        }
    }
    for (i, ex) in s.exclude.iter().enumerate() {
        let idx = i.to_string();
        if ex.is_empty() {
            return Err(src.error(
                &at(&["exclude", &idx]),
                true,
                "an empty exclude entry would match every run",
            ));
        }
        for k in ex.keys() {
            if k != "label" && k != "seed" && !s.matrix.axes.contains_key(k) {
                let axes: Vec<&str> = s.matrix.axes.keys().map(String::as_str).collect();
                return Err(src.error(
                    &at(&["exclude", &idx, k]),
                    false,
                    format!(
                        "exclude key `{k}` is not `label`, `seed` or a matrix key ({})",
                        if axes.is_empty() {
                            "the matrix has no other keys".to_string()
                        } else {
                            axes.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}
