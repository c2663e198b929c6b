//! Batch-norm recalibration as the SPOS reference does it (`Search/tester.py`): running
//! statistics reset to mean 0, variance 1, then training-mode passes over
//! `recalibrate_images` training images, batch `i` entering with the factor
//! `max(0.1, 1/i)` (momentum 0.1 as the reference, after a cumulative average over the first
//! ten batches so that a few batches do not leave the reset values in); checked against the
//! running statistics computed by hand on a supernet whose batch norm sees the (normalised)
//! input directly.
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use nas_core::{
    Architecture, Cost, Decision, Drive, DriveKind, OptionSpec, SpaceSpec, SupernetTrainer,
};
use nas_data::{Augment, Dataset};
use nas_model::{Init, ParamStore, Supernet, TensorDrive};
use nas_ops::BatchNorm2d;
use nas_trainer::{TrainerParams, TrainerSetup, WeightSharingTrainer};

/// `logits = W * mean_pixels(bn(x))`: one non-affine batch norm on the input, one decision
/// with one option (nothing to choose; a path drive is still a single path).
struct BnFirst {
    store: ParamStore,
    bn: BatchNorm2d,
}

impl Supernet for BnFirst {
    fn forward(
        &self,
        x: &Tensor,
        _: &TensorDrive,
        _: Option<f32>,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let y = self.bn.forward(x, train)?;
        let pooled = nas_ops::global_avg_pool(&y)?; // [N, 1]
        let w = self.store.named()[0].1.as_tensor();
        pooled.matmul(&w.t()?)
    }
    fn params(&self) -> &ParamStore {
        &self.store
    }
    fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        vec![&self.bn]
    }
}

const PIXELS: usize = 16; // 4x4, one channel
const TRAIN: usize = 40;
const BATCH: usize = 8;

/// Every training image is the same pattern, so every batch has the same statistics
/// whatever the shuffle: mean `mu` and unbiased variance `var` over `BATCH * PIXELS` values.
fn pattern() -> Vec<f32> {
    (0..PIXELS).map(|i| ((i * 7) % 11) as f32 / 10.0).collect()
}

fn trainer(params: TrainerParams) -> WeightSharingTrainer {
    let p = pattern();
    let data = Arc::new(Dataset {
        name: "same".into(),
        channels: 1,
        height: 4,
        width: 4,
        num_classes: 2,
        images: (0..TRAIN + BATCH).flat_map(|_| p.clone()).collect(),
        labels: (0..TRAIN + BATCH).map(|i| (i % 2) as u32).collect(),
        files: None,
    });
    let mut store = ParamStore::new(Device::Cpu, DType::F64, nas_core::component_rng(0, "t"));
    store.var("fc.weight", &[2, 1], Init::Const(0.5)).unwrap();
    let net = BnFirst {
        store,
        bn: BatchNorm2d::new(1, None, 1e-5, Some(0.1)),
    };
    let spec = SpaceSpec {
        space: "bn-first".into(),
        decisions: vec![Decision {
            key: "only".into(),
            group: "g".into(),
            node: None,
            options: vec![OptionSpec {
                name: "id".into(),
                cost: Cost::default(),
            }],
        }],
        fixed_cost: Cost::default(),
    };
    let opt = nas_optim::build_optimizer("sgd", &serde_json::json!({"lr": 0.1})).unwrap();
    WeightSharingTrainer::new(TrainerSetup {
        spec,
        net: Box::new(net),
        device: Device::Cpu,
        dtype: DType::F64,
        train_data: data.clone(),
        test_data: data,
        train_indices: (0..TRAIN).collect(),
        valid_indices: (TRAIN..TRAIN + BATCH).collect(),
        mean: vec![0.5],
        std: vec![0.25],
        batch_size: BATCH,
        eval_batch_size: BATCH,
        augment: Augment::default(),
        optimizer: opt,
        schedule: nas_optim::build_schedule("constant", &serde_json::Value::Null).unwrap(),
        base_lr: 0.1,
        clip_grad_norm: None,
        total_epochs: 1,
        params,
        seed: 0,
        steps_per_epoch: None,
    })
    .unwrap()
}

fn path() -> Drive {
    Drive {
        kind: DriveKind::Paths {
            archs: vec![Architecture::new("bn-first", vec![0])],
        },
        condition: None,
    }
}

/// By hand: `k` updates `r = (1 - f_i) r + f_i s`, `f_i = max(0.1, 1/i)`, from the reset
/// `r0 = (0, 1)` with the same batch statistic `s` (the first update replaces `r0`).
fn expected(k: usize) -> (f64, f64) {
    let x: Vec<f64> = pattern().iter().map(|&v| (v as f64 - 0.5) / 0.25).collect();
    let mu = x.iter().sum::<f64>() / PIXELS as f64;
    let ss = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>(); // one image
    let n = (BATCH * PIXELS) as f64;
    let var = BATCH as f64 * ss / (n - 1.0); // unbiased, over the batch
    let (mut m, mut v) = (0.0, 1.0);
    for i in 1..=k {
        let f = (1.0 / i as f64).max(0.1);
        m = (1.0 - f) * m + f * mu;
        v = (1.0 - f) * v + f * var;
    }
    (m, v)
}

/// What momentum 0.1 from the reset alone would give (`0.9^k r0 + (1 - 0.9^k) s`).
fn momentum_only(k: usize) -> (f64, f64) {
    let (mu, var) = expected(1);
    let d = 0.9f64.powi(k as i32);
    ((1.0 - d) * mu, d + (1.0 - d) * var)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn recalibration_resets_and_averages_over_the_images_asked() {
    // 20 images in batches of 8: ceil(20 / 8) = 3 batches.
    let mut t = trainer(TrainerParams {
        recalibrate_images: 20,
        ..TrainerParams::default()
    });
    // Training moves the running statistics first; recalibration starts from a reset.
    t.begin_epoch(0).unwrap();
    t.train_weights(&path()).unwrap();
    assert_eq!(t.recalibration_batches(), 3);
    t.recalibrate_bn(&path()).unwrap();
    let bn = t.supernet().batch_norms()[0].running_stats();
    let (m, v) = expected(3);
    assert!(close(bn.0[0], m) && close(bn.1[0], v), "{bn:?} vs {m} {v}");
    // Momentum 0.1 from the reset alone would keep 0.9^3 = 73 % of the reset values.
    let (m_mom, v_mom) = momentum_only(3);
    assert!(!close(bn.0[0], m_mom) && !close(bn.1[0], v_mom));
}

#[test]
fn recalibration_is_at_most_one_pass_and_batches_override_images() {
    // The SPOS default of 20,000 images on a 40-image split: one pass, 5 batches.
    let mut t = trainer(TrainerParams::default());
    assert_eq!(TrainerParams::default().recalibrate_images, 20_000);
    assert_eq!(t.recalibration_batches(), 5);
    t.recalibrate_bn(&path()).unwrap();
    let bn = t.supernet().batch_norms()[0].running_stats();
    let (m, v) = expected(5);
    assert!(close(bn.0[0], m) && close(bn.1[0], v), "{bn:?} vs {m} {v}");
    let t = trainer(TrainerParams {
        recalibrate_batches: 2,
        ..TrainerParams::default()
    });
    assert_eq!(t.recalibration_batches(), 2);
}

#[test]
fn scoring_a_path_restores_the_training_statistics() {
    let mut t = trainer(TrainerParams::default());
    t.begin_epoch(0).unwrap();
    t.train_weights(&path()).unwrap();
    let before = t.supernet().batch_norms()[0].running_stats();
    t.evaluate(&path(), nas_core::Split::Valid, Some(1))
        .unwrap();
    assert_eq!(t.supernet().batch_norms()[0].running_stats(), before);
}
