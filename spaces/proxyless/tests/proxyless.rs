//! ProxylessNAS space: the released GPU model's counts, costs against built tensors,
//! the zero op and shortcut rules.
use candle_core::{DType, Device, Tensor};
use nas_core::{Architecture, SpaceRules};
use nas_model::{DataShape, SearchSpace, TensorDrive};
use nas_space_proxyless::{new_space, ProxylessParams};
use serde_json::json;

const IMAGENET: DataShape = DataShape {
    channels: 3,
    height: 224,
    width: 224,
    num_classes: 1000,
};
const DIGITS: DataShape = DataShape {
    channels: 1,
    height: 8,
    width: 8,
    num_classes: 10,
};

fn space(v: serde_json::Value, shape: DataShape) -> nas_space_proxyless::ProxylessSpace {
    new_space(
        &serde_json::from_value::<ProxylessParams>(v).unwrap(),
        shape,
    )
    .unwrap()
}

fn tiny() -> nas_space_proxyless::ProxylessSpace {
    space(
        json!({"stem_channels": 8, "first_channels": 4, "stage_channels": [8, 12, 16],
        "stage_depths": [2, 2, 1], "stage_strides": [2, 2, 1], "last_channels": 16}),
        DIGITS,
    )
}

/// The released ProxylessNAS-GPU model: 7,119,848 parameters (the count pytorchcv's
/// `proxylessnas.py` asserts for the model it loads the official weights into) and
/// 465,260,160 MACs (an independent Python count; the paper's 465M).
#[test]
fn proxylessnas_gpu_matches_the_reference_counts() {
    let s = space(json!({"variant": "imagenet"}), IMAGENET);
    let path = format!(
        "{}/../../configs/archs/proxyless-gpu.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let arch = s
        .parse_arch(&std::fs::read_to_string(path).unwrap())
        .unwrap();
    let cfg = s.default_network_config();
    let cost = s.network_cost(&arch, &cfg).unwrap();
    assert_eq!(cost.params, 7_119_848.0);
    assert_eq!(cost.flops, 465_260_160.0);
    let net = s
        .build_network(
            &arch,
            &cfg,
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(0, "n"),
        )
        .unwrap();
    assert_eq!(net.param_count(), 7_119_848);
}

#[test]
fn zero_is_offered_exactly_on_blocks_with_a_shortcut() {
    let s = space(json!({"variant": "imagenet"}), IMAGENET);
    let spec = s.spec();
    assert_eq!(spec.decisions.len(), 21);
    let with_zero: Vec<bool> = spec
        .decisions
        .iter()
        .map(|d| d.options.len() == 7)
        .collect();
    // First block of each stage (channel change or stride) has none: 0, 4, 8, 12, 16, 20.
    for (i, z) in with_zero.iter().enumerate() {
        assert_eq!(*z, ![0, 4, 8, 12, 16, 20].contains(&i), "block {i}");
    }
    let d1 = &spec.decisions[1];
    assert_eq!(d1.options[6].name, "zero");
    assert_eq!(
        (d1.options[6].cost.params, d1.options[6].cost.flops),
        (0.0, 0.0)
    );
}

#[test]
fn mbconv_cost_by_hand() {
    // Tiny CIFAR layout: block 0 of stage 1 takes 4 channels at 8x8 (stride 1 in the CIFAR
    // layout), k3_e3: 1x1 4->12 (48 + 24 BN), dw3 12 (108 + 24), 1x1 12->8 (96 + 16).
    let s = tiny();
    let o = &s.spec().decisions[0].options[0];
    assert_eq!(o.name, "k3_e3");
    assert_eq!(o.cost.params, (48 + 24 + 108 + 24 + 96 + 16) as f64);
    assert_eq!(o.cost.flops, ((48 + 108 + 96) * 64) as f64);
}

#[test]
fn built_parameters_equal_the_costs_and_paths_equal_networks() {
    let s = tiny();
    let spec = s.spec();
    let sn = s
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(1, "s"))
        .unwrap();
    let all: f64 = spec.fixed_cost.params
        + spec
            .decisions
            .iter()
            .flat_map(|d| d.options.iter())
            .map(|o| o.cost.params)
            .sum::<f64>();
    assert_eq!(sn.params().count() as f64, all);
    let a = Architecture::new("proxyless", vec![5, 6, 2, 6, 3]);
    let net = s
        .build_network(
            &a,
            &s.default_network_config(),
            &Device::Cpu,
            DType::F64,
            nas_core::component_rng(2, "n"),
        )
        .unwrap();
    assert_eq!(net.param_count() as f64, spec.cost_of(&a).unwrap().params);
    for (name, v) in net.params().named() {
        v.set(sn.params().get(name).unwrap().as_tensor()).unwrap();
    }
    let x = Tensor::randn(0f64, 1.0, (2, 1, 8, 8), &Device::Cpu).unwrap();
    let y1 = sn
        .forward(
            &x,
            &TensorDrive::Path {
                choices: a.choices.clone(),
            },
            None,
            false,
        )
        .unwrap();
    let y2 = net.forward(&x, false).unwrap().0;
    let d = (y1 - y2)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(d < 1e-12, "{d}");
}

#[test]
fn bad_params_name_the_key() {
    let e = nas_space_proxyless::from_params(&json!({"stage_strides": [2, 3, 1, 1, 2, 1]}), DIGITS)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("stage_strides"), "{e}");
    let e = nas_space_proxyless::from_params(&json!({"stage_depths": [1]}), DIGITS)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("stage_depths"), "{e}");
}
