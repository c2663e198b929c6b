//! `nas train`: retrain one architecture from scratch with the DARTS evaluation recipe
//! (Liu et al. 2019, section 3.3; reference `cnn/train.py`): SGD lr 0.025, momentum 0.9,
//! weight decay 3e-4, cosine schedule, clipping 5, auxiliary weight 0.4, cutout 16,
//! drop-path 0.2, batch 96 (the defaults of the experiment's `train` block).
use std::path::PathBuf;
use std::sync::Arc;

use nas_config::{Experiment, TrainBlock};
use nas_core::{Architecture, NasError, Result};
use nas_data::Augment;
use nas_model::NetworkConfig;
use nas_trainer::{RetrainProgress, RetrainReport, RetrainSettings, Retrainer};
use serde_json::json;

use nas_registry::Components;
use nas_registry::{build_space, data_shape, load_data, parse_dtype};
use nas_rundir::files::{write_atomic, write_json, JsonLines, TextLog};

/// Options of `nas train`.
#[derive(Debug, Clone, Default)]
pub struct RetrainOptions {
    /// The output directory (else `runs/<name>-train`).
    pub out_dir: Option<PathBuf>,
}

/// How a retraining started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrainStart {
    /// From scratch.
    Fresh,
    /// From the checkpoint of an interrupted retraining.
    Resumed,
    /// It had finished before: nothing was trained.
    Skipped,
}

/// Reads an architecture argument: a file (architecture.json or a genotype text file) or
/// the architecture itself in the space's notation (a DARTS genotype, an NB201 arch string,
/// a chain space's op names such as `shufflenet_3x3 xception_3x3 ...`, or JSON), parsed by
/// the space's own rules.
pub fn read_arch_arg(arg: &str, rules: &dyn nas_core::SpaceRules) -> Result<Architecture> {
    let p = std::path::Path::new(arg);
    if p.is_file() {
        let text = std::fs::read_to_string(p).map_err(|e| NasError::io(p, e))?;
        return rules
            .parse_arch(&text)
            .map_err(|e| NasError::Architecture(format!("{}: {e}", p.display())));
    }
    rules.parse_arch(arg).map_err(|e| {
        NasError::Architecture(format!(
            "`{arg}` is neither a file nor an architecture in the space's notation ({e})"
        ))
    })
}

/// Retrains `arch` under `exp` and writes `config.resolved.yaml`, `architecture.json`,
/// `metrics.jsonl`, `log.txt`, a checkpoint after every epoch (`checkpoint/`, see
/// [`crate::retrain_checkpoint`]), and at the end the trained network
/// (`weights.safetensors`, `batchnorm.safetensors`) and `summary.json`.
pub fn retrain(
    exp: &Experiment,
    comps: &Components,
    arch_arg: &str,
    opts: &RetrainOptions,
) -> Result<RetrainReport> {
    retrain_inner(exp, comps, arch_arg, opts, false).map(|(_, r)| r)
}

/// [`retrain`] that continues from the checkpoint in the output directory when it holds one
/// of the same config and architecture (a finished retraining is then not trained again,
/// [`RetrainStart::Skipped`]); without one, or with one of another config or architecture,
/// it trains from scratch (replacing the directory's results).
pub fn retrain_resumable(
    exp: &Experiment,
    comps: &Components,
    arch_arg: &str,
    opts: &RetrainOptions,
) -> Result<(RetrainStart, RetrainReport)> {
    retrain_inner(exp, comps, arch_arg, opts, true)
}

fn retrain_inner(
    exp: &Experiment,
    comps: &Components,
    arch_arg: &str,
    opts: &RetrainOptions,
    resume: bool,
) -> Result<(RetrainStart, RetrainReport)> {
    let tb: TrainBlock = exp.train.clone().unwrap_or_default();
    let device = nas_registry::experiment_device(exp)?;
    let dtype = parse_dtype(exp.dtype)?;
    let data = load_data(exp, comps)?
        .ok_or_else(|| exp.error_at("data", "`nas train` needs a `data` block"))?;
    let shape = data_shape(Some(&data));
    let space = build_space(exp, comps, shape)?;
    let ts = space.tensor().ok_or_else(|| {
        exp.error_at(
            "space.name",
            "this space has no standalone networks to train",
        )
    })?;
    let arch = read_arch_arg(arch_arg, ts)?;
    let notation = ts.format_arch(&arch);
    let dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-train", exp.name)));
    let fingerprint = crate::retrain_checkpoint::fingerprint(exp, &notation)?;
    let has_checkpoint = dir.join(nas_rundir::checkpoint::store::CURRENT).exists()
        || dir.join(nas_rundir::checkpoint::store::PREVIOUS).exists();
    let resume = if resume && has_checkpoint {
        match crate::retrain_checkpoint::load(&dir) {
            Ok((ck, meta)) if meta.fingerprint == fingerprint => Some((ck, meta)),
            Ok(_) => {
                tracing::warn!(
                    "{}: its checkpoint belongs to another config or architecture; training \
                     from scratch (its results are replaced)",
                    dir.display()
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    "{}: no usable checkpoint ({e}); training from scratch",
                    dir.display()
                );
                None
            }
        }
    } else {
        None
    };
    let summary_finished = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["status"] == "finished");
    if let Some((_, meta)) = &resume {
        if meta.progress.next_epoch >= tb.epochs && summary_finished {
            return Ok((RetrainStart::Skipped, meta.progress.report.clone()));
        }
    }
    let cfg = NetworkConfig {
        channels: tb.channels,
        layers: tb.layers,
        auxiliary: tb.auxiliary_weight > 0.0,
    };
    let net = ts.build_network(
        &arch,
        &cfg,
        &device,
        dtype,
        nas_core::component_rng(exp.seed, "retrain.init"),
    )?;
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    write_atomic(
        &dir.join("config.resolved.yaml"),
        nas_config::to_yaml(exp)?.as_bytes(),
    )?;
    let o = &tb.optimizer;
    let (optimizer, schedule) = nas_registry::weight_optimizer(exp, comps, o, "train.optimizer")?;
    let params = net.param_count();
    let flops = net.flops();
    write_json(
        &dir.join("architecture.json"),
        &json!({"space": exp.space.name, "architecture": arch, "notation": notation,
                "params": params, "flops": nas_rundir::files::count_json(flops), "network": cfg}),
    )?;
    let mut log = TextLog::open(&dir.join("log.txt"))?;
    let base_lr = optimizer.base_lr();
    let mut r = Retrainer {
        net,
        device,
        dtype,
        train: Arc::new(data.train),
        test: Arc::new(data.test),
        mean: data.mean,
        std: data.std,
        augment: Augment {
            crop_padding: tb.crop_padding,
            hflip: tb.hflip,
            cutout: tb.cutout,
        },
        optimizer,
        schedule,
        settings: RetrainSettings {
            epochs: tb.epochs,
            batch_size: tb.batch_size,
            auxiliary_weight: tb.auxiliary_weight,
            drop_path: tb.drop_path,
            clip_grad_norm: o.clip_grad_norm,
            base_lr,
            limit_batches: tb.limit_batches,
            eval_every: tb.eval_every,
            seed: exp.seed,
        },
    };
    let metrics_path = dir.join("metrics.jsonl");
    let (start_kind, progress, metrics_bytes, wall_before) = match &resume {
        Some((ck, meta)) => {
            crate::retrain_checkpoint::restore(ck, &mut r)?;
            let text = format!(
                "resumed from {} at epoch {}/{}",
                ck.display(),
                meta.progress.next_epoch + 1,
                tb.epochs
            );
            tracing::info!("{text}");
            log.line(&text)?;
            (
                RetrainStart::Resumed,
                meta.progress.clone(),
                meta.metrics_bytes,
                meta.wall_time_s,
            )
        }
        None => {
            tracing::info!("training {notation}: {params} parameters, {flops:.0} MACs per example");
            (RetrainStart::Fresh, RetrainProgress::default(), 0, 0.0)
        }
    };
    crate::resume::cut_back(&metrics_path, metrics_bytes)?;
    let mut metrics = JsonLines::open(&metrics_path)?;
    let start = std::time::Instant::now();
    let result = r.run_from(progress, |r, end| {
        if let Some(m) = &end.metrics {
            let mut line = m.clone();
            line["kind"] = json!("epoch");
            metrics.push(&line)?;
            let text = format!("train epoch {}/{}: {m}", end.epoch + 1, tb.epochs);
            tracing::info!("{text}");
            log.line(&text)?;
        }
        crate::fault::stall_at("retrain_epoch", end.epoch as u64 + 1);
        let meta = crate::retrain_checkpoint::RetrainMeta {
            kind: "retrain".into(),
            format: nas_rundir::checkpoint::store::FORMAT,
            fingerprint: fingerprint.clone(),
            progress: end.progress.clone(),
            metrics_bytes: std::fs::metadata(&metrics_path)
                .map(|m| m.len())
                .map_err(|e| NasError::io(&metrics_path, e))?,
            wall_time_s: wall_before + start.elapsed().as_secs_f64(),
        };
        crate::retrain_checkpoint::save(&dir, &meta, r, crate::fault::checkpoint_hook())
    });
    if result.is_ok() {
        crate::retrain_checkpoint::save_weights(&dir, &r)?;
    }
    let wall = wall_before + start.elapsed().as_secs_f64();
    let summary = match &result {
        Ok(rep) => json!({"status": "finished", "architecture": notation, "params": params,
            "flops": nas_rundir::files::count_json(flops), "test_acc": rep.test_acc, "test_loss": rep.test_loss,
            "epochs": tb.epochs, "wall_time_s": wall, "seed": exp.seed}),
        Err(e) => {
            json!({"status": "failed", "stop_reason": e.to_string(), "architecture": notation,
            "params": params, "wall_time_s": wall, "seed": exp.seed})
        }
    };
    write_json(&dir.join("summary.json"), &summary)?;
    result.map(|rep| (start_kind, rep))
}
