//! The ENAS micro space: decisions, notation, the published cell's parameter count, and the
//! supernet and standalone network on tiny inputs.
use candle_core::{DType, Device, Tensor};
use nas_core::{Architecture, SpaceRules};
use nas_model::{DataShape, NetworkConfig, SearchSpace, TensorDrive};
use nas_space_enas::{parse_arc, EnasMicroSpace, EnasSpaceParams, SPACE};

/// The published ENAS micro cell (melodyguan/enas `scripts/cifar10_micro_final.sh`).
const PUBLISHED: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 \
                         1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";

fn cifar() -> DataShape {
    DataShape {
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
    }
}

fn tiny() -> DataShape {
    DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 10,
    }
}

fn space(shape: DataShape, channels: usize, layers: usize) -> EnasMicroSpace {
    EnasMicroSpace::new(
        EnasSpaceParams {
            channels,
            layers,
            ..EnasSpaceParams::default()
        },
        shape,
    )
    .unwrap()
}

#[test]
fn every_node_has_exactly_two_inputs_and_two_ops() {
    let s = space(cifar(), 20, 6);
    let spec = s.spec();
    assert_eq!(spec.decisions.len(), 40);
    for cell in ["normal", "reduce"] {
        for node in 0..5 {
            let of_node: Vec<_> = spec
                .decisions
                .iter()
                .filter(|d| d.group == cell && d.node == Some(node))
                .collect();
            let inputs: Vec<_> = of_node.iter().filter(|d| d.key.contains("input")).collect();
            let ops: Vec<_> = of_node.iter().filter(|d| d.key.contains(".op_")).collect();
            assert_eq!(inputs.len(), 2, "{cell} node {node}");
            assert_eq!(ops.len(), 2, "{cell} node {node}");
            for d in inputs {
                // Any earlier node, the two cell inputs included.
                assert_eq!(d.options.len(), node + 2, "{}", d.key);
            }
            for d in ops {
                let names: Vec<_> = d.options.iter().map(|o| o.name.as_str()).collect();
                assert_eq!(
                    names,
                    [
                        "sep_conv_3x3",
                        "sep_conv_5x5",
                        "avg_pool_3x3",
                        "max_pool_3x3",
                        "identity"
                    ]
                );
            }
        }
    }
}

#[test]
fn notation_round_trips_and_bad_input_is_an_error() {
    let s = space(cifar(), 20, 6);
    let a = s.parse_arch(PUBLISHED).unwrap();
    assert_eq!(a.space, SPACE);
    assert_eq!(a.choices[..4], [0, 2, 0, 0]);
    let text = s.format_arch(&a);
    assert!(text.starts_with("normal: 0 2 0 0"), "{text}");
    assert_eq!(s.parse_arch(&text).unwrap(), a);
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(s.parse_arch(&json).unwrap(), a);
    // The published file.
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs/archs/enas-micro.json"),
    )
    .unwrap();
    assert_eq!(s.parse_arch(&file).unwrap(), a);
    // Node 0 can only pick input 0 or 1.
    let mut bad = parse_arc(PUBLISHED).unwrap();
    bad[0] = 2;
    let t = bad
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(s.parse_arch(&t).is_err());
    assert!(s.parse_arch("0 1 2").is_err());
    assert!(s.parse_arch("a b").is_err());
}

/// The parameters the reference (`micro_child.py` with `fixed_arc`, counted as its
/// `count_model_params` over the trainable variables without `aux_head`) creates, walked
/// here from the reference's variable creation: stem `3x3x3x3C` + BN; per layer the
/// calibration of the first input (factorized reduction when it is larger, else a 1x1
/// conv + BN when its channels differ), of the second (1x1 conv + BN when its channels
/// differ), `layer_base` (1x1 conv + BN, always); per op a 2-stack separable conv
/// (`k*k*c + c*c + 2c` per stack), a factorized reduction for identity at stride 2, nothing
/// for pools; a factorized reduction per unused cell input of a reduction cell; the
/// bias-free classifier over the concatenated unused nodes. Every BN has scale and offset.
fn reference_count(arc: &[usize], c0: usize, layers: usize, in_c: usize, h0: usize) -> usize {
    let bn = |c: usize| 2 * c;
    let rcb = |ci: usize, co: usize| ci * co + bn(co);
    let fr = |ci: usize, co: usize| 2 * ci * (co / 2) + bn(co);
    let sep = |k: usize, c: usize| 2 * (k * k * c + c * c + bn(c));
    let mut total = 9 * in_c * 3 * c0 + bn(3 * c0);
    let mut prev = [(3 * c0, h0), (3 * c0, h0)];
    let mut c = c0;
    let d = layers / 3;
    for l in 0..layers + 2 {
        let reduce = l == d || l == 2 * d + 1;
        if reduce {
            c *= 2;
        }
        let stride = if reduce { 2 } else { 1 };
        let a = if reduce { &arc[20..] } else { &arc[..20] };
        let h = prev[1].1;
        if prev[0].1 != h {
            total += fr(prev[0].0, c);
        } else if prev[0].0 != c {
            total += rcb(prev[0].0, c);
        }
        if prev[1].0 != c {
            total += rcb(prev[1].0, c);
        }
        total += rcb(c, c);
        let mut used = [false; 7];
        for node in 0..5 {
            for br in 0..2 {
                let (j, op) = (a[4 * node + 2 * br], a[4 * node + 2 * br + 1]);
                used[j] = true;
                let s = if j < 2 { stride } else { 1 };
                total += match op {
                    0 => sep(3, c),
                    1 => sep(5, c),
                    4 if s == 2 => fr(c, c),
                    _ => 0,
                };
            }
        }
        let unused: Vec<usize> = (0..7).filter(|&j| !used[j]).collect();
        for &j in &unused {
            if j < 2 && stride == 2 {
                total += fr(c, c);
            }
        }
        prev = [prev[1], (unused.len() * c, h.div_ceil(stride))];
    }
    total + prev[1].0 * 10
}

#[test]
fn published_cell_has_the_reference_parameter_count() {
    let s = space(cifar(), 20, 6);
    let a = s.parse_arch(PUBLISHED).unwrap();
    // The final network of `cifar10_micro_final.sh`: 36 channels, 15 layers.
    let cfg = NetworkConfig {
        channels: 36,
        layers: 15,
        auxiliary: false,
    };
    let expected = reference_count(&a.choices, 36, 15, 3, 32);
    // The walk above gives 3,894,372; the paper (Table 1) reports 4.6M for ENAS + micro
    // search space (see docs/enas.md for the difference).
    assert_eq!(expected, 3_894_372);
    let cost = s.network_cost(&a, &cfg).unwrap();
    assert_eq!(cost.params as usize, expected);
    // With the auxiliary head the count excludes it, as the reference's does.
    let net = s
        .build_network(
            &a,
            &NetworkConfig {
                auxiliary: true,
                ..cfg
            },
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(0, "t"),
        )
        .unwrap();
    assert_eq!(net.param_count(), expected);
    // aux: 1x1 conv to 128 + BN, 2x2 conv to 768 + BN (8x8 maps pooled 5/3 to 2x2), fc.
    // After layer 12 (a normal layer at 144 channels): the published normal cell leaves
    // nodes 2-6 unused, so 5 x 144 channels.
    let aux = 5 * 144 * 128 + 256 + 2 * 2 * 128 * 768 + 2 * 768 + 768 * 10;
    assert_eq!(net.params().count(), expected + aux);
}

#[test]
fn supernet_runs_paths_and_only_the_chosen_candidates_get_gradients() {
    let s = space(tiny(), 4, 3);
    let net = s
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(1, "t"))
        .unwrap();
    let a = s.parse_arch(PUBLISHED).unwrap();
    let x = Tensor::randn(0f64, 1.0, (3, 1, 8, 8), &Device::Cpu).unwrap();
    let drive = TensorDrive::Path {
        choices: a.choices.clone(),
    };
    let y = net.forward(&x, &drive, None, true).unwrap();
    assert_eq!(y.dims(), [3, 10]);
    let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let has = |name: &str| {
        let v = net.params().get(name).unwrap_or_else(|| panic!("{name}"));
        g.get(v.as_tensor()).is_some_and(|t| {
            t.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                > 0.0
        })
    };
    // Normal node 0: input_a 0 with avg pool (no weights), input_b 0 with sep 3x3.
    assert!(has("layer0.n0.b1.in0.sep3.s0.w_depth"));
    assert!(!has("layer0.n0.b1.in1.sep3.s0.w_depth"));
    assert!(!has("layer0.n0.b1.in0.sep5.s0.w_depth"));
    assert!(!has("layer0.n0.b0.in0.sep3.s0.w_depth"));
    // A mixed drive is refused with a message.
    let mixed = TensorDrive::Mixed {
        weights: vec![],
        skip_zero: false,
        values: None,
    };
    assert!(net.forward(&x, &mixed, None, true).is_err());
}

#[test]
fn standalone_network_runs_on_small_inputs() {
    let s = space(tiny(), 4, 3);
    let a = Architecture::new(SPACE, parse_arc(PUBLISHED).unwrap());
    let cfg = NetworkConfig {
        channels: 4,
        layers: 3,
        auxiliary: false,
    };
    let net = s
        .build_network(
            &a,
            &cfg,
            &Device::Cpu,
            DType::F64,
            nas_core::component_rng(2, "t"),
        )
        .unwrap();
    net.set_drop_path(0.2);
    let x = Tensor::randn(0f64, 1.0, (2, 1, 8, 8), &Device::Cpu).unwrap();
    let (y, aux) = net.forward(&x, true).unwrap();
    assert_eq!(y.dims(), [2, 10]);
    assert!(aux.is_none());
    // An auxiliary head on 2x2 maps is an error that says what to change.
    let e = s
        .build_network(
            &a,
            &NetworkConfig {
                auxiliary: true,
                ..cfg
            },
            &Device::Cpu,
            DType::F64,
            nas_core::component_rng(2, "t"),
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("auxiliary"), "{e}");
}
