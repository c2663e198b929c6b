//! The controller's gradient against finite differences and against a REINFORCE gradient
//! worked by hand on a one-unit controller.
use crate::common;

use nas_core::{Cost, Decision, OptionSpec, SpaceSpec};
use nas_strategy_enas::{Block, Controller, PolicyConfig};

fn cfg(h: usize) -> PolicyConfig {
    PolicyConfig {
        lstm_size: h,
        tanh_constant: Some(1.1),
        op_tanh_reduce: 2.5,
        temperature: Some(5.0),
        init_range: 0.5,
        skip_target: 0.4,
    }
}

#[test]
fn the_plan_samples_inputs_by_attention_and_shares_op_heads() {
    let spec = common::toy_spec();
    let ctl = Controller::new(&spec, cfg(3), &mut nas_core::component_rng(0, "t")).unwrap();
    let plan = ctl.plan();
    assert_eq!(plan.blocks.len(), 3);
    match &plan.blocks[0] {
        Block::Cell { nodes, normal } => {
            assert!(normal);
            assert_eq!(nodes.len(), 2);
            assert_eq!(nodes[0].inputs, [0, 2]);
            assert_eq!(nodes[1].inputs, [4, 6]);
            // Both nodes' op decisions share head 0.
            assert_eq!(nodes[1].ops, [(5, 0), (7, 0)]);
        }
        b => panic!("{b:?}"),
    }
    assert_eq!(plan.heads.len(), 2);
}

#[test]
fn log_prob_gradient_matches_central_differences() {
    let spec = common::toy_spec();
    let ctl = Controller::new(&spec, cfg(3), &mut nas_core::component_rng(1, "t")).unwrap();
    // The same input twice, a later node, every kind of decision.
    let choices = [1, 0, 1, 3, 2, 4, 0, 1, 2, 0];
    let r = ctl.score(&choices).unwrap();
    let g = ctl.grad(&r, 1.0).unwrap();
    let w0 = ctl.values().unwrap();
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for (p, buf) in w0.iter().enumerate() {
        for i in 0..buf.len() {
            let mut w = w0.clone();
            w[p][i] += eps;
            ctl.set_values(&w).unwrap();
            let lp = ctl.log_prob(&choices).unwrap();
            w[p][i] -= 2.0 * eps;
            ctl.set_values(&w).unwrap();
            let lm = ctl.log_prob(&choices).unwrap();
            let fd = (lp - lm) / (2.0 * eps);
            let err = (fd - g[p][i]).abs() / (1e-6 + fd.abs().max(g[p][i].abs()));
            assert!(
                (fd - g[p][i]).abs() < 1e-7 || err < 1e-5,
                "{}[{i}]: autograd {} vs central difference {fd}",
                ctl.names()[p],
                g[p][i]
            );
            worst = worst.max((fd - g[p][i]).abs());
        }
    }
    ctl.set_values(&w0).unwrap();
    assert!(worst < 1e-7, "largest difference {worst}");
    // Something was actually compared: the gradient is not all zero.
    assert!(g.iter().flatten().any(|v| v.abs() > 1e-4));
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn reinforce_gradient_matches_a_hand_computation() {
    // One decision of two options, a controller of one hidden unit.
    let spec = SpaceSpec {
        space: "one".into(),
        decisions: vec![Decision {
            key: "d".into(),
            group: "g".into(),
            node: None,
            options: ["p", "q"]
                .iter()
                .map(|n| OptionSpec {
                    name: (*n).into(),
                    cost: Cost::default(),
                })
                .collect(),
        }],
        fixed_cost: Cost::default(),
    };
    let (c_tanh, temp) = (1.5, 2.0);
    let ctl = Controller::new(
        &spec,
        PolicyConfig {
            lstm_size: 1,
            tanh_constant: Some(c_tanh),
            op_tanh_reduce: 1.0,
            temperature: Some(temp),
            init_range: 0.1,
            skip_target: 0.4,
        },
        &mut nas_core::component_rng(2, "t"),
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
    let lstm = [0.3, -0.2, 0.5, 0.7, 0.1, 0.2, 0.3, 0.4];
    let (x, w_soft, b_soft) = (0.8, [0.6, -0.9], [0.1, -0.3]);
    ctl.set_values(&[
        lstm.to_vec(),
        vec![x],
        vec![0.0],
        vec![0.0],
        vec![0.0],
        vec![0.0, 0.0],
        w_soft.to_vec(),
        b_soft.to_vec(),
    ])
    .unwrap();
    // By hand: h0 = c0 = 0, so only the input row of the LSTM matters.
    let (i, o, g) = (
        sigmoid(x * lstm[0]),
        sigmoid(x * lstm[2]),
        (x * lstm[3]).tanh(),
    );
    let c = i * g;
    let h = o * c.tanh();
    let u: Vec<f64> = (0..2).map(|k| (h * w_soft[k] + b_soft[k]) / temp).collect();
    let z: Vec<f64> = u.iter().map(|u| c_tanh * u.tanh()).collect();
    let e: Vec<f64> = z.iter().map(|z| z.exp()).collect();
    let p: Vec<f64> = e.iter().map(|x| x / (e[0] + e[1])).collect();
    let a = 1;
    let (reward, baseline) = (0.7, 0.5);
    // loss = -(R - b) log p_a; d loss / d b_k = -(R - b) (1[k=a] - p_k) c (1 - tanh^2 u_k) / T.
    let dl_db: Vec<f64> = (0..2)
        .map(|k| {
            let ind = if k == a { 1.0 } else { 0.0 };
            -(reward - baseline) * (ind - p[k]) * c_tanh * (1.0 - u[k].tanh().powi(2)) / temp
        })
        .collect();
    let dl_dw: Vec<f64> = dl_db.iter().map(|d| d * h).collect();

    let r = ctl.score(&[a]).unwrap();
    let lp = r.log_prob.to_scalar::<f64>().unwrap();
    assert!((lp - p[a].ln()).abs() < 1e-12, "{lp} vs {}", p[a].ln());
    let grads = ctl.grad(&r, -(reward - baseline)).unwrap();
    for k in 0..2 {
        assert!(
            (grads[7][k] - dl_db[k]).abs() < 1e-12,
            "b[{k}]: {} vs {}",
            grads[7][k],
            dl_db[k]
        );
        assert!(
            (grads[6][k] - dl_dw[k]).abs() < 1e-12,
            "w[{k}]: {} vs {}",
            grads[6][k],
            dl_dw[k]
        );
    }
    // The entropy is -sum p log p, without gradient.
    let ent = -(p[0] * p[0].ln() + p[1] * p[1].ln());
    assert!((r.entropy - ent).abs() < 1e-12);
}
