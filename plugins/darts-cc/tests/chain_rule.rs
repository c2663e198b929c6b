//! The strategy's gradient with respect to the hypernetwork (anchors and pivots), through
//! the relaxation (softmax with temperature, or Gumbel-softmax with fixed noise) and with
//! the complexity penalty, against central differences of the total objective
//! `sum_i L(w_i) + lambda * sum_d softmax(alpha_d(t)) . c_d`.
use crate::common;

use nas_core::SearchStrategy;
use nas_strategy_darts_cc::penalty::expected_cost;
use nas_strategy_darts_cc::relax::Relaxed;
use nas_strategy_darts_cc::DartsCc;

fn objective(
    s: &mut DartsCc,
    state: &serde_json::Value,
    h: &nas_strategy_darts_cc::Hypernets,
    t: f64,
    lambda: f64,
    tau: f64,
) -> f64 {
    // Restoring the state restores the sampling stream: the same Gumbel noise every time.
    s.load_state(state).unwrap();
    s.set_hypernets(h.clone()).unwrap();
    let r = s.relax(t, tau, 3).unwrap();
    let ws: Vec<Vec<Vec<f64>>> = match r {
        Relaxed::Shared(w) => vec![w],
        Relaxed::PerSample(ws) => ws,
    };
    let data: f64 = ws.iter().map(|w| common::loss(w)).sum();
    let logits = s.hypernets().unwrap().logits(t).unwrap();
    data + lambda * expected_cost(&logits, s.costs()).0
}

fn check(relaxation: &str, train_pivots: bool, t: f64) {
    let mut s = DartsCc::new(&serde_json::json!({
        "relaxation": relaxation,
        "train_pivots": train_pivots,
        "log_lambda_min": -3.0,
        "log_lambda_max": 0.0,
        "init_bound": 0.8,
    }))
    .unwrap();
    s.init(&common::spec(), 4).unwrap();
    // Move the pivots off the grid so their gradient is not a special case.
    let mut h = s.hypernets().unwrap().clone();
    for n in &mut h.nets {
        n.pivots = vec![0.0, 0.3, 0.7, 1.0];
    }
    s.set_hypernets(h.clone()).unwrap();
    let state = s.save_state().unwrap();
    let (lambda, tau) = (s.range().lambda_of(t), 0.6);

    s.load_state(&state).unwrap();
    s.set_hypernets(h.clone()).unwrap();
    let r = s.relax(t, tau, 3).unwrap();
    let grads: Vec<nas_core::MixingWeights> = match &r {
        Relaxed::Shared(w) => vec![w.clone()],
        Relaxed::PerSample(ws) => ws.clone(),
    }
    .iter()
    .map(|w| {
        common::loss_grad(&nas_core::MixingWeights(
            w.iter()
                .map(|r| r.iter().map(|&x| x as f32).collect())
                .collect(),
        ))
    })
    .collect();
    let (g, _, _) = s.hyper_gradient(t, lambda, tau, &r, &grads).unwrap();

    let e = 1e-6;
    let (mut num, mut den, mut n) = (0.0f64, 0.0f64, 0);
    for (i, net) in h.nets.iter().enumerate() {
        for j in 0..net.anchors.len() {
            let (mut p, mut m) = (h.clone(), h.clone());
            p.nets[i].anchors[j] += e;
            m.nets[i].anchors[j] -= e;
            let fd = (objective(&mut s, &state, &p, t, lambda, tau)
                - objective(&mut s, &state, &m, t, lambda, tau))
                / (2.0 * e);
            num += (fd - g.anchors[i][j]).powi(2);
            den += fd * fd;
            n += 1;
        }
        for j in 0..net.pivots.len() {
            let (mut p, mut m) = (h.clone(), h.clone());
            p.nets[i].pivots[j] += e;
            m.nets[i].pivots[j] -= e;
            let fd = (objective(&mut s, &state, &p, t, lambda, tau)
                - objective(&mut s, &state, &m, t, lambda, tau))
                / (2.0 * e);
            assert!(
                (fd - g.pivots[i][j]).abs() < 1e-4 * (1.0 + fd.abs()),
                "{relaxation} t={t} net {i} pivot {j}: fd {fd} vs {}",
                g.pivots[i][j]
            );
        }
    }
    let rel = (num / den).sqrt();
    // The trainer's gradient is f32 (~1e-7 relative); the rest is f64.
    assert!(
        rel < 1e-5,
        "{relaxation} t={t}: relative error {rel:e} over {n} anchors"
    );
    assert!(den > 0.0);
}

#[test]
fn softmax_chain_rule_with_penalty_matches_central_differences() {
    for t in [0.1, 0.5, 0.9] {
        check("softmax", false, t);
    }
}

#[test]
fn gumbel_chain_rule_with_penalty_matches_central_differences() {
    for t in [0.2, 0.8] {
        check("gumbel", true, t);
    }
}

/// The penalty alone: with no data gradient, the anchor gradient is
/// `lambda * dE[cost]/d alpha` spread over the two anchors of the segment.
#[test]
fn penalty_gradient_is_lambda_times_expected_cost_gradient() {
    let mut s =
        DartsCc::new(&serde_json::json!({"log_lambda_min": -2.0, "log_lambda_max": 0.0})).unwrap();
    s.init(&common::spec(), 1).unwrap();
    let t = 0.25; // anchors 0 and 1 (K = 3), weights 0.5 and 0.5
    let lambda = s.range().lambda_of(t);
    assert!((lambda - 10f64.powf(-1.5)).abs() < 1e-15);
    let r = s.relax(t, 1.0, 1).unwrap();
    let zero = nas_core::MixingWeights::zeros(&common::spec());
    let (g, pen, cost) = s.hyper_gradient(t, lambda, 1.0, &r, &[zero]).unwrap();
    let logits = s.hypernets().unwrap().logits(t).unwrap();
    let (c, dc) = expected_cost(&logits, s.costs());
    assert!((cost - c).abs() < 1e-12 && (pen - lambda * c).abs() < 1e-12);
    let net = &s.hypernets().unwrap().nets[1];
    let w = net.width();
    let row0: Vec<f64> = dc[net.decisions[0]]
        .iter()
        .map(|v| 0.5 * lambda * v)
        .collect();
    for (k, want) in row0.iter().enumerate() {
        assert!((g.anchors[1][k] - want).abs() < 1e-15);
        assert!((g.anchors[1][w + k] - want).abs() < 1e-15);
        assert_eq!(g.anchors[1][2 * w + k], 0.0);
    }
}
