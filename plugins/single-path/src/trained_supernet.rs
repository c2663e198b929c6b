//! The `supernet` estimator: scores architectures with the weights of a finished
//! single-path run, so that estimator strategies (`random`, `rea`, `evolution`,
//! `reinforce`) search over a supernet trained once, as often and under as many constraints
//! as wanted (SPOS, Guo et al. 2020, section 3.3: the supernet is trained once, then
//! searched; "we recalculate the statistics of all the Batch Normalization operations on a
//! random subset of training data" before a path is evaluated).
//!
//! ```yaml
//! strategy: {name: rea, params: {population: 20, sample: 5}}
//! estimator:
//!   name: supernet
//!   params: {run: runs/spos-uniform-digits, batches: 4, constraint: {max_flops: 2.0e6}}
//! budget: {queries: 200}
//! ```
//!
//! The run's own `config.resolved.yaml` rebuilds its space, data and trainer; its last
//! checkpoint gives the supernet weights and batch-norm statistics. Each query recalibrates
//! batch norm on training batches (the run's `trainer.params.recalibrate_bn`) and reports
//! the validation accuracy in percent on `batches` validation batches; architectures outside
//! the `constraint` score [`INFEASIBLE_FITNESS`] without evaluation.
use std::path::{Path, PathBuf};

use crate::{score_path, Constraint, INFEASIBLE_FITNESS};
use nas_config::Experiment;
use nas_core::{
    Architecture, ComponentInfo, ComponentKind, Estimator, NasError, ParamDoc, Result, Score,
    SpaceSpec,
};
use nas_trainer::RunTrainer;
use serde::{Deserialize, Serialize};

use nas_registry::{build_space, build_trainer, data_shape, load_data, parse_device, parse_dtype};
use nas_registry::{BuildContext, SpaceBox};

/// The estimator's registered name.
pub const NAME: &str = "supernet";

/// Parameters of the `supernet` estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupernetEstimatorParams {
    /// A finished run that trained a supernet (relative paths: to the working directory).
    pub run: PathBuf,
    /// Validation batches per query.
    #[serde(default = "default_batches")]
    pub batches: usize,
    /// Paths outside it are not evaluated.
    #[serde(default)]
    pub constraint: Constraint,
}

fn default_batches() -> usize {
    10
}

/// Registry entry (for `nas list` / `nas describe supernet`).
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Estimator,
        name: NAME.into(),
        summary: "scores paths with the trained supernet of a finished single-path run (BN \
                  recalibrated per path; SPOS)"
            .into(),
        defaults: serde_json::json!({"run": null, "batches": default_batches(),
            "constraint": {}}),
        params: vec![
            ParamDoc::new(
                "run",
                "finished run directory whose supernet scores the paths",
            ),
            ParamDoc::new("batches", "validation batches per query"),
            ParamDoc::new(
                "constraint",
                "min_flops, max_flops, min_params, max_params, max_latency_ms: paths outside \
                 score -1 without evaluation",
            ),
        ],
        origin: "built-in".into(),
    }
}

/// A trained supernet as an estimator (see the module doc).
pub struct TrainedSupernet {
    trainer: Box<dyn RunTrainer>,
    /// The searching experiment's space: its costs (and latency table) decide the
    /// constraint.
    space: SpaceBox,
    batches: usize,
    constraint: Constraint,
    queries: u64,
}

impl Estimator for TrainedSupernet {
    fn spec(&self) -> &SpaceSpec {
        self.trainer.spec()
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.queries += 1;
        let cost = self.space.rules().spec().cost_of(arch)?;
        if !self.constraint.admits(&cost)? {
            let mut report = std::collections::BTreeMap::new();
            report.insert("params".into(), cost.params);
            report.insert("flops".into(), cost.flops);
            report.insert("feasible".into(), 0.0);
            return Ok(Score {
                fitness: INFEASIBLE_FITNESS,
                report,
                cost_seconds: 0.0,
            });
        }
        score_path(self.trainer.as_mut(), arch, self.batches, &cost)
    }

    fn queries(&self) -> u64 {
        self.queries
    }
}

fn params_error(message: String) -> NasError {
    NasError::InvalidParams {
        component: format!("estimator {NAME}"),
        path: ".".into(),
        message,
    }
}

/// Builds the estimator for the experiment `exp` (whose space must be the trained run's).
/// Builds the estimator for the context's experiment: the run named by `params.run` is an
/// earlier run, rebuilt from its own config ([`BuildContext::earlier_run`]).
pub fn build(cx: &BuildContext<'_>, params: &serde_json::Value) -> Result<Box<dyn Estimator>> {
    let exp: &Experiment = cx.experiment("the `supernet` estimator")?;
    let comps = cx.comps;
    let p: SupernetEstimatorParams =
        serde_json::from_value(params.clone()).map_err(|e| params_error(e.to_string()))?;
    if p.batches == 0 {
        return Err(params_error("`batches` must be at least 1".into()));
    }
    p.constraint
        .check(&format!("estimator {NAME}"), "constraint")?;
    let run: &Path = &p.run;
    let cfg = run.join("config.resolved.yaml");
    if !cfg.is_file() {
        return Err(params_error(format!(
            "run `{}` is not a run directory (no config.resolved.yaml)",
            run.display()
        )));
    }
    let trained = cx.earlier_run(run)?;
    let data = load_data(&trained, comps)?
        .ok_or_else(|| params_error(format!("run `{}` has no data block", run.display())))?;
    let space = build_space(&trained, comps, data_shape(Some(&data)))?;
    let ours = build_space(exp, comps, nas_registry::data_shape_of(exp, comps)?)?;
    let layout = |s: &SpaceBox| -> Vec<(String, Vec<String>)> {
        s.rules()
            .spec()
            .decisions
            .iter()
            .map(|d| {
                (
                    d.key.clone(),
                    d.options.iter().map(|o| o.name.clone()).collect(),
                )
            })
            .collect()
    };
    if layout(&ours) != layout(&space) {
        return Err(params_error(format!(
            "run `{}` trained space `{}` with other decisions or options than this \
             experiment's `{}`",
            run.display(),
            trained.space.name,
            exp.space.name
        )));
    }
    let device = parse_device(trained.device)?;
    let dtype = parse_dtype(trained.dtype)?;
    let mut trainer = build_trainer(&trained, comps, &space, &data, &device, dtype)?;
    let ck = nas_rundir::checkpoint::load(run)?;
    ck.restore_supernet(trainer.as_mut())?;
    tracing::info!(
        "supernet estimator: weights of {} (checkpoint at epoch {})",
        run.display(),
        ck.meta.progress.next_epoch
    );
    Ok(Box::new(TrainedSupernet {
        trainer,
        space: ours,
        batches: p.batches,
        constraint: p.constraint,
        queries: 0,
    }))
}
