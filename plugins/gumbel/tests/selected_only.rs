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
use nas_core::SpaceRules;
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

/// The five supernet spaces, small: DARTS, NB201, SPOS, ProxylessNAS, FBNet.
fn five_spaces() -> Vec<Box<dyn SearchSpace>> {
    vec![
        Box::new(
            nas_space_darts::DartsSpace::from_params(
                &serde_json::json!({"channels": 4, "layers": 3, "nodes": 2, "multiplier": 2}),
                shape(),
            )
            .unwrap(),
        ),
        Box::new(
            nas_space_nb201::Nb201Space::from_params(
                &serde_json::json!({"channels": 4, "cells": 1}),
                shape(),
            )
            .unwrap(),
        ),
        Box::new(
            nas_space_spos::from_params(
                &serde_json::json!({"variant": "cifar", "stem_channels": 8, "stage_channels": [16, 24, 32, 48], "stage_repeats": [1, 1, 1, 1], "last_channels": 16}),
                shape(),
            )
            .unwrap(),
        ),
        Box::new(
            nas_space_proxyless::from_params(
                &serde_json::json!({"variant": "cifar", "stem_channels": 8, "first_channels": 8, "stage_channels": [8, 16, 16], "stage_depths": [1, 1, 1], "stage_strides": [2, 2, 1], "last_channels": 16}),
                shape(),
            )
            .unwrap(),
        ),
        Box::new(
            nas_space_fbnet::from_params(
                &serde_json::json!({"variant": "cifar", "stem_channels": 8, "stage_channels": [8, 8, 16, 16], "stage_depths": [1, 1, 1, 1], "stage_strides": [1, 2, 2, 1], "last_channels": 16}),
                shape(),
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn selected_only_runs_exactly_the_selected_options_on_every_space() {
    for space in five_spaces() {
        check(space.as_ref());
    }
}

/// Per-example choices for example `e` (option 0 avoided, as above).
fn choices_of(shape: &[usize], e: usize) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(d, &k)| 1 + (d * 3 + e * 5) % (k - 1))
        .collect()
}

/// A per-example selected drive of one-hot weights (value `1.0`) for `n` examples.
fn per_example(
    spec: &nas_core::SpaceSpec,
    n: usize,
    dtype: DType,
) -> (TensorDrive, Vec<Vec<usize>>, Vec<Tensor>) {
    per_example_paths(spec, n, dtype, 3)
}

/// [`per_example`] with `paths` distinct paths (1: the whole batch takes one path, as GDAS
/// samples one architecture per batch).
fn per_example_paths(
    spec: &nas_core::SpaceSpec,
    n: usize,
    dtype: DType,
    paths: usize,
) -> (TensorDrive, Vec<Vec<usize>>, Vec<Tensor>) {
    let shape = spec.shape();
    // Three distinct paths, so that every group has at least two examples (in a group of one,
    // an affine-free batch norm maps every feature map to zero mean: degenerate logits).
    let choices: Vec<Vec<usize>> = (0..n).map(|e| choices_of(&shape, e % paths)).collect();
    let sets: Vec<MixingWeights> = choices
        .iter()
        .map(|c| {
            MixingWeights(
                shape
                    .iter()
                    .zip(c)
                    .map(|(&k, &c)| (0..k).map(|j| if j == c { 1.0 } else { 0.0 }).collect())
                    .collect(),
            )
        })
        .collect();
    let weights: Vec<Tensor> = shape
        .iter()
        .enumerate()
        .map(|(d, &k)| {
            let flat: Vec<f32> = sets.iter().flat_map(|s| s.0[d].clone()).collect();
            Tensor::from_vec(flat, (n, k), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        })
        .collect();
    let drive = TensorDrive::SelectedPerSample {
        weights: weights.clone(),
        groups: nas_model::selection_groups(&sets, n),
    };
    (drive, choices, weights)
}

fn check_per_example(space: &dyn SearchSpace) {
    let spec = space.spec().clone();
    let net = space
        .build_supernet(&Device::Cpu, DType::F32, nas_core::component_rng(1, "t"))
        .unwrap();
    let n = 6;
    // 16x16 inputs: the chain spaces reduce 8x8 to 1x1, where a batch norm over a group of
    // one example has one value per channel (an error, as in PyTorch).
    let x = Tensor::randn(0f32, 1.0, (n, 1, 16, 16), &Device::Cpu).unwrap();
    let (drive, choices, _) = per_example(&spec, n, DType::F32);
    // Training mode: exactly the union of the examples' paths runs.
    let (by_sel, _) = touched(net.as_ref(), || {
        net.forward(&x, &drive, None, true).unwrap()
    });
    let mut union: Vec<usize> = Vec::new();
    for c in &choices {
        let path = TensorDrive::Path { choices: c.clone() };
        let (t, _) = touched(net.as_ref(), || net.forward(&x, &path, None, true).unwrap());
        union.extend(t);
    }
    union.sort_unstable();
    union.dedup();
    assert_eq!(by_sel, union, "space {}", spec.space);
    // Evaluation mode (running statistics, rows independent): row e is example e's path.
    let y = net.forward(&x, &drive, None, false).unwrap();
    for (e, c) in choices.iter().enumerate() {
        let path = TensorDrive::Path { choices: c.clone() };
        let yp = net.forward(&x, &path, None, false).unwrap();
        let diff = (y.get(e).unwrap() - yp.get(e).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff < 1e-5,
            "space {}, example {e}: logits differ by {diff}",
            spec.space
        );
    }
}

#[test]
fn a_per_example_selected_forward_runs_each_option_on_the_examples_that_chose_it() {
    for space in five_spaces() {
        check_per_example(space.as_ref());
    }
}

/// The straight-through gradient of each example's selected weight, `<dL/dout_e, o_k(x_e)>`,
/// against a central finite difference of the loss in the weight's value (training mode, f64;
/// the groups do not change, as the weight stays non-zero).
#[test]
fn per_example_selected_weight_gradients_match_finite_differences() {
    selected_weight_gradients_match_finite_differences(3);
}

/// The whole batch on one path (every option's group is the batch or empty): the same
/// gradients as finite differences.
#[test]
fn whole_batch_selected_weight_gradients_match_finite_differences() {
    selected_weight_gradients_match_finite_differences(1);
}

fn selected_weight_gradients_match_finite_differences(paths: usize) {
    let space = nas_space_darts::DartsSpace::from_params(
        &serde_json::json!({"channels": 4, "layers": 3, "nodes": 2, "multiplier": 2}),
        shape(),
    )
    .unwrap();
    let spec = space.spec().clone();
    let net = space
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(3, "t"))
        .unwrap();
    let n = 6;
    // Fixed inputs: a random draw may put a ReLU or max-pool kink within the finite
    // difference's step.
    let mut rng = nas_core::component_rng(u64::try_from(paths).unwrap(), "selected-fd-inputs");
    let mut draw = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| rand::Rng::random_range(&mut rng, -2.0..2.0))
            .collect()
    };
    let x = Tensor::from_vec(draw(n * 64), (n, 1, 8, 8), &Device::Cpu).unwrap();
    let r = Tensor::from_vec(draw(n * 10), (n, 10), &Device::Cpu).unwrap();
    let (drive, choices, weights) = per_example_paths(&spec, n, DType::F64, paths);
    let TensorDrive::SelectedPerSample { groups, .. } = &drive else {
        unreachable!()
    };
    if paths == 1 {
        assert!(groups
            .iter()
            .flatten()
            .all(|g| g.is_empty() || g.len() == n));
    }
    let vars: Vec<candle_core::Var> = weights
        .iter()
        .map(|w| candle_core::Var::from_tensor(w).unwrap())
        .collect();
    let loss_of = |ws: Vec<Tensor>| -> Tensor {
        let d = TensorDrive::SelectedPerSample {
            weights: ws,
            groups: groups.clone(),
        };
        let y = net.forward(&x, &d, None, true).unwrap();
        (y * &r).unwrap().sum_all().unwrap()
    };
    let loss = loss_of(vars.iter().map(|v| v.as_tensor().clone()).collect());
    let grads = loss.backward().unwrap();
    let h = 1e-5;
    let mut non_zero = 0;
    let pairs: Vec<(usize, usize)> = (0..spec.shape().len())
        .flat_map(|d| (0..n).map(move |e| (d, e)))
        .collect();
    for &(d, e) in &pairs {
        let k = choices[e][d];
        let g = grads.get(vars[d].as_tensor()).unwrap();
        let analytic = g
            .get(e)
            .unwrap()
            .get(k)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let shifted = |delta: f64| -> f64 {
            let ws: Vec<Tensor> = weights
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    if j != d {
                        return w.clone();
                    }
                    let mut v = w.to_vec2::<f64>().unwrap();
                    v[e][k] += delta;
                    Tensor::new(v, &Device::Cpu).unwrap()
                })
                .collect();
            loss_of(ws).to_scalar::<f64>().unwrap()
        };
        let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "decision {d}, example {e}: analytic {analytic}, finite difference {numeric}"
        );
        // Zero is right where a batch norm over a one-example group normalises the scale
        // away; most entries are not zero.
        non_zero += usize::from(analytic.abs() > 1e-9);
        // Options not selected by this example get no gradient.
        let other = (k % (spec.shape()[d] - 1)) + 1;
        if other != k {
            let z = g
                .get(e)
                .unwrap()
                .get(other)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(z, 0.0);
        }
    }
    assert!(
        2 * non_zero > pairs.len(),
        "only {non_zero} of {} gradients are non-zero",
        pairs.len()
    );
}
