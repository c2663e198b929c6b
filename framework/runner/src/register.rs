//! The runner's own components: the built-in `supernet` trainer
//! ([`nas_trainer::WeightSharingTrainer`] over the experiment's space, data and weight
//! optimizer) and the `zero_cost` estimator (proxies on the untrained network). The
//! `supernet` estimator (a finished single-path run's weights) registers with its strategies
//! in `nas-strategy-single-path`.
use std::sync::Arc;

use nas_core::{ComponentInfo, ComponentKind, ParamDoc, Result};
use nas_data::Augment;
use nas_registry::{weight_optimizer, BuildContext, Components, TrainerFactory};
use nas_trainer::{RunTrainer, TrainerParams, TrainerSetup, WeightSharingTrainer};

/// Registers the `supernet` trainer and the `zero_cost` estimator into `c`.
pub fn register(c: &mut Components) -> Result<()> {
    c.trainers.register(
        supernet_trainer_info(),
        TrainerFactory {
            check: Arc::new(|p| {
                nas_core::decode_params::<TrainerParams>("trainer supernet", p).map(|_| ())
            }),
            build: Arc::new(build_supernet_trainer),
        },
    )?;
    c.estimators.register(
        crate::zero_cost::info(),
        Arc::new(|p, cx: &BuildContext<'_>| {
            crate::zero_cost::build(cx.experiment("the `zero_cost` estimator")?, cx.comps, p)
        }),
    )?;
    Ok(())
}

/// What `nas describe supernet` shows of the trainer.
fn supernet_trainer_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Trainer,
        name: nas_registry::build::DEFAULT_TRAINER.into(),
        summary: "weight-sharing supernet trainer (first/second-order arch gradients, paths, BN recalibration)".into(),
        defaults: serde_json::to_value(TrainerParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("recalibrate_bn", "recalibrate BN statistics before scoring a single path (SPOS)"),
            ParamDoc::new("recalibrate_images", "shuffled training images for the recalibration, momentum 0.1 from reset statistics (SPOS: ~20,000)"),
            ParamDoc::new("recalibrate_batches", "when > 0: training batches for the recalibration instead of recalibrate_images"),
            ParamDoc::new("skip_unused", "path drives: parameters off the sampled paths get no momentum or weight-decay step (SPOS)"),
            ParamDoc::new("augment_valid", "augment the architecture step's validation batches like training batches (DARTS reference)"),
            ParamDoc::new("on_non_finite", "error (stop, keep the last checkpoint) | skip (drop the batch)"),
            ParamDoc::new("hessian_radius", "second order: finite-difference step of the Hessian-vector product, eps = r/||v|| (DARTS: 0.01)"),
        ],
        origin: "built-in".into(),
    }
}

/// Builds the `supernet` trainer over the context's space and loaded data: the data block's
/// split, batch sizes and augmentation, `optimizers.weights` from the registry, the budget's
/// epochs and steps.
pub fn build_supernet_trainer(
    params: &serde_json::Value,
    cx: &BuildContext<'_>,
) -> Result<Box<dyn RunTrainer>> {
    let exp = cx.experiment("the `supernet` trainer")?;
    let data = cx.loaded_data("the `supernet` trainer")?;
    let space = cx.built_space("the `supernet` trainer")?;
    let ts = space.tensor().ok_or_else(|| {
        exp.error_at(
            "space.name",
            format!(
                "space `{}` has no supernet; use an estimator strategy",
                exp.space.name
            ),
        )
    })?;
    let tparams: TrainerParams = nas_core::decode_params("trainer supernet", params)?;
    let db = exp
        .data
        .as_ref()
        .ok_or_else(|| exp.error_at("data", "a supernet strategy needs a `data` block"))?;
    let (tr, va) = nas_data::split_indices(
        data.train.labels.len(),
        db.train_portion,
        nas_core::rng::component_seed(exp.seed, "data.split"),
    )?;
    let w = &exp.optimizers.weights;
    let (optimizer, schedule) = weight_optimizer(exp, cx.comps, w, "optimizers.weights")?;
    let net = ts.build_supernet(
        &cx.device,
        cx.dtype,
        nas_core::component_rng(exp.seed, "supernet.init"),
    )?;
    let base_lr = optimizer.base_lr();
    Ok(Box::new(WeightSharingTrainer::new(TrainerSetup {
        spec: ts.spec().clone(),
        net,
        device: cx.device.clone(),
        dtype: cx.dtype,
        train_data: Arc::new(data.train.clone()),
        test_data: Arc::new(data.test.clone()),
        train_indices: tr,
        valid_indices: va,
        mean: data.mean.clone(),
        std: data.std.clone(),
        batch_size: db.batch_size,
        eval_batch_size: db.eval_batch_size.unwrap_or(db.batch_size),
        augment: Augment {
            crop_padding: db.augment.crop_padding,
            hflip: db.augment.hflip,
            cutout: db.augment.cutout,
        },
        optimizer,
        schedule,
        base_lr,
        clip_grad_norm: w.clip_grad_norm,
        total_epochs: exp.budget.epochs,
        params: tparams,
        seed: exp.seed,
        steps_per_epoch: exp.budget.steps_per_epoch,
    })?))
}
