//! One run of an experiment: build, search, write the run directory.
use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_config::Experiment;
use nas_core::{Architecture, Estimator, NasError, Needs, Result, SearchStrategy, SupernetTrainer};
use nas_trainer::WeightSharingTrainer;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::checkpoint::{Checkpoint, Progress};
use crate::env::RunEnv;
use crate::files::{count_json, write_atomic, write_json, JsonLines, TextLog};
use crate::tensorboard::EventWriter;
use crate::Components;

use crate::build::build_estimator;
pub use crate::build::{
    build_space, build_strategy, build_trainer, data_shape, data_shape_of, experiment_device,
    load_data, locate_params, locate_params_result, parse_device, parse_dtype,
    takes_arch_optimizer, weight_optimizer,
};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run directory (else `output.dir`, else `runs/<name>`).
    pub out_dir: Option<PathBuf>,
    /// Show progress bars (they hide themselves when stderr is not a terminal).
    pub progress: bool,
}

/// `status` of a run's `summary.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Written at the start; a summary that stays so belongs to a killed run.
    Running,
    /// The budget or the strategy ended it.
    Finished,
    /// An error ended it (`stop_reason` says which).
    Failed,
}

impl RunStatus {
    /// The name as written in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the name as written in `summary.json` (`status == "finished"`).
impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// `running`, `finished` or `failed`.
    pub status: RunStatus,
    /// Why the run stopped (`budget`, `strategy finished`, or the error).
    pub stop_reason: String,
    /// The experiment's name.
    pub name: String,
    /// Strategy name.
    pub strategy: String,
    /// Space name.
    pub space: String,
    /// Seed.
    pub seed: u64,
    /// The primary architecture found, in the space's notation.
    pub architecture: Option<String>,
    /// Its choices.
    pub choices: Option<Vec<usize>>,
    /// Parameters of its standalone network (DARTS: excluding the auxiliary head); written
    /// as an integer ([`count_json`]).
    #[serde(serialize_with = "crate::files::serialize_count_opt")]
    pub params: Option<f64>,
    /// FLOPs (multiply-accumulates per example) of its standalone network; written as an
    /// integer when whole.
    #[serde(serialize_with = "crate::files::serialize_count_opt")]
    pub flops: Option<f64>,
    /// The last validation accuracy the strategy reported.
    pub valid_acc: Option<f64>,
    /// The last value of every epoch metric.
    pub final_metrics: serde_json::Map<String, serde_json::Value>,
    /// Every architecture the strategy returned.
    pub architectures: Vec<serde_json::Value>,
    /// Epochs completed.
    pub epochs: usize,
    /// Wall-clock seconds.
    pub wall_time_s: f64,
    /// Source revision, when known.
    pub git_revision: String,
    /// Compiler.
    pub rustc: String,
    /// Device.
    pub device: String,
}
fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The run directory an experiment writes to.
pub fn run_dir(exp: &Experiment, opts: &RunOptions) -> PathBuf {
    opts.out_dir
        .clone()
        .or_else(|| exp.output.dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("runs").join(&exp.name))
}

fn metrics_json(m: &nas_core::Metrics) -> serde_json::Map<String, serde_json::Value> {
    m.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if !v.is_finite() {
                    json!(null)
                } else if crate::files::is_count_key(k) {
                    count_json(*v)
                } else {
                    json!(v)
                },
            )
        })
        .collect()
}

/// Runs `exp` and writes its run directory. On failure, `summary.json` records the error
/// and the error is returned.
pub fn run_experiment(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
) -> Result<RunSummary> {
    run_resumable(exp, comps, opts, None)
}

/// [`run_experiment`], or, with a checkpoint (see [`crate::resume::resume_experiment`]),
/// its continuation from that checkpoint.
pub fn run_resumable(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
    resume: Option<Checkpoint>,
) -> Result<RunSummary> {
    // Plugin paths made absolute: `config.resolved.yaml` (and a resume from it) finds them.
    let exp = &*crate::plugins::with_absolute_plugins(exp);
    let dir = run_dir(exp, opts);
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    write_atomic(
        &dir.join("config.resolved.yaml"),
        nas_config::to_yaml(exp)?.as_bytes(),
    )?;
    let start = Instant::now();
    let mut summary = RunSummary {
        status: RunStatus::Running,
        stop_reason: String::new(),
        name: exp.name.clone(),
        strategy: exp.strategy.name.clone(),
        space: exp.space.name.clone(),
        seed: exp.seed,
        architecture: None,
        choices: None,
        params: None,
        flops: None,
        valid_acc: None,
        final_metrics: Default::default(),
        architectures: vec![],
        epochs: 0,
        wall_time_s: 0.0,
        git_revision: git_revision(),
        rustc: env!("NAS_RUSTC_VERSION").into(),
        device: exp.device.to_string(),
    };
    // Plugins named by the experiment are loaded before anything else is built.
    let result = crate::plugins::components_for(exp, comps)
        .and_then(|c| search(exp, &c, opts, &dir, &mut summary, resume.as_ref()));
    summary.wall_time_s = start.elapsed().as_secs_f64()
        + resume.as_ref().map_or(0.0, |c| c.meta.progress.wall_time_s);
    match &result {
        Ok(reason) => {
            summary.status = RunStatus::Finished;
            summary.stop_reason = reason.clone();
        }
        Err(e) => {
            summary.status = RunStatus::Failed;
            summary.stop_reason = e.to_string();
            if let NasError::NonFinite { quantity, .. } = e {
                let hint = crate::resume::non_finite_hint(exp, &dir, quantity);
                summary.stop_reason = format!("{e}; {hint}");
                if let Ok(mut log) = TextLog::open(&dir.join("log.txt")) {
                    let _ = log.line(&format!("error: {e}\n{hint}"));
                }
            }
        }
    }
    write_json(&dir.join("summary.json"), &summary)?;
    result.map(|_| summary)
}

fn search(
    exp: &Experiment,
    comps: &Components,
    opts: &RunOptions,
    dir: &Path,
    summary: &mut RunSummary,
    resume: Option<&Checkpoint>,
) -> Result<String> {
    // Debug-level spans: with `-v` every log line and profiler names the run, the epoch and
    // the step it belongs to; at the default level they cost nothing and print nothing.
    let _run_span = tracing::debug_span!("run", name = %exp.name).entered();
    let clock = Instant::now();
    let device = experiment_device(exp)?;
    let dtype = parse_dtype(exp.dtype)?;
    let mut log = TextLog::open(&dir.join("log.txt"))?;
    let data = load_data(exp, comps)?;
    let shape = data_shape(data.as_ref());
    let space = build_space(exp, comps, shape)?;
    let mut strategy = build_strategy(exp, comps)?;
    let rules = space.rules();
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
        Needs::Estimator => estimator = Some(build_estimator(exp, comps, rules)?),
    }
    strategy.init(
        rules.spec(),
        nas_core::rng::component_seed(exp.seed, "strategy"),
    )?;
    let network = space.tensor().map(|s| s.default_network_config());
    // Resume: give the checkpoint's state back, cut the logs back to its lengths.
    let fingerprint = crate::checkpoint::fingerprint_value(exp)?;
    let progress = match resume {
        Some(ck) => {
            ck.restore(strategy.as_mut(), trainer.as_mut())?;
            let p = ck.meta.progress.clone();
            estimator = estimator.map(|e| crate::resume::resumed_estimator(e, p.estimator_queries));
            let text = format!(
                "resumed from {} at epoch {}/{} (global step {})",
                ck.dir.display(),
                p.next_epoch + 1,
                exp.budget.epochs,
                p.global_step
            );
            tracing::info!("{text}");
            log.line(&text)?;
            p
        }
        None => Progress::default(),
    };
    let metrics_path = dir.join("metrics.jsonl");
    let alphas_path = dir.join("alpha_history.jsonl");
    crate::resume::cut_back(&metrics_path, progress.metrics_bytes)?;
    crate::resume::cut_back(&alphas_path, progress.alphas_bytes)?;
    let mut metrics = JsonLines::open(&metrics_path)?;
    let mut alphas = JsonLines::open(&alphas_path)?;
    let mut board = if exp.output.tensorboard {
        // The first step the resumed run writes: later points of the killed process go.
        let resumed_at = resume.map(|_| progress.global_step + 1);
        Some(EventWriter::create(&dir.join("tensorboard"), resumed_at)?)
    } else {
        None
    };
    let epochs = exp.budget.epochs;
    let log_every = exp.output.log_every.max(1);
    let mut stop_reason = if progress.stop_reason.is_empty() {
        "budget".to_string()
    } else {
        progress.stop_reason.clone()
    };
    let mut last_arch: Option<Architecture> = progress.last_arch.clone();
    let mut global_step: u64 = progress.global_step;
    summary.final_metrics = progress.final_metrics.clone();
    summary.valid_acc = progress.valid_acc;
    summary.epochs = progress.next_epoch;
    // Checkpoint the run loop's state at an epoch boundary.
    let checkpoint = |next_epoch: usize,
                      finished: bool,
                      global_step: u64,
                      stop_reason: &str,
                      last_arch: &Option<Architecture>,
                      summary: &RunSummary,
                      strategy: &dyn SearchStrategy,
                      trainer: Option<&WeightSharingTrainer>,
                      queries: u64|
     -> Result<()> {
        let len = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| NasError::io(p, e))
        };
        let p = Progress {
            next_epoch,
            global_step,
            finished,
            stop_reason: stop_reason.to_string(),
            last_arch: last_arch.clone(),
            final_metrics: summary.final_metrics.clone(),
            valid_acc: summary.valid_acc,
            metrics_bytes: len(&metrics_path)?,
            alphas_bytes: len(&alphas_path)?,
            estimator_queries: queries,
            wall_time_s: clock.elapsed().as_secs_f64() + progress.wall_time_s,
        };
        crate::checkpoint::save(
            dir,
            &fingerprint,
            &p,
            strategy,
            trainer,
            crate::fault::checkpoint_hook(),
        )
    };
    if resume.is_none() {
        if let Some(w) = strategy.mixing_weights() {
            alphas.push(&json!({"epoch": -1, "weights": w.0}))?;
            if let Some(b) = board.as_mut() {
                b.alphas(0, rules.spec(), &w)?;
            }
        }
        checkpoint(
            0,
            false,
            0,
            "",
            &None,
            summary,
            strategy.as_ref(),
            trainer.as_ref(),
            estimator.as_ref().map_or(0, |e| e.queries()),
        )?;
    }
    let checkpoint_every = exp.output.checkpoint_every;
    let first_epoch = if progress.finished {
        epochs
    } else {
        progress.next_epoch
    };
    'epochs: for epoch in first_epoch..epochs {
        let _epoch_span = tracing::debug_span!("epoch", n = epoch + 1).entered();
        if let Some(t) = trainer.as_mut() {
            t.begin_epoch(epoch)?;
        }
        let steps = match &trainer {
            Some(t) => t.steps_per_epoch(),
            None => exp.budget.steps_per_epoch.unwrap_or(usize::MAX),
        };
        let bar = progress_bar(opts.progress, steps, epoch, epochs);
        let mut finished = false;
        let mut env = RunEnv {
            space: &space,
            trainer: trainer.as_mut().map(|t| t as &mut dyn SupernetTrainer),
            estimator: estimator.as_deref_mut().map(|e| e as &mut dyn Estimator),
            network,
            epoch,
            epochs,
        };
        let mut step = 0usize;
        while step < steps {
            let _step_span = tracing::trace_span!("step", n = step).entered();
            let rep = strategy.step(&mut env)?;
            global_step += 1;
            if step.is_multiple_of(log_every) || rep.finished {
                let mut line = metrics_json(&rep.metrics);
                line.insert("kind".into(), json!("step"));
                line.insert("epoch".into(), json!(epoch));
                line.insert("step".into(), json!(step));
                line.insert("global_step".into(), json!(global_step));
                metrics.push(&serde_json::Value::Object(line))?;
                if let Some(b) = board.as_mut() {
                    b.scalars(global_step, "step", &rep.metrics)?;
                }
            }
            crate::fault::stall_at("step", global_step);
            crate::fault::count_process_step();
            if let Some(b) = &bar {
                b.inc(1);
                if let Some(l) = rep.metrics.get("train_loss") {
                    b.set_message(format!("loss {l:.4}"));
                }
            }
            step += 1;
            if let Some(q) = exp.budget.queries {
                if env.estimator.as_ref().map_or(0, |e| e.queries()) >= q {
                    finished = true;
                    stop_reason = format!("query budget {q} spent");
                }
            }
            if rep.finished {
                finished = true;
                stop_reason = "strategy finished".into();
            }
            if finished {
                break;
            }
        }
        let er = strategy.end_epoch(&mut env)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let mut line = metrics_json(&er.metrics);
        line.insert("kind".into(), json!("epoch"));
        line.insert("epoch".into(), json!(epoch));
        line.insert("steps".into(), json!(step));
        if let Some(a) = &er.current {
            line.insert("architecture".into(), json!(rules.format_arch(a)));
        }
        metrics.push(&serde_json::Value::Object(line.clone()))?;
        if let Some(w) = strategy.mixing_weights() {
            alphas.push(&json!({"epoch": epoch, "weights": w.0}))?;
            if let Some(b) = board.as_mut() {
                b.alphas(global_step, rules.spec(), &w)?;
            }
        }
        if let Some(b) = board.as_mut() {
            b.scalars(global_step, "epoch", &er.metrics)?;
            b.flush()?;
        }
        let text = format!(
            "epoch {}/{}: {}{}",
            epoch + 1,
            epochs,
            er.metrics
                .iter()
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect::<Vec<_>>()
                .join(" "),
            er.current
                .as_ref()
                .map(|a| format!("\n  architecture: {}", rules.format_arch(a)))
                .unwrap_or_default()
        );
        tracing::info!("{text}");
        log.line(&text)?;
        summary.final_metrics = metrics_json(&er.metrics);
        if let Some(v) = er.metrics.get("valid_acc") {
            summary.valid_acc = Some(*v);
        }
        last_arch = er.current.or(last_arch);
        summary.epochs = epoch + 1;
        let due = finished
            || epoch + 1 == epochs
            || (checkpoint_every > 0 && (epoch + 1) % checkpoint_every == 0);
        if due {
            checkpoint(
                epoch + 1,
                finished,
                global_step,
                if finished { &stop_reason } else { "" },
                &last_arch,
                summary,
                strategy.as_ref(),
                trainer.as_ref(),
                estimator.as_ref().map_or(0, |e| e.queries()),
            )?;
        }
        if finished {
            break 'epochs;
        }
    }
    let mut env = RunEnv {
        space: &space,
        trainer: trainer.as_mut().map(|t| t as &mut dyn SupernetTrainer),
        estimator: estimator.as_deref_mut().map(|e| e as &mut dyn Estimator),
        network,
        epoch: epochs,
        epochs,
    };
    let outcome = strategy.outcome(&mut env)?;
    let primary = outcome
        .architectures
        .first()
        .map(|f| f.arch.clone())
        .or(last_arch)
        .ok_or_else(|| NasError::Strategy("the strategy returned no architecture".into()))?;
    let cost = nas_core::SearchEnv::cost(&env, &primary)?;
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
        "network": network,
    });
    if let Some(o) = arch_json.as_object_mut() {
        o.extend(rules.architecture_fields(&primary));
    }
    write_json(&dir.join("architecture.json"), &arch_json)?;
    if found.len() > 1 {
        write_json(&dir.join("architectures.json"), &found)?;
    }
    // The strategy's final state, for tools that read it after the run (`nas derive`
    // evaluates a DARTS-CC hypernetwork at any t from it).
    write_json(&dir.join("strategy_state.json"), &strategy.save_state()?)?;
    if let Some(first) = outcome.architectures.first() {
        for (k, v) in &first.metrics {
            if v.is_finite() {
                let v = if crate::files::is_count_key(k) {
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
    log.line(&format!("result: {notation} ({} parameters)", cost.params))?;
    Ok(stop_reason)
}

fn progress_bar(
    enabled: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> Option<indicatif::ProgressBar> {
    if !enabled || steps == usize::MAX {
        return None;
    }
    let b = indicatif::ProgressBar::with_draw_target(
        Some(steps as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    b.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    Some(b)
}
