//! A ProxylessNAS search step timed the way `nas bench` times a DARTS step (issue 17): the
//! DARTS search network on synthetic data, one `proxylessnas` step = one weight step on a
//! sampled path plus one architecture update (two options per edge computed, binary gates).
//! Kept beside [`crate::bench`] as its own function until `nas bench` takes `--strategy`.
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use nas_core::{Result, SearchStrategy, SpaceRules};
use nas_data::{Augment, Dataset};
use nas_model::{DataShape, SearchSpace};
use nas_space_darts::{DartsSpace, DartsSpaceParams};
use nas_trainer::{TrainerParams, TrainerSetup, WeightSharingTrainer};
use rand::Rng;

use crate::bench::{peak_rss_mib, process_cpu_ms, rayon_threads, BenchConfig, BenchResult};
use crate::env::RunEnv;
use crate::SpaceBox;

/// Times `cfg.steps` ProxylessNAS search steps (after one untimed step); `cfg.order` is
/// ignored (the path-level gradient is first order).
pub fn bench_proxylessnas(cfg: &BenchConfig) -> Result<BenchResult> {
    let shape = DataShape {
        channels: 3,
        height: cfg.size,
        width: cfg.size,
        num_classes: 10,
    };
    let space = DartsSpace::new(
        DartsSpaceParams {
            channels: cfg.channels,
            layers: cfg.layers,
            ..Default::default()
        },
        shape,
    )?;
    let n = cfg.batch * 4;
    let mut rng = nas_core::component_rng(0, "bench.data");
    let images: Vec<f32> = (0..n * 3 * cfg.size * cfg.size)
        .map(|_| rng.random::<f32>())
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let data = Arc::new(Dataset {
        name: "synthetic".into(),
        channels: 3,
        height: cfg.size,
        width: cfg.size,
        num_classes: 10,
        images,
        labels,
    });
    let net = space.build_supernet(
        &Device::Cpu,
        DType::F32,
        nas_core::component_rng(0, "bench.init"),
    )?;
    let supernet_params = net.params().count();
    let optimizer = nas_optim::build_optimizer(
        "sgd",
        &serde_json::json!({"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4}),
    )?;
    let schedule = nas_optim::build_schedule("constant", &serde_json::Value::Null)?;
    let half = n / 2;
    let mut trainer = WeightSharingTrainer::new(TrainerSetup {
        spec: space.spec().clone(),
        net,
        device: Device::Cpu,
        dtype: DType::F32,
        train_data: data.clone(),
        test_data: data,
        train_indices: (0..half).collect(),
        valid_indices: (half..n).collect(),
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        batch_size: cfg.batch,
        eval_batch_size: cfg.batch,
        augment: Augment::default(),
        optimizer,
        schedule,
        base_lr: 0.025,
        clip_grad_norm: Some(5.0),
        total_epochs: 1,
        params: TrainerParams::default(),
        seed: 0,
        steps_per_epoch: None,
    })?;
    let mut strategy =
        nas_strategy_proxylessnas::ProxylessNas::new(&serde_json::json!({"arch_every": 1}))?;
    strategy.init(space.spec(), 0)?;
    nas_core::SupernetTrainer::begin_epoch(&mut trainer, 0)?;
    let sb = SpaceBox::Tensor(Box::new(space));
    let mut times = Vec::new();
    let mut cpu_start = None;
    for i in 0..=cfg.steps {
        let mut env = RunEnv {
            space: &sb,
            trainer: Some(&mut trainer),
            estimator: None,
            network: None,
            epoch: 0,
            epochs: 1,
        };
        if i == 1 {
            cpu_start = process_cpu_ms();
        }
        let t = Instant::now();
        strategy.step(&mut env)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cpu_ms_per_step = match (cpu_start, process_cpu_ms()) {
        (Some(a), Some(b)) if !times.is_empty() => Some((b - a) / times.len() as f64),
        _ => None,
    };
    Ok(BenchResult {
        config: cfg.clone(),
        ms_per_step: times.iter().sum::<f64>() / times.len().max(1) as f64,
        step_ms: times,
        cpu_ms_per_step,
        peak_rss_mib: peak_rss_mib(),
        threads: rayon_threads(),
        supernet_params,
    })
}
