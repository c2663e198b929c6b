//! # nas-config
//!
//! YAML experiment configs (CONVENTIONS.md section 3, DESIGN.md section 4):
//!
//! 1. read a YAML file (strict booleans) to a `serde_json::Value`, resolving `include:`
//!    (paths relative to the including file, nested, cycles are errors) by deep merge: mappings
//!    merge, scalars and lists replace, the including file wins;
//! 2. apply `--set a.b.c=value` overrides last, each value parsed as YAML;
//! 3. decode into [`Experiment`] with unknown keys rejected everywhere; every error is a
//!    [`nas_core::NasError::Config`] naming the file, the line and column, and the key path;
//! 4. keep component `params` untyped for the factories, with [`Experiment::locate`] and
//!    [`Experiment::error_at`] so that their errors can name the place too;
//! 5. write the resolved config back with every default filled in ([`to_yaml`]);
//! 6. expand sweeps ([`load_sweep`], [`plan_sweep`]).
//!
//! **Invariant:** loading the output of [`to_yaml`] gives an equal [`Experiment`].
#![deny(missing_docs)]

mod blocks;
mod check;
mod decode;
mod experiment;
mod include;
pub mod overrides;
mod plan;
pub mod positions;
mod schema;
mod settings;
pub mod source;
mod sweep;
pub mod tree;
pub mod yaml;

use std::path::Path;

use nas_core::Result;
use serde_json::Value;

pub use blocks::{AugmentBlock, Budget, Component, DataBlock, OptimizerBlock, Optimizers, Output};
pub use experiment::{Experiment, TrainBlock};
pub use schema::{SCHEMA_VERSION, SUPPORTED_SCHEMAS};
pub use settings::{DTypeSetting, DeviceSetting};
pub use source::Provenance;
pub use sweep::{
    load_sweep, plan_sweep, Matrix, MatrixEntry, OnFailure, PlannedRun, ReportBlock, RetrainStage,
    Sweep,
};

use include::Resolved;
use source::SourceMap;

/// Reads `path` with its includes and applies `sets` (`a.b.c=value`): the merged value before
/// the typed decode, without `include` keys.
pub fn load_value(path: &Path, sets: &[String]) -> Result<Value> {
    Ok(resolve_with_sets(path, sets)?.value)
}

/// Reads, merges, overrides, decodes and checks an experiment file.
pub fn load_experiment(path: &Path, sets: &[String]) -> Result<Experiment> {
    let resolved = resolve_with_sets(path, sets)?;
    experiment_from(resolved, &file_stem(path))
}

/// The experiment as YAML with every default filled in (for `config.resolved.yaml`).
pub fn to_yaml(e: &Experiment) -> Result<String> {
    let body = yaml::write(e)?;
    Ok(format!(
        "# Resolved experiment config (schema {}): every default filled in.\n{body}",
        e.schema
    ))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into())
}

fn resolve_with_sets(path: &Path, sets: &[String]) -> Result<Resolved> {
    let mut r = include::resolve(path)?;
    overrides::apply_overrides(&mut r.value, &mut r.sources, sets)?;
    schema::check_schema(&r.value, &r.sources)?;
    Ok(r)
}

/// Decodes and checks a merged experiment; `default_name` fills a missing `name`.
fn experiment_from(r: Resolved, default_name: &str) -> Result<Experiment> {
    let Resolved { mut value, sources } = r;
    if let Value::Object(m) = &mut value {
        m.entry("name")
            .or_insert_with(|| Value::String(default_name.to_string()));
    }
    let mut e: Experiment = decode::decode(value, &sources)?;
    check::check_experiment(&e).map_err(|(path, msg)| sources.error(&path, true, msg))?;
    e.source = Provenance::new(sources);
    Ok(e)
}

/// For the sweep planner: an experiment from an already merged value.
fn experiment_from_parts(
    value: Value,
    sources: SourceMap,
    default_name: &str,
) -> Result<Experiment> {
    schema::check_schema(&value, &sources)?;
    experiment_from(Resolved { value, sources }, default_name)
}
