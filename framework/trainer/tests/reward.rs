//! The ENAS reward: `arch_gradient` of one discrete path scores it on the next shuffled
//! validation batch in training mode (batch statistics, no recalibration), returns no
//! gradient and changes no weight.
use crate::common;

use std::sync::Arc;

use candle_core::DType;
use nas_core::{Architecture, Drive, GradOrder, SupernetTrainer};
use nas_data::{Augment, Dataset, Loader};
use rand::Rng;

/// The data `common::tiny` builds (same stream), and its validation loader rebuilt
/// independently with the trainer's seed, so it yields the same shuffled batches.
fn valid_loader(batch: usize) -> Loader {
    let n = 2 * batch;
    let mut rng = nas_core::component_rng(7, "test.data");
    let data = Arc::new(Dataset {
        name: "random".into(),
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
        images: (0..n * 64).map(|_| rng.random::<f32>()).collect(),
        labels: (0..n).map(|i| (i % 3) as u32).collect(),
        files: None,
    });
    let mut l = Loader::new(
        data,
        (batch..n).collect(),
        batch,
        true,
        Augment::default(),
        vec![0.5],
        vec![0.3],
        nas_core::rng::component_seed(3, "data.valid"),
    )
    .unwrap();
    l.start_epoch(0);
    l
}

#[test]
fn a_path_reward_is_the_training_mode_accuracy_on_the_next_validation_batch() {
    let batch = 6;
    let (_space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), batch);
    t.begin_epoch(0).unwrap();
    let spec = t.spec().clone();
    // sep_conv_3x3 on every edge of the tiny DARTS cell (a path through weighted ops).
    let k = spec.option_index(0, "sep_conv_3x3").unwrap();
    let arch = Architecture::new(spec.space.clone(), vec![k; spec.decisions.len()]);
    let drive = Drive::path(arch);
    let mut expected = valid_loader(batch);
    let w0 = t.weight_values().unwrap();
    for _ in 0..3 {
        let r = t.arch_gradient(&drive, GradOrder::First).unwrap();
        assert!(r.grads.is_empty());
        // Independently: the same shuffled batch through a plain training-mode pass.
        let b = expected.next_batch().unwrap();
        let g = t.batch_gradients(&b, &drive).unwrap();
        assert!((r.loss - g.loss).abs() < 1e-12, "{} vs {}", r.loss, g.loss);
        assert_eq!(r.accuracy, g.correct as f64 / b.n as f64);
    }
    assert_eq!(
        t.weight_values().unwrap(),
        w0,
        "a reward changed the weights"
    );
}

#[test]
fn several_paths_or_a_second_order_reward_are_errors() {
    let (_space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 4);
    t.begin_epoch(0).unwrap();
    let spec = t.spec().clone();
    let a = Architecture::new(spec.space.clone(), vec![1; spec.decisions.len()]);
    let two = Drive::paths(vec![a.clone(), a.clone()]);
    assert!(t.arch_gradient(&two, GradOrder::First).is_err());
    let e = t
        .arch_gradient(&Drive::path(a), GradOrder::Second { xi: None })
        .err()
        .unwrap();
    assert!(e.to_string().contains("reward"), "{e}");
}
