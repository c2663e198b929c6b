//! The tensor side of the NB201 space: standalone networks against the benchmark table's
//! exact parameter counts, the supernet's drives against each other, and a network whose
//! output is known by hand.
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use nas_core::{Architecture, MixingWeights, SpaceRules};
use nas_model::{DataShape, NetworkConfig, SearchSpace, TensorDrive};
use nas_space_nb201::{nb201_cost, parse_arch_str, Nb201Space, Nb201SpaceParams, OPS};

const CIFAR: DataShape = DataShape {
    channels: 3,
    height: 32,
    width: 32,
    num_classes: 10,
};

/// `arch_str -> params_cifar10_M` read from the CSV as plain text.
fn table_params() -> HashMap<String, f64> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/nb201/nb201_merged.csv");
    let text = std::fs::read_to_string(p).expect("the NB201 table is in ../shared");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (a, m) = (
        head.iter().position(|h| *h == "arch_str").unwrap(),
        head.iter().position(|h| *h == "params_cifar10_M").unwrap(),
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[a].to_string(), f[m].parse().unwrap())
        })
        .collect()
}

fn rng() -> rand_chacha::ChaCha8Rng {
    nas_core::component_rng(0, "test")
}

#[test]
fn standalone_networks_have_the_tables_exact_parameter_counts() {
    let table = table_params();
    let space = Nb201Space::new(Nb201SpaceParams::default(), CIFAR).unwrap();
    let cfg = space.default_network_config();
    assert_eq!((cfg.channels, cfg.layers), (16, 5));
    // The smallest and largest cells, cells with dead edges, and a mix.
    let cells = [
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    ];
    for s in cells {
        let arch = parse_arch_str(s).unwrap();
        let net = space
            .build_network(&arch, &cfg, &Device::Cpu, DType::F32, rng())
            .unwrap();
        let want = (table[s] * 1e6).round() as usize;
        assert_eq!(net.param_count(), want, "{s}");
        let cost = space.network_cost(&arch, &cfg).unwrap();
        assert_eq!(cost.params, want as f64, "{s}");
        // FLOPs agree with the plain spec's per-option costs (the benchmark's counter).
        assert_eq!(cost.flops, nb201_cost(&arch).unwrap().flops, "{s}");
        assert_eq!(net.flops(), cost.flops);
    }
}

fn small() -> Nb201Space {
    let shape = DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 3,
    };
    Nb201Space::new(
        Nb201SpaceParams {
            channels: 4,
            cells: 1,
            ..Default::default()
        },
        shape,
    )
    .unwrap()
}

fn input() -> Tensor {
    let v: Vec<f32> = (0..2 * 64)
        .map(|i| ((i * 37) % 17) as f32 / 17.0 - 0.5)
        .collect();
    Tensor::from_vec(v, (2, 1, 8, 8), &Device::Cpu).unwrap()
}

#[test]
fn an_all_none_network_outputs_its_classifier_bias() {
    // Every cell outputs zeros; the residual blocks map zeros to zeros (ReLU, convolution
    // and batch norm of zeros, plus a pooled shortcut of zeros); the final BN and ReLU keep
    // zeros, so the logits are the classifier's bias for every example.
    let space = small();
    let arch = Architecture::new("nb201", vec![0; 6]);
    let cfg = NetworkConfig {
        channels: 4,
        layers: 1,
        auxiliary: false,
    };
    let net = space
        .build_network(&arch, &cfg, &Device::Cpu, DType::F32, rng())
        .unwrap();
    let (y, aux) = net.forward(&input(), true).unwrap();
    assert!(aux.is_none());
    let bias = net
        .params()
        .get("classifier.bias")
        .unwrap()
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    let y = y.to_vec2::<f32>().unwrap();
    assert_eq!(y, vec![bias.clone(), bias]);
}

#[test]
fn supernet_one_hot_mixing_equals_the_path_and_weights_get_gradients() {
    let space = small();
    let net = space
        .build_supernet(&Device::Cpu, DType::F32, rng())
        .unwrap();
    let choices = vec![3, 1, 4, 2, 0, 3];
    let x = input();
    let path = net
        .forward(
            &x,
            &TensorDrive::Path {
                choices: choices.clone(),
            },
            None,
            false,
        )
        .unwrap();
    let one_hot: Vec<Vec<f32>> = choices
        .iter()
        .map(|&c| {
            (0..OPS.len())
                .map(|k| if k == c { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let vars: Vec<Var> = one_hot
        .iter()
        .map(|w| Var::from_tensor(&Tensor::new(w.as_slice(), &Device::Cpu).unwrap()).unwrap())
        .collect();
    let drive = TensorDrive::Mixed {
        weights: vars.iter().map(|v| v.as_tensor().clone()).collect(),
        skip_zero: false,
        values: Some(MixingWeights(one_hot.clone())),
    };
    let mixed = net.forward(&x, &drive, None, false).unwrap();
    let diff = (path - &mixed)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "path and one-hot mixing differ by {diff}");
    // Gradients reach every non-`none` option's weight and are exactly zero for `none`.
    let grads = mixed.sum_all().unwrap().backward().unwrap();
    for v in &vars {
        let g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g[0], 0.0, "none");
        assert!(g[1..].iter().any(|x| *x != 0.0), "{g:?}");
    }
    // Every weight of the supernet is on some path: 5 ops x 6 edges per cell, conv options
    // without affine BN parameters.
    assert_eq!(space.spec().decisions.len(), 6);
    assert!(net
        .params()
        .named()
        .iter()
        .any(|(n, _)| n == "cells.0.edges.3<-2.3.op.1.weight"));
    assert!(!net
        .params()
        .named()
        .iter()
        .any(|(n, _)| n.contains("edges") && n.ends_with("op.2.weight")));
}
