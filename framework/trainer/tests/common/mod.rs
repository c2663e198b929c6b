//! A tiny DARTS supernet trainer on random data, shared by the trainer tests.
#![allow(dead_code)]
use std::sync::Arc;

use candle_core::{DType, Device};
use nas_core::SpaceRules;
use nas_data::{Augment, Dataset};
use nas_model::{DataShape, SearchSpace};
use nas_space_darts::{DartsSpace, DartsSpaceParams};
use nas_trainer::{TrainerParams, TrainerSetup, WeightSharingTrainer};
use rand::Rng;

/// One reduction cell of 2 channels, 2 nodes, all 8 DARTS ops, on 8x8x1 inputs; the
/// validation part is exactly one batch so every arch-gradient call sees the same examples.
pub fn tiny(
    dtype: DType,
    optimizer: serde_json::Value,
    batch: usize,
) -> (DartsSpace, WeightSharingTrainer) {
    let opt = nas_optim::build_optimizer("sgd", &optimizer).unwrap();
    tiny_with(dtype, opt, batch, None)
}

/// [`tiny`] with a given weight optimizer and gradient-norm clipping.
pub fn tiny_with(
    dtype: DType,
    opt: Box<dyn nas_optim::Optimizer>,
    batch: usize,
    clip_grad_norm: Option<f64>,
) -> (DartsSpace, WeightSharingTrainer) {
    let shape = DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
    };
    let space = DartsSpace::new(
        DartsSpaceParams {
            channels: 2,
            layers: 3,
            nodes: 2,
            multiplier: 2,
            stem_multiplier: 2,
            ..Default::default()
        },
        shape,
    )
    .unwrap();
    let data = Arc::new(random_data(batch));
    let net = space
        .build_supernet(&Device::Cpu, dtype, nas_core::component_rng(1, "init"))
        .unwrap();
    let base_lr = opt.base_lr();
    let trainer = WeightSharingTrainer::new(TrainerSetup {
        spec: space.spec().clone(),
        net,
        device: Device::Cpu,
        dtype,
        train_data: data.clone(),
        test_data: data,
        train_indices: (0..batch).collect(),
        valid_indices: (batch..2 * batch).collect(),
        mean: vec![0.5],
        std: vec![0.3],
        batch_size: batch,
        eval_batch_size: batch,
        augment: Augment::default(),
        optimizer: opt,
        schedule: nas_optim::build_schedule("constant", &serde_json::Value::Null).unwrap(),
        base_lr,
        clip_grad_norm,
        total_epochs: 1,
        params: TrainerParams::default(),
        seed: 3,
        steps_per_epoch: None,
    })
    .unwrap();
    (space, trainer)
}

/// The random data of [`tiny`]: `2 * batch` images of 8x8x1, the first `batch` for
/// training.
pub fn random_data(batch: usize) -> Dataset {
    let n = 2 * batch;
    let mut rng = nas_core::component_rng(7, "test.data");
    Dataset {
        name: "random".into(),
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
        images: (0..n * 64).map(|_| rng.random::<f32>()).collect(),
        labels: (0..n).map(|i| (i % 3) as u32).collect(),
        files: None,
    }
}

/// The training examples of [`tiny`] as one batch, normalised as its loader does (in
/// index order; the loader may shuffle them).
pub fn train_batch(batch: usize) -> nas_data::Batch {
    let d = random_data(batch);
    nas_data::Batch {
        images: d.images[..batch * 64]
            .iter()
            .map(|&v| (v - 0.5) / 0.3)
            .collect(),
        labels: d.labels[..batch].to_vec(),
        n: batch,
    }
}

/// Random mixing weights (positive, not normalised: the trainer must not care).
pub fn random_weights(spec: &nas_core::SpaceSpec, seed: u64) -> nas_core::MixingWeights {
    let mut rng = nas_core::component_rng(seed, "test.weights");
    nas_core::MixingWeights(
        spec.shape()
            .into_iter()
            .map(|k| (0..k).map(|_| rng.random_range(0.05f32..0.3)).collect())
            .collect(),
    )
}
