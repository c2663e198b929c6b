//! Building a run's parts from the experiment and the registry: device and dtype, data and
//! its shape, the space, strategy, trainer, estimator and weight optimizer, with errors that
//! name the config key. Shared by `nas run`, `nas train`, `nas export`, the estimators that
//! rebuild a finished run, and the command line's checks.
use candle_core::{DType, Device};
use nas_config::{DTypeSetting, DeviceSetting, Experiment};
use nas_core::{Estimator, NasError, Result, SearchStrategy};
use nas_data::DataSplits;
use nas_model::DataShape;
use nas_trainer::RunTrainer;
use serde_json::json;

use crate::{BuildContext, Components, SpaceBox};

/// The trainer a run uses when the experiment names none.
pub const DEFAULT_TRAINER: &str = "supernet";

/// A context for `exp` without the device check (loading data and building plain parts
/// need no device).
fn context<'a>(exp: &'a Experiment, comps: &'a Components) -> BuildContext<'a> {
    BuildContext {
        exp: Some(exp),
        ..BuildContext::new(comps)
    }
}

/// The candle device of `device`: `cpu`; `cuda` / `cuda:N` that GPU (the binary needs the
/// `cuda` feature and the machine a driver and the device, else an error naming the value);
/// `auto` the first GPU when one can be opened, else the CPU (docs/gpu.md).
pub fn parse_device(device: DeviceSetting) -> Result<Device> {
    match device {
        DeviceSetting::Cpu => Ok(Device::Cpu),
        DeviceSetting::Auto => Ok(nas_ops::gpu::first_available().unwrap_or(Device::Cpu)),
        DeviceSetting::Cuda(n) => {
            nas_ops::gpu::open_cuda(n.unwrap_or(0)).map_err(|e| NasError::Config {
                file: "<experiment>".into(),
                location: Some("device".into()),
                message: format!("`{device}`: {e}; use `cpu` or `auto`"),
            })
        }
    }
}

/// The experiment's device, or an error at the file, line and key `device` when this build or
/// machine cannot use it (so `nas config validate` refuses what `nas run` would).
pub fn experiment_device(exp: &Experiment) -> Result<Device> {
    parse_device(exp.device).map_err(|e| match e {
        NasError::Config { message, .. } => exp.error_at("device", message),
        other => other,
    })
}

/// The candle dtype of `dtype`.
pub fn parse_dtype(dtype: DTypeSetting) -> Result<DType> {
    Ok(match dtype {
        DTypeSetting::F32 => DType::F32,
        DTypeSetting::F64 => DType::F64,
    })
}

/// Loads the experiment's data set, if it names one.
pub fn load_data(exp: &Experiment, comps: &Components) -> Result<Option<DataSplits>> {
    match &exp.data {
        None => Ok(None),
        Some(d) => {
            let load = comps
                .datasets
                .get(&d.name)
                .map_err(|e| exp.error_at("data.name", e.to_string()))?;
            Ok(Some(load(&d.params, &context(exp, comps))?))
        }
    }
}

/// The data shape of loaded data, or CIFAR's when there is none.
pub fn data_shape(data: Option<&DataSplits>) -> DataShape {
    match data {
        Some(d) => DataShape {
            channels: d.train.channels,
            height: d.train.height,
            width: d.train.width,
            num_classes: d.train.num_classes,
        },
        None => DataShape {
            channels: 3,
            height: 32,
            width: 32,
            num_classes: 10,
        },
    }
}

/// The data shape of the experiment's data set without loading it when the data set knows
/// it ([`Components::dataset_shape`]); else loads it.
pub fn data_shape_of(exp: &Experiment, comps: &Components) -> Result<DataShape> {
    let Some(d) = exp.data.as_ref() else {
        return Ok(data_shape(None));
    };
    Ok(match comps.dataset_shape(&d.name, &d.params) {
        Some([channels, height, width, num_classes]) => DataShape {
            channels,
            height,
            width,
            num_classes,
        },
        None => data_shape(load_data(exp, comps)?.as_ref()),
    })
}

/// Builds the experiment's space.
pub fn build_space(exp: &Experiment, comps: &Components, shape: DataShape) -> Result<SpaceBox> {
    let f = comps
        .spaces
        .get(&exp.space.name)
        .map_err(|e| exp.error_at("space.name", e.to_string()))?;
    f(&exp.space.params, &context(exp, comps).with_shape(shape))
        .map_err(|e| locate_params(exp, "space.params", e))
}

/// Adds the config location to a params error.
pub fn locate_params(exp: &Experiment, block: &str, e: NasError) -> NasError {
    match e {
        NasError::InvalidParams {
            component,
            path,
            message,
        } => {
            let key = if path == "." || path.is_empty() {
                block.to_string()
            } else {
                format!("{block}.{path}")
            };
            exp.error_at(&key, format!("{component}: {message}"))
        }
        other => other,
    }
}

/// True when strategy `name` takes an architecture optimizer: its registered defaults
/// have an `arch_optimizer` key (built-ins and plugins alike).
pub fn takes_arch_optimizer(comps: &Components, name: &str) -> bool {
    comps
        .strategies
        .info(name)
        .and_then(|i| i.defaults.get("arch_optimizer"))
        .is_some()
}

/// Builds the experiment's strategy. `optimizers.arch` is passed in as the
/// `arch_optimizer` param of a strategy that takes one; for any other strategy it is
/// ignored with a warning naming the key, so `--set strategy.name=spos` on a DARTS config
/// works.
pub fn build_strategy(exp: &Experiment, comps: &Components) -> Result<Box<dyn SearchStrategy>> {
    let f = comps
        .strategies
        .get(&exp.strategy.name)
        .map_err(|e| exp.error_at("strategy.name", e.to_string()))?;
    let mut params = exp.strategy.params.clone();
    if let Some(arch) = &exp.optimizers.arch {
        if takes_arch_optimizer(comps, &exp.strategy.name) {
            if params.is_null() {
                params = json!({});
            }
            if let Some(o) = params.as_object_mut() {
                o.insert(
                    "arch_optimizer".into(),
                    json!({"name": arch.name, "params": arch.params}),
                );
            }
        } else {
            tracing::warn!(
                "strategy `{}` has no architecture optimizer: `optimizers.arch` is ignored \
                 (remove it, or --set optimizers.arch=null)",
                exp.strategy.name
            );
        }
    }
    f(&params, &context(exp, comps)).map_err(|e| match locate_params(exp, "strategy.params", e) {
        NasError::Config {
            file,
            location,
            message,
        } if message.contains("unknown field") => NasError::Config {
            file,
            location,
            message: format!(
                "{message} (params of another strategy? switching with \
                 --set strategy.name=... may need --set strategy.params={{}} too)"
            ),
        },
        other => other,
    })
}

/// Builds the experiment's trainer (`trainer.name`, else [`DEFAULT_TRAINER`]) over `space`
/// and loaded `data` from the registry; errors name the key.
pub fn build_trainer(
    exp: &Experiment,
    comps: &Components,
    space: &SpaceBox,
    data: &DataSplits,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn RunTrainer>> {
    let (name, params) = match &exp.trainer {
        Some(t) => (t.name.as_str(), t.params.clone()),
        None => (DEFAULT_TRAINER, serde_json::Value::Null),
    };
    let f = comps
        .trainers
        .get(name)
        .map_err(|e| exp.error_at("trainer.name", e.to_string()))?;
    let cx = BuildContext {
        device: device.clone(),
        dtype,
        ..context(exp, comps).with_data(data).with_space(space)
    };
    (f.build)(&params, &cx).map_err(|e| locate_params(exp, "trainer.params", e))
}

/// Checks the experiment's trainer name and params without building it (errors name the
/// key): `nas config validate` refuses what `nas run` would, before any data is loaded.
pub fn check_trainer(exp: &Experiment, comps: &Components) -> Result<()> {
    let Some(t) = &exp.trainer else {
        return Ok(());
    };
    let f = comps
        .trainers
        .get(&t.name)
        .map_err(|e| exp.error_at("trainer.name", e.to_string()))?;
    (f.check)(&t.params).map_err(|e| locate_params(exp, "trainer.params", e))
}

/// Builds the experiment's estimator (the `estimator` block) over its built `space`.
pub fn build_estimator(
    exp: &Experiment,
    comps: &Components,
    space: &SpaceBox,
) -> Result<Box<dyn Estimator>> {
    let e = exp.estimator.as_ref().ok_or_else(|| {
        exp.error_at(
            "estimator",
            format!(
                "strategy `{}` needs an `estimator` block (known: {})",
                exp.strategy.name,
                comps.estimators.names().join(", ")
            ),
        )
    })?;
    let f = comps
        .estimators
        .get(&e.name)
        .map_err(|er| exp.error_at("estimator.name", er.to_string()))?;
    let cx = context(exp, comps).with_space(space);
    f(&e.params, &cx).map_err(|er| locate_params(exp, "estimator.params", er))
}

/// The optimizer and schedule of the block at `key` (`optimizers.weights`,
/// `train.optimizer`) from the registry; errors name the key.
pub fn weight_optimizer(
    exp: &Experiment,
    comps: &Components,
    w: &nas_config::OptimizerBlock,
    key: &str,
) -> Result<(Box<dyn nas_optim::Optimizer>, Box<dyn nas_optim::Schedule>)> {
    let build_optimizer = comps
        .optimizers
        .get(&w.name)
        .map_err(|e| exp.error_at(&format!("{key}.name"), e.to_string()))?;
    let cx = context(exp, comps);
    let optimizer = build_optimizer(&w.params, &cx)
        .map_err(|e| locate_params(exp, &format!("{key}.params"), e))?;
    let schedule = match &w.schedule {
        Some(s) => {
            let build_schedule = comps
                .schedules
                .get(&s.name)
                .map_err(|e| exp.error_at(&format!("{key}.schedule.name"), e.to_string()))?;
            build_schedule(&s.params, &cx)
                .map_err(|e| locate_params(exp, &format!("{key}.schedule.params"), e))?
        }
        None => (comps.schedules.get("constant")?)(&serde_json::Value::Null, &cx)?,
    };
    Ok((optimizer, schedule))
}
