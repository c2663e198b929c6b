//! The controller over ENAS macro layers: the sampling plan, the log-probability and skip
//! penalty of a one-unit controller worked by hand, the REINFORCE loss gradient with the
//! KL skip penalty against central differences, learning a toy reward, and the skip rate
//! the penalty alone converges to.
use crate::common;

use common::{macro_spec, ToyEnv};
use nas_core::SearchStrategy;
use nas_strategy_enas::{Block, Controller, Enas, EnasParams, PolicyConfig};

fn cfg(h: usize, tanh: Option<f64>, temp: Option<f64>) -> PolicyConfig {
    PolicyConfig {
        lstm_size: h,
        tanh_constant: tanh,
        op_tanh_reduce: 2.5,
        temperature: temp,
        init_range: 0.5,
        skip_target: 0.4,
    }
}

#[test]
fn the_plan_samples_an_op_then_one_skip_per_earlier_layer() {
    let ctl = Controller::new(
        &macro_spec(3),
        cfg(3, None, None),
        &mut nas_core::component_rng(0, "t"),
    )
    .unwrap();
    let plan = ctl.plan();
    assert!(plan.has_macro() && !plan.has_cells());
    match &plan.blocks[..] {
        [Block::Macro { layers }] => {
            assert_eq!(layers.len(), 3);
            assert_eq!(layers[0].op, (0, 0));
            assert!(layers[0].skips.is_empty());
            assert_eq!(layers[1].op, (1, 0));
            assert_eq!(layers[1].skips, [2]);
            assert_eq!(layers[2].op, (3, 0));
            assert_eq!(layers[2].skips, [4, 5]);
        }
        b => panic!("{b:?}"),
    }
    // A layer with more skips than earlier layers is refused.
    let mut bad = macro_spec(2);
    let mut extra = bad.decisions[2].clone();
    extra.key = "layer1.skip1".into();
    bad.decisions.push(extra);
    let e = Controller::new(
        &bad,
        cfg(3, None, None),
        &mut nas_core::component_rng(0, "t"),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("layer1.skip1"), "{e}");
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn log_softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

#[test]
fn log_prob_and_skip_penalty_match_a_hand_computation() {
    let (tc, temp, target) = (1.5, 2.0, 0.4);
    let ctl = Controller::new(
        &macro_spec(2),
        cfg(1, Some(tc), Some(temp)),
        &mut nas_core::component_rng(1, "t"),
    )
    .unwrap();
    assert_eq!(
        ctl.names(),
        [
            "lstm.w",
            "g_emb",
            "attention.w_1",
            "attention.w_2",
            "attention.v",
            "head0.emb",
            "head0.w_soft",
            "head0.b_soft"
        ]
    );
    // [x -> i f o g, h -> i f o g].
    let lw = [0.3, -0.2, 0.5, 0.7, 0.4, 0.1, -0.3, 0.6];
    let (ge, w1, w2, v) = (0.8, 0.9, -1.3, 2.1);
    let emb = [0.5, -0.4, 0.3, 0.2, -0.7, 0.6];
    let ws = [0.6, -0.9, 0.2, 0.4, -0.1, 0.3];
    // The op head's bias is not used (the reference's macro controller has none).
    let b = [5.0; 6];
    ctl.set_values(&[
        lw.to_vec(),
        vec![ge],
        vec![w1],
        vec![w2],
        vec![v],
        emb.to_vec(),
        ws.to_vec(),
        b.to_vec(),
    ])
    .unwrap();
    let lstm = |x: f64, c: f64, h: f64| {
        let z: Vec<f64> = (0..4).map(|j| x * lw[j] + h * lw[4 + j]).collect();
        let c2 = sigmoid(z[0]) * z[3].tanh() + sigmoid(z[1]) * c;
        (c2, sigmoid(z[2]) * c2.tanh())
    };
    let squash = |u: f64| tc * (u / temp).tanh();
    let (a0, a1, bit) = (3, 5, 1);
    let (c1, h1) = lstm(ge, 0.0, 0.0);
    let lp0 = log_softmax(&ws.map(|w| squash(h1 * w)))[a0];
    let (c2, h2) = lstm(emb[a0], c1, h1);
    let (c3, h3) = lstm(ge, c2, h2);
    let lp1 = log_softmax(&ws.map(|w| squash(h3 * w)))[a1];
    let (_, h4) = lstm(emb[a1], c3, h3);
    let q = v * (w1 * h2 + w2 * h4).tanh();
    let z = [squash(-q), squash(q)];
    let lp2 = log_softmax(&z)[bit];
    let kl = sigmoid(z[0]) * (sigmoid(z[0]) / (1.0 - target)).ln()
        + sigmoid(z[1]) * (sigmoid(z[1]) / target).ln();
    let r = ctl.score(&[a0, a1, bit]).unwrap();
    let lp = r.log_prob.to_scalar::<f64>().unwrap();
    assert!(
        (lp - (lp0 + lp1 + lp2)).abs() < 1e-12,
        "{lp} vs {}",
        lp0 + lp1 + lp2
    );
    let pen = r.skip_penalty.to_scalar::<f64>().unwrap();
    assert!((pen - kl).abs() < 1e-12, "{pen} vs {kl}");
    assert!(kl > 1e-4, "the check is not vacuous: {kl}");
    assert_eq!(r.skip_count, 1);
}

#[test]
fn reinforce_gradient_with_the_skip_penalty_matches_central_differences() {
    let spec = macro_spec(3);
    let ctl = Controller::new(
        &spec,
        cfg(3, Some(1.5), Some(2.0)),
        &mut nas_core::component_rng(2, "t"),
    )
    .unwrap();
    // Ops, then skips on and off.
    let choices = [1, 4, 1, 2, 0, 1];
    let (scale, weight) = (-0.37, 0.8);
    let loss = |c: &Controller| {
        let r = c.score(&choices).unwrap();
        scale * r.log_prob.to_scalar::<f64>().unwrap()
            + weight * r.skip_penalty.to_scalar::<f64>().unwrap()
    };
    let r = ctl.score(&choices).unwrap();
    let g = ctl.grad_loss(&r, scale, weight).unwrap();
    // The penalty's own gradient is part of it (the check would pass without it otherwise).
    let r = ctl.score(&choices).unwrap();
    let g_pen = ctl.grad_loss(&r, 0.0, 1.0).unwrap();
    assert!(g_pen.iter().flatten().any(|v| v.abs() > 1e-4));
    let w0 = ctl.values().unwrap();
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for (p, buf) in w0.iter().enumerate() {
        for i in 0..buf.len() {
            let mut w = w0.clone();
            w[p][i] += eps;
            ctl.set_values(&w).unwrap();
            let lp = loss(&ctl);
            w[p][i] -= 2.0 * eps;
            ctl.set_values(&w).unwrap();
            let lm = loss(&ctl);
            let fd = (lp - lm) / (2.0 * eps);
            let err = (fd - g[p][i]).abs();
            assert!(
                err < 1e-7 || err / fd.abs().max(g[p][i].abs()) < 1e-5,
                "{}[{i}]: autograd {} vs central difference {fd}",
                ctl.names()[p],
                g[p][i]
            );
            worst = worst.max(err);
        }
    }
    ctl.set_values(&w0).unwrap();
    assert!(worst < 1e-7, "largest difference {worst}");
}

/// 4 layers: 4 ops and 6 skip bits.
const TARGET: [usize; 10] = [3, 4, 1, 0, 0, 1, 5, 1, 0, 1];

/// The micro toy test's fast-learning settings (tests/strategy.rs) with 16 LSTM units:
/// every layer's op comes from one shared head (as in the reference), so different ops per
/// layer rest on the LSTM state alone; with 8 units the run often settles on a wrong op
/// (seeds 1 and 7 did), with 16 it reached p > 0.9 in 20 to 47 epochs for seeds 1, 2, 3, 7.
fn toy_params() -> EnasParams {
    EnasParams {
        lstm_size: 16,
        lr: 0.02,
        tanh_constant: None,
        temperature: None,
        entropy_weight: 0.01,
        controller_steps: 10,
        aggregate: 5,
        final_samples: 4,
        betas: [0.0, 0.9],
        init_range: 0.5,
        // A light penalty: it pulls every skip towards 0.4, against the reward.
        skip_weight: 0.05,
        ..EnasParams::default()
    }
}

#[test]
fn probability_of_the_best_macro_architecture_rises_above_0_9() {
    let mut env = ToyEnv::with_spec(macro_spec(4), TARGET.to_vec(), 1000);
    let mut s = Enas::new(toy_params()).unwrap();
    s.init(&env.trainer.spec.clone(), 7).unwrap();
    let p = |s: &Enas| s.controller().unwrap().log_prob(&TARGET).unwrap().exp();
    let p0 = p(&s);
    assert!(p0 < 0.01, "{p0}");
    let mut reached = None;
    let mut last = nas_core::Metrics::new();
    for e in 0..60 {
        env.epoch.0 = e;
        for _ in 0..2 {
            s.step(&mut env).unwrap();
        }
        last = s.end_epoch(&mut env).unwrap().metrics;
        if p(&s) > 0.9 {
            reached = Some(e);
            break;
        }
    }
    let e = reached.unwrap_or_else(|| panic!("p(best) = {} after 600 updates", p(&s)));
    assert_eq!(env.trainer.rewards, (e + 1) * 50);
    assert!(
        last.contains_key("skip_penalty") && last.contains_key("skips"),
        "{last:?}"
    );
    env.epoch.1 = env.epoch.0 + 1;
    let out = s.outcome(&mut env).unwrap();
    assert_eq!(out.architectures[0].arch.choices, TARGET);
}

#[test]
fn the_penalty_alone_pulls_the_sigmoid_of_the_skip_logit_to_the_target() {
    // A reward that never changes (no choice can match): only the penalty acts. It drives
    // sigmoid(q) to skip_target = 0.4, and the sampled skip probability, softmax([-q, q]),
    // to sigmoid(2q) = 0.16 / 0.52 = 0.31 (the reference's penalty, reproduced).
    let mut env = ToyEnv::with_spec(macro_spec(4), vec![99; 10], 1000);
    let params = EnasParams {
        entropy_weight: 0.0,
        skip_weight: 1.0,
        ..toy_params()
    };
    let mut s = Enas::new(params).unwrap();
    s.init(&env.trainer.spec.clone(), 3).unwrap();
    let mut m = nas_core::Metrics::new();
    for e in 0..30 {
        env.epoch.0 = e;
        m = s.end_epoch(&mut env).unwrap().metrics;
    }
    assert!(m["skip_penalty"] < 2e-3, "{m:?}");
    let ctl = s.controller().unwrap();
    let mut rng = nas_core::component_rng(9, "t");
    let (mut on, mut n) = (0usize, 0usize);
    for _ in 0..2000 {
        let r = ctl.sample(&mut rng).unwrap();
        on += r.skip_count;
        n += 6;
    }
    let rate = on as f64 / n as f64;
    assert!((rate - 0.16 / 0.52).abs() < 0.03, "skip rate {rate}");
}

/// A config that names no controller value gets the macro search script's values over a
/// macro space and the micro script's over a cell space; a key the config sets wins in both.
#[test]
fn defaults_follow_the_space_kind_and_config_keys_win() {
    let user = serde_json::json!({"lr": 0.02, "controller_steps": 3});
    let mut on_macro = nas_strategy_enas::build("enas", &user).unwrap();
    on_macro.init(&macro_spec(4), 0).unwrap();
    let mut on_micro = Enas::from_config(&user).unwrap();
    on_micro.init(&common::toy_spec(), 0).unwrap();
    let want_macro = EnasParams {
        lr: 0.02,
        controller_steps: 3,
        ..EnasParams::macro_search()
    };
    let want_micro = EnasParams {
        lr: 0.02,
        controller_steps: 3,
        ..EnasParams::default()
    };
    // The reference scripts' values, written out (scripts/cifar10_{macro,micro}_search.sh).
    assert_eq!(want_macro.tanh_constant, Some(1.5));
    assert_eq!(want_macro.temperature, None);
    assert_eq!(want_macro.aggregate, 20);
    assert_eq!(want_micro.tanh_constant, Some(1.10));
    assert_eq!(want_micro.aggregate, 10);
    assert_eq!(on_micro.params(), &want_micro);
    let mut typed = Enas::from_config(&user).unwrap();
    typed.init(&macro_spec(4), 0).unwrap();
    assert_eq!(typed.params(), &want_macro);
    // Typed params are explicit: no switch.
    let mut explicit = Enas::new(EnasParams::default()).unwrap();
    explicit.init(&macro_spec(4), 0).unwrap();
    assert_eq!(explicit.params(), &EnasParams::default());
    // A bad key is still refused at build time, naming it.
    let err = Enas::from_config(&serde_json::json!({"lr": -1.0}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("lr"), "{err}");
}
