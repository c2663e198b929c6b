//! [`RunLoop`]: one search in progress. It holds the built parts (space, strategy, trainer or
//! estimator), the run's open files ([`RunFiles`]) and where the loop stands; it runs the
//! epochs, checkpoints at epoch boundaries, and writes the result files at the end.
use std::path::Path;
use std::time::Instant;

use nas_config::Experiment;
use nas_core::{Architecture, Estimator, NasError, Needs, Result, SearchStrategy, SupernetTrainer};
use nas_model::NetworkConfig;
use nas_registry::{
    build_estimator, build_space, build_strategy, build_trainer, data_shape, experiment_device,
    load_data, parse_dtype, Components, SpaceBox,
};
use nas_rundir::checkpoint::{Checkpoint, Progress};
use nas_rundir::files::{count_json, is_count_key, write_json};
use nas_rundir::RunSummary;
use nas_trainer::RunTrainer;
use serde_json::json;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::style::ProgressStyle;

use crate::env::RunEnv;
use crate::run::RunOptions;
use crate::run_files::RunFiles;

/// The parts a strategy's environment is made of (kept apart from the strategy, so that
/// both can be borrowed at once).
struct Parts {
    space: SpaceBox,
    trainer: Option<Box<dyn RunTrainer>>,
    estimator: Option<Box<dyn Estimator>>,
    network: Option<NetworkConfig>,
}

impl Parts {
    /// The strategy's environment at `epoch` of `epochs`.
    fn env(&mut self, epoch: usize, epochs: usize) -> RunEnv<'_> {
        RunEnv {
            space: &self.space,
            trainer: self
                .trainer
                .as_deref_mut()
                .map(|t| t as &mut dyn SupernetTrainer),
            estimator: self
                .estimator
                .as_deref_mut()
                .map(|e| e as &mut dyn Estimator),
            network: self.network,
            epoch,
            epochs,
        }
    }

    /// Queries the estimator has answered (0 without one).
    fn queries(&self) -> u64 {
        self.estimator.as_ref().map_or(0, |e| e.queries())
    }
}

/// One search in progress.
pub struct RunLoop<'a> {
    exp: &'a Experiment,
    dir: &'a Path,
    opts: &'a RunOptions,
    strategy: Box<dyn SearchStrategy>,
    parts: Parts,
    files: RunFiles,
    fingerprint: serde_json::Value,
    clock: Instant,
    /// Wall-clock seconds of the killed process a resume continues (0 for a fresh run).
    earlier_wall_s: f64,
    /// The progress the run started from (a checkpoint's, or the default).
    start: Progress,
    /// Strategy steps taken so far.
    global_step: u64,
    /// The last architecture an epoch reported.
    last_arch: Option<Architecture>,
    /// Why the search stopped (`budget` unless something else ended it).
    stop_reason: String,
    /// Whether the run continues from a checkpoint.
    resumed: bool,
}

/// Epoch metrics as JSON: non-finite values as `null`, counts as integers.
pub fn metrics_json(m: &nas_core::Metrics) -> serde_json::Map<String, serde_json::Value> {
    m.iter()
        .map(|(k, v)| {
            let v = if !v.is_finite() {
                json!(null)
            } else if is_count_key(k) {
                count_json(*v)
            } else {
                json!(v)
            };
            (k.clone(), v)
        })
        .collect()
}

impl<'a> RunLoop<'a> {
    /// Builds the run's parts from `exp` through the registry and opens its files; with a
    /// checkpoint, gives the saved state back and cuts the logs back to its lengths.
    pub fn build(
        exp: &'a Experiment,
        comps: &Components,
        opts: &'a RunOptions,
        dir: &'a Path,
        resume: Option<&Checkpoint>,
    ) -> Result<RunLoop<'a>> {
        let clock = Instant::now();
        let device = experiment_device(exp)?;
        let dtype = parse_dtype(exp.dtype)?;
        let data = load_data(exp, comps)?;
        let space = build_space(exp, comps, data_shape(data.as_ref()))?;
        let mut strategy = build_strategy(exp, comps)?;
        let mut trainer = None;
        let mut estimator = None;
        match strategy.needs() {
            Needs::Trainer => {
                let d = data.as_ref().ok_or_else(|| {
                    exp.error_at(
                        "data",
                        format!(
                            "strategy `{}` trains a supernet and needs a `data` block",
                            exp.strategy.name
                        ),
                    )
                })?;
                trainer = Some(build_trainer(exp, comps, &space, d, &device, dtype)?);
            }
            Needs::Estimator => estimator = Some(build_estimator(exp, comps, &space)?),
        }
        strategy.init(
            space.rules().spec(),
            nas_core::rng::component_seed(exp.seed, "strategy"),
        )?;
        let network = space.tensor().map(|s| s.default_network_config());
        let fingerprint = nas_rundir::checkpoint::fingerprint_value(exp)?;
        let (progress, resumed_text) = match resume {
            Some(ck) => {
                ck.restore(
                    strategy.as_mut(),
                    trainer.as_mut().map(|t| &mut **t as &mut dyn RunTrainer),
                )?;
                let p = ck.meta.progress.clone();
                estimator =
                    estimator.map(|e| crate::resume::resumed_estimator(e, p.estimator_queries));
                let text = format!(
                    "resumed from {} at epoch {}/{} (global step {})",
                    ck.dir.display(),
                    p.next_epoch + 1,
                    exp.budget.epochs,
                    p.global_step
                );
                tracing::info!("{text}");
                (p, Some(text))
            }
            None => (Progress::default(), None),
        };
        let mut files = RunFiles::open(dir, exp.output.tensorboard, &progress, resume.is_some())?;
        if let Some(text) = resumed_text {
            files.log.line(&text)?;
        }
        let stop_reason = if progress.stop_reason.is_empty() {
            "budget".to_string()
        } else {
            progress.stop_reason.clone()
        };
        Ok(RunLoop {
            exp,
            dir,
            opts,
            strategy,
            parts: Parts {
                space,
                trainer,
                estimator,
                network,
            },
            files,
            fingerprint,
            clock,
            earlier_wall_s: progress.wall_time_s,
            global_step: progress.global_step,
            last_arch: progress.last_arch.clone(),
            start: progress,
            stop_reason,
            resumed: resume.is_some(),
        })
    }

    /// Runs the search to its end and writes the result files; returns why it stopped.
    pub fn run(mut self, summary: &mut RunSummary) -> Result<String> {
        summary.final_metrics = self.start.final_metrics.clone();
        summary.valid_acc = self.start.valid_acc;
        summary.epochs = self.start.next_epoch;
        if !self.resumed {
            if let Some(w) = self.strategy.mixing_weights() {
                self.files
                    .alphas(-1, 0, self.parts.space.rules().spec(), &w)?;
            }
            self.checkpoint(0, false, summary)?;
        }
        let epochs = self.exp.budget.epochs;
        let first_epoch = if self.start.finished {
            epochs
        } else {
            self.start.next_epoch
        };
        for epoch in first_epoch..epochs {
            let _epoch_span = tracing::debug_span!("epoch", n = epoch + 1).entered();
            if self.epoch(epoch, summary)? {
                break;
            }
        }
        self.finish(summary)
    }

    /// Checkpoints the loop's state at an epoch boundary (`next_epoch` epochs done).
    fn checkpoint(&self, next_epoch: usize, finished: bool, summary: &RunSummary) -> Result<()> {
        let (metrics_bytes, alphas_bytes) = self.files.lengths()?;
        let p = Progress {
            next_epoch,
            global_step: self.global_step,
            finished,
            stop_reason: if finished {
                self.stop_reason.clone()
            } else {
                String::new()
            },
            last_arch: self.last_arch.clone(),
            final_metrics: summary.final_metrics.clone(),
            valid_acc: summary.valid_acc,
            metrics_bytes,
            alphas_bytes,
            estimator_queries: self.parts.queries(),
            wall_time_s: self.clock.elapsed().as_secs_f64() + self.earlier_wall_s,
        };
        nas_rundir::checkpoint::save(
            self.dir,
            &self.fingerprint,
            &p,
            self.strategy.as_ref(),
            self.parts.trainer.as_deref(),
            crate::fault::checkpoint_hook(),
        )
    }

    /// Runs epoch `epoch`: its steps, the strategy's end of epoch, the logs, and a checkpoint
    /// when one is due. Returns whether the search has finished.
    fn epoch(&mut self, epoch: usize, summary: &mut RunSummary) -> Result<bool> {
        let exp = self.exp;
        let epochs = exp.budget.epochs;
        if let Some(t) = self.parts.trainer.as_mut() {
            t.begin_epoch(epoch)?;
        }
        let steps = match &self.parts.trainer {
            Some(t) => t.steps_per_epoch(),
            None => exp.budget.steps_per_epoch.unwrap_or(usize::MAX),
        };
        let bar = progress_span(self.opts.progress, steps, epoch, epochs);
        let log_every = exp.output.log_every.max(1);
        let mut finished = false;
        let mut env = self.parts.env(epoch, epochs);
        let mut step = 0usize;
        while step < steps {
            let _step_span = tracing::trace_span!("step", n = step).entered();
            let rep = self.strategy.step(&mut env)?;
            self.global_step += 1;
            if step.is_multiple_of(log_every) || rep.finished {
                self.files
                    .step_line(&rep.metrics, epoch, step, self.global_step)?;
            }
            crate::fault::stall_at("step", self.global_step);
            crate::fault::count_process_step();
            bar.pb_inc(1);
            if let Some(l) = rep.metrics.get("train_loss") {
                bar.pb_set_message(&format!("epoch {}/{epochs} loss {l:.4}", epoch + 1));
            }
            step += 1;
            if let Some(q) = exp.budget.queries {
                if env.estimator.as_ref().map_or(0, |e| e.queries()) >= q {
                    finished = true;
                    self.stop_reason = format!("query budget {q} spent");
                }
            }
            if rep.finished {
                finished = true;
                self.stop_reason = "strategy finished".into();
            }
            if finished {
                break;
            }
        }
        let er = self.strategy.end_epoch(&mut env)?;
        drop(bar);
        let rules = self.parts.space.rules();
        let notation = er.current.as_ref().map(|a| rules.format_arch(a));
        self.files
            .epoch_line(&er.metrics, epoch, step, notation.as_deref())?;
        if let Some(w) = self.strategy.mixing_weights() {
            self.files
                .alphas(epoch as i64, self.global_step, rules.spec(), &w)?;
        }
        self.files.epoch_scalars(self.global_step, &er.metrics)?;
        let text = format!(
            "epoch {}/{}: {}{}",
            epoch + 1,
            epochs,
            er.metrics
                .iter()
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect::<Vec<_>>()
                .join(" "),
            notation
                .map(|n| format!("\n  architecture: {n}"))
                .unwrap_or_default()
        );
        tracing::info!("{text}");
        self.files.log.line(&text)?;
        summary.final_metrics = metrics_json(&er.metrics);
        if let Some(v) = er.metrics.get("valid_acc") {
            summary.valid_acc = Some(*v);
        }
        if er.current.is_some() {
            self.last_arch = er.current;
        }
        summary.epochs = epoch + 1;
        let every = exp.output.checkpoint_every;
        let due =
            finished || epoch + 1 == epochs || (every > 0 && (epoch + 1).is_multiple_of(every));
        if due {
            self.checkpoint(epoch + 1, finished, summary)?;
        }
        Ok(finished)
    }

    /// The strategy's outcome: writes `architecture.json` (and `architectures.json` when it
    /// returned several), `strategy_state.json`, and the summary's result fields.
    fn finish(mut self, summary: &mut RunSummary) -> Result<String> {
        let exp = self.exp;
        let epochs = exp.budget.epochs;
        let mut env = self.parts.env(epochs, epochs);
        let outcome = self.strategy.outcome(&mut env)?;
        let primary = outcome
            .architectures
            .first()
            .map(|f| f.arch.clone())
            .or(self.last_arch.clone())
            .ok_or_else(|| NasError::Strategy("the strategy returned no architecture".into()))?;
        let cost = nas_core::SearchEnv::cost(&env, &primary)?;
        let rules = env.space.rules();
        let notation = rules.format_arch(&primary);
        let mut found = Vec::new();
        for f in &outcome.architectures {
            let c = nas_core::SearchEnv::cost(&env, &f.arch).ok();
            found.push(json!({
                "label": f.label,
                "notation": rules.format_arch(&f.arch),
                "architecture": f.arch,
                "params": c.map(|c| count_json(c.params)),
                "flops": c.map(|c| count_json(c.flops)),
                "metrics": metrics_json(&f.metrics),
            }));
        }
        let mut arch_json = json!({
            "space": exp.space.name,
            "architecture": primary,
            "notation": notation,
            "params": count_json(cost.params),
            "flops": count_json(cost.flops),
            "network": env.network,
        });
        if let Some(o) = arch_json.as_object_mut() {
            o.extend(rules.architecture_fields(&primary));
        }
        write_json(&self.dir.join("architecture.json"), &arch_json)?;
        if found.len() > 1 {
            write_json(&self.dir.join("architectures.json"), &found)?;
        }
        // The strategy's final state, for tools that read it after the run (`nas derive`
        // evaluates a DARTS-CC hypernetwork at any t from it).
        write_json(
            &self.dir.join("strategy_state.json"),
            &self.strategy.save_state()?,
        )?;
        if let Some(first) = outcome.architectures.first() {
            for (k, v) in &first.metrics {
                if v.is_finite() {
                    let v = if is_count_key(k) {
                        count_json(*v)
                    } else {
                        json!(v)
                    };
                    summary.final_metrics.insert(k.clone(), v);
                }
            }
        }
        summary.architecture = Some(notation.clone());
        summary.choices = Some(primary.choices.clone());
        summary.params = Some(cost.params);
        summary.flops = Some(cost.flops);
        summary.architectures = found;
        self.files
            .log
            .line(&format!("result: {notation} ({} parameters)", cost.params))?;
        Ok(self.stop_reason)
    }
}

/// A progress bar over `steps` steps of epoch `epoch`, drawn through tracing: a span with
/// the `indicatif.pb_show` field, which the `nas` binary's `tracing-indicatif` layer draws
/// (hidden when stderr is not a terminal, and at `-q`, where info spans are off). Without
/// that layer, or when disabled or unbounded, nothing is drawn. The span is started, never
/// entered, so that log lines are not prefixed with it.
fn progress_span(enabled: bool, steps: usize, epoch: usize, epochs: usize) -> tracing::Span {
    if !enabled || steps == usize::MAX {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("progress", "indicatif.pb_show" = tracing::field::Empty);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})") {
        span.pb_set_style(&style);
    }
    span.pb_set_length(steps as u64);
    span.pb_set_message(&format!("epoch {}/{}", epoch + 1, epochs));
    span.pb_start();
    span
}
