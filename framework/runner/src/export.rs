//! `nas export RUN --inherit`: the network a single-path search found, with its weights
//! taken from the trained supernet instead of trained from scratch (the SPOS workflow, Guo
//! et al. 2020, section 3.3: a path of the trained supernet is evaluated after "we
//! recalculate the statistics of all the Batch Normalization operations on a random subset
//! of training data"; once-for-all, Cai et al. 2020, takes subnets from the supernet the
//! same way).
//!
//! The run's `config.resolved.yaml` rebuilds its space, data and trainer; its last
//! checkpoint gives the supernet. The standalone network of the architecture is built, and
//! every parameter is copied from the supernet parameter of the same name (the chain spaces
//! SPOS, ProxylessNAS and FBNet name a layer's option `layers.{d}.{option}` in both). The
//! only parameters allowed to have no counterpart are batch-norm scales and shifts when the
//! supernet's batch norms are affine-free (SPOS's default): they keep 1 and 0, the same
//! function. Spaces whose networks are named otherwise (DARTS cells, NB201) are refused,
//! naming the first parameter without a counterpart. Batch-norm statistics are then
//! recalibrated on the standalone network with exactly the batches the trainer uses to
//! recalibrate a path, and the network is scored on the test split.
//!
//! Writes into the output directory (default `RUN/inherited`): `architecture.json`,
//! `weights.safetensors` and `batchnorm.safetensors` (the files `nas train` writes, in the
//! same format), and `summary.json` (`test_acc`, `test_loss`, `params`, the counts of
//! inherited and initialised parameters); every file atomically.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result, Split};
use serde::Serialize;
use serde_json::json;

use crate::retrain::read_arch_arg;
use nas_registry::Components;
use nas_registry::{build_space, build_trainer, data_shape, load_data, parse_device, parse_dtype};
use nas_rundir::files::{count_json, write_json};

/// What `nas export --inherit` takes besides the run.
#[derive(Debug, Clone, Default)]
pub struct InheritOptions {
    /// The architecture (a file or the space's notation); default `RUN/architecture.json`.
    pub arch: Option<String>,
    /// Output directory; default `RUN/inherited`.
    pub out_dir: Option<PathBuf>,
    /// The device to compute on instead of the run's `device` (`nas --device`).
    pub device: Option<nas_config::DeviceSetting>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InheritReport {
    /// The output directory.
    pub dir: PathBuf,
    /// The architecture in the space's notation.
    pub architecture: String,
    /// Parameters (scalars) of the network.
    pub params: f64,
    /// Parameter tensors copied from the supernet.
    pub inherited: usize,
    /// Batch-norm scale and shift tensors left at 1 and 0 (affine-free supernet).
    pub initialised: usize,
    /// Test accuracy of the network with the inherited weights, in `[0, 1]`.
    pub test_acc: f64,
    /// Test cross-entropy.
    pub test_loss: f64,
    /// Test examples scored.
    pub test_samples: usize,
}

fn not_a_run(run: &Path) -> NasError {
    NasError::Other(format!(
        "`{}` is not a run directory (no config.resolved.yaml)",
        run.display()
    ))
}

/// Exports the architecture of `run` (or `opts.arch`) with weights inherited from the run's
/// supernet; see the module doc.
pub fn export_inherited(
    run: &Path,
    comps: &Components,
    opts: &InheritOptions,
) -> Result<InheritReport> {
    let cfg = run.join("config.resolved.yaml");
    if !cfg.is_file() {
        return Err(not_a_run(run));
    }
    let exp = nas_config::load_experiment(&cfg, &[])?;
    let data = load_data(&exp, comps)?
        .ok_or_else(|| exp.error_at("data", "`nas export --inherit` needs the run's data"))?;
    let space = build_space(&exp, comps, data_shape(Some(&data)))?;
    let ts = space.tensor().ok_or_else(|| {
        exp.error_at(
            "space.name",
            "this space has no networks to inherit weights into",
        )
    })?;
    let arch_arg = match &opts.arch {
        Some(a) => a.clone(),
        None => run.join("architecture.json").display().to_string(),
    };
    let arch = read_arch_arg(&arch_arg, ts)?;
    let device = parse_device(opts.device.unwrap_or(exp.device))?;
    let dtype = parse_dtype(exp.dtype)?;
    let mut built = build_trainer(&exp, comps, &space, &data, &device, dtype)?;
    nas_rundir::checkpoint::load(run)?.restore_supernet(built.as_mut())?;
    let trainer = built
        .as_any_mut()
        .downcast_mut::<nas_trainer::WeightSharingTrainer>()
        .ok_or_else(|| {
            exp.error_at(
                "trainer.name",
                "`nas export --inherit` copies weights from the built-in `supernet` trainer only",
            )
        })?;
    let net = ts.build_network(
        &arch,
        &ts.default_network_config(),
        &device,
        dtype,
        nas_core::component_rng(exp.seed, "export.inherit"),
    )?;
    let (inherited, initialised) = copy_by_name(trainer.supernet(), net.as_ref(), &exp.space.name)?;
    let bns = net.batch_norms();
    trainer.recalibrate_with(&bns, |x| net.forward(x, true).map(|_| ()))?;
    let eval = trainer.evaluate_with(Split::Test, |x| net.forward(x, false).map(|(y, _)| y))?;

    let dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| run.join("inherited"));
    std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
    let notation = ts.format_arch(&arch);
    let params = net.params().count() as f64;
    write_json(
        &dir.join("architecture.json"),
        &json!({
            "space": exp.space.name,
            "architecture": arch,
            "notation": notation,
            "params": count_json(params),
            "inherited_from": run.display().to_string(),
        }),
    )?;
    let tmp = dir.join(".weights.safetensors.tmp");
    net.params().save_safetensors(&tmp)?;
    rename(&tmp, &dir.join("weights.safetensors"))?;
    let tmp = dir.join(".batchnorm.safetensors.tmp");
    crate::retrain_checkpoint::save_batch_norms(net.as_ref(), &tmp)?;
    if tmp.exists() {
        rename(&tmp, &dir.join("batchnorm.safetensors"))?;
    }
    let report = InheritReport {
        dir: dir.clone(),
        architecture: notation,
        params,
        inherited,
        initialised,
        test_acc: eval.accuracy,
        test_loss: eval.loss,
        test_samples: eval.samples,
    };
    write_json(
        &dir.join("summary.json"),
        &json!({
            "status": "finished",
            "architecture": report.architecture,
            "params": count_json(params),
            "inherited_tensors": report.inherited,
            "initialised_tensors": report.initialised,
            "test_acc": report.test_acc,
            "test_loss": report.test_loss,
            "test_samples": report.test_samples,
            "run": run.display().to_string(),
        }),
    )?;
    Ok(report)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| NasError::io(to, e))
}

/// Copies every parameter of `net` from the supernet parameter of the same name and shape;
/// returns (copied, left initialised). Only batch-norm scales and shifts may be missing.
fn copy_by_name(
    supernet: &dyn nas_model::Supernet,
    net: &dyn nas_model::Network,
    space: &str,
) -> Result<(usize, usize)> {
    let bn_affine: HashSet<_> = net
        .batch_norms()
        .iter()
        .flat_map(|b| b.params())
        .map(|v| v.as_tensor().id())
        .collect();
    let source = supernet.params();
    let (mut copied, mut kept) = (0, 0);
    for (name, var) in net.params().named() {
        match source.get(name) {
            Some(src) if src.as_tensor().dims() == var.as_tensor().dims() => {
                var.set(src.as_tensor())
                    .map_err(|e| NasError::Other(format!("copying `{name}`: {e}")))?;
                copied += 1;
            }
            Some(src) => {
                return Err(NasError::Other(format!(
                    "space `{space}` does not support --inherit: parameter `{name}` is {:?} in \
                     the network and {:?} in the supernet (weights can be inherited in the \
                     single-path spaces spos, proxyless and fbnet)",
                    var.as_tensor().dims(),
                    src.as_tensor().dims()
                )))
            }
            None if bn_affine.contains(&var.as_tensor().id()) => kept += 1,
            None => {
                return Err(NasError::Other(format!(
                    "space `{space}` does not support --inherit: the network's parameter \
                     `{name}` has no counterpart in the supernet (weights can be inherited in \
                     the single-path spaces spos, proxyless and fbnet)"
                )))
            }
        }
    }
    Ok((copied, kept))
}
