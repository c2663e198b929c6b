//! The binary-gate drive (`DriveKind::Gated`, ProxylessNAS): only the active options are
//! computed, every active gate gets its gradient (zero-valued gates included), inactive
//! ones get zero; on every supernet (DARTS cells, NAS-Bench-201 cells, the chain spaces).
use crate::common;

use candle_core::{DType, Device, Tensor};
use nas_core::{Drive, GradOrder, MixingWeights, SpaceRules, SupernetTrainer};
use nas_model::{DataShape, SearchSpace, Supernet, TensorDrive};

/// Which batch norms update their running statistics in one training-mode forward pass
/// under `drive`: a batch norm does exactly when the operation that holds it runs, so
/// this tells which options were computed without timing anything.
fn computed_bns(net: &dyn Supernet, x: &Tensor, drive: &TensorDrive) -> Vec<bool> {
    for b in net.batch_norms() {
        b.reset_running_stats();
    }
    net.forward(x, drive, None, true).unwrap();
    net.batch_norms()
        .iter()
        .map(|b| {
            let (m, v) = b.running_stats();
            m.iter().any(|&x| x != 0.0) || v.iter().any(|&x| x != 1.0)
        })
        .collect()
}

fn vars(w: &MixingWeights) -> Vec<Tensor> {
    w.0.iter()
        .map(|r| {
            let v: Vec<f64> = r.iter().map(|&x| x as f64).collect();
            Tensor::from_vec(v, r.len(), &Device::Cpu).unwrap()
        })
        .collect()
}

/// Two options per decision (one gated on, one off), as ProxylessNAS samples them.
fn two_active(shape: &[usize], salt: usize) -> (MixingWeights, Vec<Vec<usize>>) {
    let mut gates = Vec::new();
    let mut active = Vec::new();
    for (d, &k) in shape.iter().enumerate() {
        let a = (d + salt) % k;
        let b = (d * 3 + salt + 1) % k;
        let b = if b == a { (a + 1) % k } else { b };
        let mut g = vec![0.0f32; k];
        g[a] = 1.0;
        gates.push(g);
        let mut s = vec![a, b];
        s.sort_unstable();
        s.dedup();
        active.push(s);
    }
    (MixingWeights(gates), active)
}

/// Checks that the gated forward computes the union of the two paths through the active
/// options and nothing else, and strictly less than the all-options mixed forward.
fn check_only_active_run(space: &dyn SearchSpace, shape: DataShape) {
    let net = space
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(5, "init"))
        .unwrap();
    let x = Tensor::randn(
        0f64,
        1.0,
        (3, shape.channels, shape.height, shape.width),
        &Device::Cpu,
    )
    .unwrap();
    let spec = space.spec();
    let (gates, active) = two_active(&spec.shape(), 1);
    let gated = TensorDrive::Gated {
        gates: vars(&gates),
        active: active.clone(),
    };
    let got = computed_bns(net.as_ref(), &x, &gated);
    let path = |i: usize| TensorDrive::Path {
        choices: active.iter().map(|s| s[i.min(s.len() - 1)]).collect(),
    };
    let p0 = computed_bns(net.as_ref(), &x, &path(0));
    let p1 = computed_bns(net.as_ref(), &x, &path(1));
    let union: Vec<bool> = p0.iter().zip(&p1).map(|(a, b)| *a || *b).collect();
    let all = computed_bns(
        net.as_ref(),
        &x,
        &TensorDrive::Mixed {
            weights: vars(&MixingWeights::uniform(spec)),
            skip_zero: false,
            values: None,
        },
    );
    assert_eq!(
        got, union,
        "{}: the gated pass ran other options",
        spec.space
    );
    let (n_got, n_all) = (
        got.iter().filter(|&&b| b).count(),
        all.iter().filter(|&&b| b).count(),
    );
    eprintln!("{}: {n_got} of {n_all} batch norms ran", spec.space);
    assert!(n_got < n_all, "{}: {n_got} vs {n_all}", spec.space);
}

#[test]
fn a_gated_forward_computes_only_the_active_options_on_every_supernet() {
    let small = DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
    };
    let (darts, _) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 2);
    check_only_active_run(&darts, small);
    let nb201 = nas_space_nb201::Nb201Space::from_params(
        &serde_json::json!({"channels": 4, "cells": 1}),
        small,
    )
    .unwrap();
    check_only_active_run(&nb201, small);
    let proxyless = nas_space_proxyless::from_params(
        &serde_json::json!({"variant": "cifar", "stem_channels": 4, "first_channels": 4,
            "stage_channels": [4, 8], "stage_depths": [2, 1], "stage_strides": [2, 1],
            "last_channels": 8}),
        small,
    )
    .unwrap();
    check_only_active_run(&proxyless, small);
}

#[test]
#[allow(clippy::needless_range_loop)] // d and k index four parallel tables
fn gate_gradients_match_the_mixed_drive_on_active_options_and_are_zero_elsewhere() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 4);
    t.begin_epoch(0).unwrap();
    let spec = space.spec().clone();
    let (gates, active) = two_active(&spec.shape(), 2);
    let g = t
        .arch_gradient(
            &Drive::gated(gates.clone(), active.clone()),
            GradOrder::First,
        )
        .unwrap();
    // The same gates as mixing weights (zeros elsewhere): the same loss, and the mixed
    // drive computes every option, so its gradient is known on all of them.
    let m = t
        .arch_gradient(&Drive::mixed(gates.clone()), GradOrder::First)
        .unwrap();
    assert!((g.loss - m.loss).abs() < 1e-12, "{} vs {}", g.loss, m.loss);
    let mut zero_gate_checked = 0;
    for d in 0..gates.0.len() {
        for k in 0..gates.0[d].len() {
            let (a, b) = (g.grads[0].0[d][k] as f64, m.grads[0].0[d][k] as f64);
            if active[d].contains(&k) {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "d={d} k={k}: {a} vs {b}"
                );
                let none = spec.decisions[d].options[k].name == "none";
                if gates.0[d][k] == 0.0 && !none {
                    assert!(a != 0.0, "d={d} k={k}: a zero gate got no gradient");
                    zero_gate_checked += 1;
                }
            } else {
                assert_eq!(a, 0.0, "d={d} k={k}: inactive option got a gradient");
            }
        }
    }
    assert!(zero_gate_checked > 3);
}

#[test]
fn a_zero_gate_gradient_matches_central_differences() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 4);
    t.begin_epoch(0).unwrap();
    let spec = space.spec().clone();
    let (gates, active) = two_active(&spec.shape(), 3);
    let g = t
        .arch_gradient(
            &Drive::gated(gates.clone(), active.clone()),
            GradOrder::First,
        )
        .unwrap();
    let mut checked = 0;
    for d in 0..gates.0.len() {
        for &k in &active[d] {
            if gates.0[d][k] != 0.0 || spec.decisions[d].options[k].name == "none" {
                continue;
            }
            let h = 1e-4f32;
            let at = |v: f32, t: &mut nas_trainer::WeightSharingTrainer| {
                let mut w = gates.clone();
                w.0[d][k] = v;
                t.arch_gradient(&Drive::gated(w, active.clone()), GradOrder::First)
                    .unwrap()
                    .loss
            };
            let fd = (at(h, &mut t) - at(-h, &mut t)) / (2.0 * h as f64);
            let a = g.grads[0].0[d][k] as f64;
            assert!(
                (fd - a).abs() < 1e-3 * (1.0 + a.abs()),
                "d={d} k={k}: fd {fd} vs {a}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked}");
}

#[test]
fn bad_active_sets_are_refused_with_the_decision_named() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 2);
    t.begin_epoch(0).unwrap();
    let spec = space.spec().clone();
    let (gates, mut active) = two_active(&spec.shape(), 0);
    active[1] = vec![3, 1];
    let e = t
        .arch_gradient(
            &Drive::gated(gates.clone(), active.clone()),
            GradOrder::First,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("decision 1") && e.contains(&spec.decisions[1].key),
        "{e}"
    );
    active[1] = vec![];
    assert!(t
        .train_weights(&Drive::gated(gates.clone(), active.clone()))
        .is_err());
    active.pop();
    let e = t
        .train_weights(&Drive::gated(gates, active))
        .unwrap_err()
        .to_string();
    assert!(e.contains("active sets"), "{e}");
}
