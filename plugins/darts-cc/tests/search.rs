//! The DARTS-CC search loop against a fake trainer: one lambda per step shared by the
//! architecture and weight steps, the penalty shaping a family whose cost falls with `t`,
//! per-example Gumbel drives, and resumable state.
use crate::common;

use common::{FakeEnv, FakeTrainer};
use nas_core::{SearchEnv, SearchStrategy};
use nas_strategy_darts_cc::DartsCc;

fn run(s: &mut DartsCc, env: &mut FakeEnv, epochs: usize) -> Vec<nas_core::Metrics> {
    let mut out = Vec::new();
    for e in 0..epochs {
        env.epoch = e;
        for _ in 0..nas_core::SupernetTrainer::steps_per_epoch(&env.trainer) {
            out.push(s.step(env).unwrap().metrics);
        }
        s.end_epoch(env).unwrap();
    }
    out
}

fn strategy(extra: serde_json::Value) -> DartsCc {
    let mut p = serde_json::json!({
        "log_lambda_min": -4.0,
        "log_lambda_max": 0.0,
        "init_bound": 0.01,
        "arch_optimizer": {"name": "adam", "params": {"lr": 0.05, "betas": [0.5, 0.999]}},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    let mut s = DartsCc::new(&p).unwrap();
    s.init(&common::spec(), 7).unwrap();
    s
}

#[test]
fn the_family_gets_cheaper_as_lambda_grows() {
    let mut s = strategy(serde_json::json!({}));
    let mut env = FakeEnv {
        trainer: FakeTrainer::new(4),
        epoch: 0,
        epochs: 60,
    };
    let steps = run(&mut s, &mut env, 60);
    assert_eq!(env.trainer.arch_steps, 180);
    assert_eq!(env.trainer.weight_steps, 180);
    // The weight step is conditioned on the t of the architecture step.
    for (m, c) in steps.iter().zip(&env.trainer.conditions) {
        assert_eq!(Some(m["t"] as f32), *c);
        let l = m["lambda"];
        assert!((1e-4..=1.0).contains(&l));
        assert!((s.range().t_of(l) - m["t"]).abs() < 1e-9);
    }
    let out = s.outcome(&mut env).unwrap();
    assert_eq!(out.architectures.len(), 5);
    let costs: Vec<f64> = out
        .architectures
        .iter()
        .map(|f| env.cost(&f.arch).unwrap().params)
        .collect();
    // Low lambda: the data term (which rewards costly options) wins, every edge `large`;
    // high lambda: the penalty wins, every edge `none`.
    assert_eq!(costs[0], 5.0 * 30.0, "{costs:?}");
    assert_eq!(costs[4], 0.0, "{costs:?}");
    assert!(costs.windows(2).all(|c| c[1] <= c[0]), "{costs:?}");
    assert_eq!(out.architectures[2].label, "t=0.5");
    assert!((out.architectures[2].metrics["lambda"] - 1e-2).abs() < 1e-12);
}

#[test]
fn gumbel_drives_one_weight_set_per_example() {
    let mut s = strategy(serde_json::json!({"relaxation": "gumbel", "order": "second"}));
    let mut env = FakeEnv {
        trainer: FakeTrainer::new(5),
        epoch: 0,
        epochs: 1,
    };
    // FakeTrainer asserts the drive has `batch` weight sets.
    run(&mut s, &mut env, 1);
    assert_eq!(env.trainer.weight_steps, 3);
}

#[test]
fn a_resumed_search_continues_exactly() {
    let mk_env = || FakeEnv {
        trainer: FakeTrainer::new(3),
        epoch: 0,
        epochs: 4,
    };
    let extra = serde_json::json!({"relaxation": "gumbel", "train_pivots": true});
    let mut a = strategy(extra.clone());
    let mut env = mk_env();
    run(&mut a, &mut env, 2);
    let saved = a.save_state().unwrap();
    env.epoch = 2;
    let more_a = run(&mut a, &mut env, 1);

    let mut b = strategy(extra);
    b.load_state(&saved).unwrap();
    let mut env_b = mk_env();
    env_b.epoch = 2;
    let more_b = run(&mut b, &mut env_b, 1);
    assert_eq!(more_a, more_b);
    assert_eq!(a.save_state().unwrap(), b.save_state().unwrap());
    // A state of another lambda range is refused.
    let mut c = DartsCc::new(&serde_json::json!({"log_lambda_min": -9.0})).unwrap();
    c.init(&common::spec(), 1).unwrap();
    assert!(c.load_state(&saved).is_err());
}
