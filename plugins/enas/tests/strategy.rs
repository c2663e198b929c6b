//! The `enas` strategy on a toy reward that depends only on the choices: it learns the
//! best architecture, and a run saved and resumed midway ends exactly like an
//! uninterrupted one.
use crate::common;

use common::ToyEnv;
use nas_core::{SearchOutcome, SearchStrategy};
use nas_strategy_enas::{Enas, EnasParams};

const TARGET: [usize; 10] = [1, 4, 0, 1, 2, 0, 2, 2, 2, 1];

/// Fast-learning settings: no logit squashing (the reference's `1.10 / 2.5 * tanh` caps an
/// op's probability at about 0.37, so no architecture can ever reach 0.9 under it), no
/// entropy bonus; the toy space's ops are not named like the micro ops, so they start
/// without the reference's op bias.
fn toy_params() -> EnasParams {
    EnasParams {
        lstm_size: 8,
        lr: 0.02,
        tanh_constant: None,
        temperature: None,
        entropy_weight: 0.01,
        controller_steps: 10,
        aggregate: 5,
        final_samples: 4,
        // A shorter second-moment memory than TensorFlow's 0.999: late advantages are
        // small, and a long memory of the large early ones stalls the last steps.
        betas: [0.0, 0.9],
        // Wider initial weights: the two cell inputs' anchors are both zero, so choosing
        // between them rests on the two first LSTM outputs, which barely differ at 0.1.
        init_range: 0.5,
        ..EnasParams::default()
    }
}

fn epoch(s: &mut Enas, env: &mut ToyEnv, e: usize) -> nas_core::Metrics {
    env.epoch.0 = e;
    for _ in 0..2 {
        s.step(env).unwrap();
    }
    s.end_epoch(env).unwrap().metrics
}

#[test]
fn probability_of_the_best_architecture_rises_above_0_9() {
    let mut env = ToyEnv::new(TARGET.to_vec(), 1000);
    let mut s = Enas::new(toy_params()).unwrap();
    s.init(&env.trainer.spec.clone(), 7).unwrap();
    let p = |s: &Enas| s.controller().unwrap().log_prob(&TARGET).unwrap().exp();
    let p0 = p(&s);
    assert!(p0 < 0.01, "{p0}");
    let mut reached = None;
    for e in 0..60 {
        epoch(&mut s, &mut env, e);
        if p(&s) > 0.9 {
            reached = Some(e);
            break;
        }
    }
    let e = reached.unwrap_or_else(|| panic!("p(best) = {} after 600 updates", p(&s)));
    // 10 updates of 5 samples per epoch, 2 weight steps per epoch.
    assert_eq!(env.trainer.rewards, (e + 1) * 50);
    assert_eq!(env.trainer.weight_steps, (e + 1) * 2);
    let b = s.baseline().unwrap();
    assert!(b > 0.5 && b <= 1.0, "baseline {b}");
    env.epoch.1 = env.epoch.0 + 1;
    let out = s.outcome(&mut env).unwrap();
    assert_eq!(out.architectures[0].arch.choices, TARGET);
}

fn run(epochs: usize, cut: Option<usize>) -> (Vec<nas_core::Metrics>, SearchOutcome) {
    let params = EnasParams {
        controller_steps: 3,
        aggregate: 2,
        ..toy_params()
    };
    let mut env = ToyEnv::new(TARGET.to_vec(), epochs);
    let spec = env.trainer.spec.clone();
    let mut s = Enas::new(params.clone()).unwrap();
    s.init(&spec, 11).unwrap();
    let mut metrics = Vec::new();
    for e in 0..epochs {
        if Some(e) == cut {
            // Save, drop everything, start a new strategy and load.
            let text = serde_json::to_string(&s.save_state().unwrap()).unwrap();
            drop(s);
            s = Enas::new(params.clone()).unwrap();
            s.init(&spec, 11).unwrap();
            s.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        }
        metrics.push(epoch(&mut s, &mut env, e));
    }
    (metrics, s.outcome(&mut env).unwrap())
}

#[test]
fn saved_and_resumed_run_ends_like_the_uninterrupted_one() {
    let (m_ref, o_ref) = run(4, None);
    let (m_cut, o_cut) = run(4, Some(2));
    assert_eq!(m_ref, m_cut);
    assert_eq!(o_ref, o_cut);
    assert!(m_ref[3].contains_key("reward"));
    assert!(m_ref[3].contains_key("final_reward_acc"));
}

#[test]
fn bad_params_name_the_key() {
    let e = nas_strategy_enas::build("enas", &serde_json::json!({"lr": -1.0}))
        .err()
        .unwrap();
    assert!(e.to_string().contains("lr"), "{e}");
    let e = nas_strategy_enas::build("enas", &serde_json::json!({"lstm_sise": 3}))
        .err()
        .unwrap();
    assert!(e.to_string().contains("lstm_sise"), "{e}");
}
