//! A real trainer over a tiny SPOS supernet on the embedded digits.
#![allow(dead_code)]
use std::sync::Arc;

use candle_core::{DType, Device};
use nas_core::{
    Architecture, Cost, Estimator, MixingWeights, Result, SearchEnv, SpaceSpec, SupernetTrainer,
};
use nas_model::{DataShape, SearchSpace};
use nas_trainer::{TrainerParams, TrainerSetup, WeightSharingTrainer};

pub fn tiny_spos(repeats: [usize; 4]) -> nas_space_spos::SposSpace {
    let p: nas_space_spos::SposParams = serde_json::from_value(serde_json::json!({
        "variant": "cifar", "stem_channels": 4, "stage_channels": [8, 12, 16, 24],
        "stage_repeats": repeats, "last_channels": 16
    }))
    .unwrap();
    nas_space_spos::new_space(
        &p,
        DataShape {
            channels: 1,
            height: 8,
            width: 8,
            num_classes: 10,
        },
    )
    .unwrap()
}

/// A trainer with plain SGD (no momentum, no weight decay) so that a parameter changes
/// exactly when its gradient is non-zero.
pub fn trainer(space: &dyn SearchSpace, lr: f64, limit: usize) -> WeightSharingTrainer {
    trainer_with(
        space,
        serde_json::json!({"lr": lr, "momentum": 0.0, "weight_decay": 0.0}),
        limit,
        TrainerParams {
            recalibrate_bn: true,
            recalibrate_batches: 2,
            ..TrainerParams::default()
        },
    )
}

/// A trainer with the SGD params `sgd` (`lr` among them) and trainer params `params`.
pub fn trainer_with(
    space: &dyn SearchSpace,
    sgd: serde_json::Value,
    limit: usize,
    params: TrainerParams,
) -> WeightSharingTrainer {
    let data =
        nas_data::load_dataset("digits", &serde_json::json!({"limit_train": limit})).unwrap();
    let (tr, va) = nas_data::split_indices(data.train.labels.len(), 0.75, 1).unwrap();
    let optimizer = nas_optim::build_optimizer("sgd", &sgd).unwrap();
    let lr = optimizer.base_lr();
    let net = space
        .build_supernet(&Device::Cpu, DType::F32, nas_core::component_rng(0, "init"))
        .unwrap();
    WeightSharingTrainer::new(TrainerSetup {
        spec: space.spec().clone(),
        net,
        device: Device::Cpu,
        dtype: DType::F32,
        train_data: Arc::new(data.train.clone()),
        test_data: Arc::new(data.test.clone()),
        train_indices: tr,
        valid_indices: va,
        mean: data.mean.clone(),
        std: data.std.clone(),
        batch_size: 32,
        eval_batch_size: 64,
        augment: nas_data::Augment::none(),
        optimizer,
        schedule: nas_optim::build_schedule("constant", &serde_json::Value::Null).unwrap(),
        base_lr: lr,
        clip_grad_norm: None,
        total_epochs: 1,
        params,
        seed: 0,
        steps_per_epoch: None,
    })
    .unwrap()
}

/// A search environment over a trainer and a space (what the runner gives a strategy),
/// recording every drive's paths.
pub struct Env<'a> {
    pub space: &'a dyn SearchSpace,
    pub trainer: &'a mut WeightSharingTrainer,
    pub epoch: (usize, usize),
}

impl SearchEnv for Env<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.space.spec()
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(self.trainer)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, w: &MixingWeights, mode: &str) -> Result<Architecture> {
        self.space.derive(w, mode)
    }
    fn cost(&self, a: &Architecture) -> Result<Cost> {
        self.space.spec().cost_of(a)
    }
    fn describe(&self, a: &Architecture) -> String {
        self.space.format_arch(a)
    }
    fn epoch(&self) -> (usize, usize) {
        self.epoch
    }
}

/// Every parameter's values, by name.
pub fn snapshot(t: &WeightSharingTrainer) -> Vec<(String, Vec<f32>)> {
    t.supernet()
        .params()
        .named()
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}
