//! SPOS supernet training leaves the options off the sampled path untouched: in the
//! reference (megvii-model/SinglePathOneShot, PyTorch SGD with momentum 0.9 and weight
//! decay 4e-5) their gradients are `None`, so the optimizer skips them: no momentum step, no
//! weight decay. A parameter that took a momentum step once would keep drifting under a
//! zero gradient (`buf = 0.9 buf + wd p`, `p -= lr buf`), which is what `skip_unused: false`
//! shows.
use crate::common;

use nas_core::{Architecture, Drive, DriveKind, SupernetTrainer};
use nas_space_spos::OPS;
use nas_trainer::TrainerParams;

fn drive(archs: Vec<Vec<usize>>) -> Drive {
    Drive {
        kind: DriveKind::Paths {
            archs: archs
                .into_iter()
                .map(|c| Architecture::new("spos", c))
                .collect(),
        },
        condition: None,
    }
}

/// Parameter values of option `op` of every decision.
fn option_weights(t: &nas_trainer::WeightSharingTrainer, op: usize) -> Vec<(String, Vec<f32>)> {
    common::snapshot(t)
        .into_iter()
        .filter(|(n, _)| (0..4).any(|d| n.starts_with(&format!("layers.{d}.{}.", OPS[op]))))
        .collect()
}

fn trainer(skip_unused: bool) -> nas_trainer::WeightSharingTrainer {
    let space = common::tiny_spos([1, 1, 1, 1]);
    let mut t = common::trainer_with(
        &space,
        serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 4e-5}),
        200,
        TrainerParams {
            skip_unused,
            ..TrainerParams::default()
        },
    );
    t.begin_epoch(0).unwrap();
    t
}

#[test]
fn an_unsampled_option_is_bit_identical_after_a_spos_step() {
    let mut t = trainer(true);
    // Step 1 trains option 0 everywhere (its momentum buffers fill), step 2 option 1.
    t.train_weights(&drive(vec![vec![0; 4]])).unwrap();
    let after_first = option_weights(&t, 0);
    let one_before = option_weights(&t, 1);
    t.train_weights(&drive(vec![vec![1; 4]])).unwrap();
    assert_eq!(option_weights(&t, 0), after_first);
    assert_ne!(option_weights(&t, 1), one_before);
    // Options never sampled are still at their initial values too.
    let mut fresh = trainer(true);
    let init3 = option_weights(&fresh, 3);
    fresh.train_weights(&drive(vec![vec![0; 4]])).unwrap();
    assert_eq!(option_weights(&fresh, 3), init3);
}

#[test]
fn without_skipping_momentum_and_weight_decay_move_unsampled_options() {
    let mut t = trainer(false);
    t.train_weights(&drive(vec![vec![0; 4]])).unwrap();
    let after_first = option_weights(&t, 0);
    t.train_weights(&drive(vec![vec![1; 4]])).unwrap();
    assert_ne!(option_weights(&t, 0), after_first);
}

#[test]
fn a_fairnas_step_still_moves_every_option() {
    let mut t = trainer(true);
    let before: Vec<_> = (0..4).map(|k| option_weights(&t, k)).collect();
    // Four paths covering every option of every decision once, one update.
    t.train_weights(&drive(vec![
        vec![0, 1, 2, 3],
        vec![1, 2, 3, 0],
        vec![2, 3, 0, 1],
        vec![3, 0, 1, 2],
    ]))
    .unwrap();
    for (k, b) in before.iter().enumerate() {
        let a = option_weights(&t, k);
        assert!(a.iter().zip(b).all(|(x, y)| x.1 != y.1), "option {k}");
    }
}
