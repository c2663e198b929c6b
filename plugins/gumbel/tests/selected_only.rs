//! A hard-sampling (`SelectedOnly`) forward computes only the selected option of each
//! decision, on all five supernets (DARTS, NB201, SPOS, ProxylessNAS, FBNet).
//!
//! The count: a batch norm's running statistics change exactly when its operation runs in
//! training mode. The set of batch norms a one-hot `SelectedOnly` forward touches must equal
//! the set a discrete `Path` forward over the same choices touches (the path drive runs only
//! the chosen operations by construction), and must be smaller than the set a full mixture
//! touches (so the check can fail). The logits agree too: the weight of the selected option
//! is exactly 1.0, as GDAS's `one_h - probs.detach() + probs` is in the forward pass.
use candle_core::{DType, Device, Tensor};
use nas_core::MixingWeights;
use nas_model::{DataShape, SearchSpace, Supernet, TensorDrive};

fn shape() -> DataShape {
    DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 10,
    }
}

/// Indices of the batch norms whose running statistics `f` changes (restored afterwards).
fn touched(net: &dyn Supernet, f: impl FnOnce() -> Tensor) -> (Vec<usize>, Tensor) {
    let before: Vec<_> = net
        .batch_norms()
        .iter()
        .map(|b| b.running_stats())
        .collect();
    let y = f();
    let mut out = vec![];
    for (i, (b, s)) in net.batch_norms().iter().zip(&before).enumerate() {
        if b.running_stats() != *s {
            out.push(i);
        }
        b.set_running_stats(&s.0, &s.1);
    }
    (out, y)
}

fn check(space: &dyn SearchSpace) {
    let spec = space.spec().clone();
    let net = space
        .build_supernet(&Device::Cpu, DType::F32, nas_core::component_rng(1, "t"))
        .unwrap();
    let x = Tensor::randn(0f32, 1.0, (4, 1, 8, 8), &Device::Cpu).unwrap();
    // Choices that vary by decision; on DARTS-like spaces avoid option 0 (`none`) so
    // that every decision computes something.
    let choices: Vec<usize> = spec
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &k)| 1 + (d * 3) % (k - 1))
        .collect();
    let one_hot = MixingWeights(
        spec.shape()
            .iter()
            .zip(&choices)
            .map(|(&k, &c)| (0..k).map(|j| if j == c { 1.0 } else { 0.0 }).collect())
            .collect(),
    );
    let tensors = |w: &MixingWeights| -> Vec<Tensor> {
        w.0.iter()
            .map(|v| Tensor::new(v.as_slice(), &Device::Cpu).unwrap())
            .collect()
    };
    let path = TensorDrive::Path {
        choices: choices.clone(),
    };
    let selected = TensorDrive::Mixed {
        weights: tensors(&one_hot),
        skip_zero: true,
        values: Some(one_hot.clone()),
    };
    let uniform = MixingWeights::uniform(&spec);
    let mixed = TensorDrive::Mixed {
        weights: tensors(&uniform),
        skip_zero: false,
        values: Some(uniform),
    };
    let run = |d: &TensorDrive| touched(net.as_ref(), || net.forward(&x, d, None, true).unwrap());
    let (by_path, y_path) = run(&path);
    let (by_selected, y_sel) = run(&selected);
    let (by_mixture, _) = run(&mixed);
    assert_eq!(by_selected, by_path, "space {}", spec.space);
    assert!(
        by_mixture.len() > by_selected.len(),
        "space {}: the mixture touches {} batch norms, the selected forward {}",
        spec.space,
        by_mixture.len(),
        by_selected.len()
    );
    let diff = (y_path - y_sel)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "space {}: logits differ by {diff}", spec.space);
}

#[test]
fn selected_only_runs_exactly_the_selected_options_on_every_space() {
    let darts = nas_space_darts::DartsSpace::from_params(
        &serde_json::json!({"channels": 4, "layers": 3, "nodes": 2, "multiplier": 2}),
        shape(),
    )
    .unwrap();
    check(&darts);
    let nb201 = nas_space_nb201::Nb201Space::from_params(
        &serde_json::json!({"channels": 4, "cells": 1}),
        shape(),
    )
    .unwrap();
    check(&nb201);
    let spos = nas_space_spos::from_params(
        &serde_json::json!({"variant": "cifar", "stem_channels": 8, "stage_channels": [16, 24, 32, 48], "stage_repeats": [1, 1, 1, 1], "last_channels": 16}),
        shape(),
    )
    .unwrap();
    check(&spos);
    let proxyless = nas_space_proxyless::from_params(
        &serde_json::json!({"variant": "cifar", "stem_channels": 8, "first_channels": 8, "stage_channels": [8, 16, 16], "stage_depths": [1, 1, 1], "stage_strides": [2, 2, 1], "last_channels": 16}),
        shape(),
    )
    .unwrap();
    check(&proxyless);
    let fbnet = nas_space_fbnet::from_params(
        &serde_json::json!({"variant": "cifar", "stem_channels": 8, "stage_channels": [8, 8, 16, 16], "stage_depths": [1, 1, 1, 1], "stage_strides": [1, 2, 2, 1], "last_channels": 16}),
        shape(),
    )
    .unwrap();
    check(&fbnet);
}
