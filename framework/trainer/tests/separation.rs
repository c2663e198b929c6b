//! The weight optimizer never changes an architecture parameter and vice versa: an
//! architecture-gradient request (first or second order) leaves every supernet weight
//! bit-identical, and a weight step leaves the strategy's alphas untouched.
use crate::common;

use candle_core::DType;
use nas_core::{Drive, GradOrder, SearchStrategy, SpaceRules, SupernetTrainer};
use nas_model::Supernet;
use nas_trainer::WeightSharingTrainer;

fn snapshot(t: &WeightSharingTrainer) -> Vec<Vec<f64>> {
    t.supernet()
        .params()
        .named()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

fn bn_stats(t: &WeightSharingTrainer) -> Vec<(Vec<f64>, Vec<f64>)> {
    Supernet::batch_norms(t.supernet())
        .iter()
        .map(|b| b.running_stats())
        .collect()
}

#[test]
fn arch_gradients_never_change_weights() {
    let (space, mut t) = common::tiny(
        DType::F64,
        serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}),
        4,
    );
    t.begin_epoch(0).unwrap();
    let w = common::random_weights(space.spec(), 2);
    // A weight step first, so the momentum buffers are non-zero.
    t.train_weights(&Drive::mixed(w.clone())).unwrap();
    let before = snapshot(&t);
    t.arch_gradient(&Drive::mixed(w.clone()), GradOrder::First)
        .unwrap();
    assert_eq!(snapshot(&t), before, "first order changed a weight");
    t.arch_gradient(&Drive::mixed(w.clone()), GradOrder::Second { xi: None })
        .unwrap();
    assert_eq!(snapshot(&t), before, "second order changed a weight");
    t.train_weights(&Drive::mixed(w)).unwrap();
    assert_ne!(
        snapshot(&t),
        before,
        "a weight step must change the weights"
    );
    let _ = bn_stats(&t);
}

#[test]
fn weight_steps_never_change_alphas_and_arch_steps_never_change_weights() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 4);
    t.begin_epoch(0).unwrap();
    let mut s = nas_strategy_darts::Darts::new(&serde_json::json!({})).unwrap();
    s.init(space.spec(), 1).unwrap();
    let alphas = s.alphas().to_vec();
    t.train_weights(&Drive::mixed(s.weights())).unwrap();
    assert_eq!(s.alphas(), &alphas[..], "a weight step changed the alphas");
    let weights = snapshot(&t);
    let sb = nas_registry::SpaceBox::Tensor(Box::new(space));
    let mut env = nas_runner::env::RunEnv {
        space: &sb,
        trainer: Some(&mut t),
        estimator: None,
        network: None,
        epoch: 0,
        epochs: 1,
    };
    s.arch_step(&mut env).unwrap();
    assert_ne!(
        s.alphas(),
        &alphas[..],
        "an arch step must change the alphas"
    );
    assert_eq!(snapshot(&t), weights, "an arch step changed the weights");
    let _ = sb.rules().spec();
}
