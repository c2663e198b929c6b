//! SPOS space: published counts, costs against the built tensors, path forward against
//! the standalone network, parameter checks.
use candle_core::{DType, Device, Tensor};
use nas_core::{Architecture, SpaceRules};
use nas_model::{DataShape, SearchSpace, TensorDrive};
use nas_space_spos::{new_space, SposParams};
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

fn arch_file(name: &str) -> serde_json::Value {
    let path = format!("{}/../../configs/archs/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn imagenet(scales: Vec<f64>) -> nas_space_spos::SposSpace {
    let p: SposParams = serde_json::from_value(json!({
        "variant": "imagenet", "mid_channel_scales": scales
    }))
    .unwrap();
    new_space(&p, IMAGENET).unwrap()
}

fn tiny(variant: &str) -> nas_space_spos::SposSpace {
    tiny_bn(variant, true)
}

/// The tiny space with affine (`true`) or, as the reference supernet, affine-free batch
/// norms in the supernet.
fn tiny_bn(variant: &str, supernet_bn_affine: bool) -> nas_space_spos::SposSpace {
    let p: SposParams = serde_json::from_value(json!({
        "variant": variant, "stem_channels": 4, "stage_channels": [8, 12, 16, 24],
        "stage_repeats": [2, 1, 2, 1], "last_channels": 16,
        "supernet_bn_affine": supernet_bn_affine
    }))
    .unwrap();
    new_space(&p, DIGITS).unwrap()
}

/// The reference supernet (megvii-model/SinglePathOneShot `Supernet/blocks.py`,
/// `network.py`) builds every batch norm with `affine=False`: by default ours has no
/// batch-norm parameter at all, exactly the costed parameters minus two per BN channel
/// (weight and bias), while standalone networks (what the published counts count) keep
/// theirs.
#[test]
fn the_default_spos_supernet_has_affine_free_batch_norms() {
    assert!(!SposParams::default().supernet_bn_affine);
    let free = tiny_bn("cifar", false);
    let affine = tiny_bn("cifar", true);
    let build = |s: &nas_space_spos::SposSpace| {
        s.build_supernet(&Device::Cpu, DType::F32, nas_core::component_rng(1, "s"))
            .unwrap()
    };
    let (f, a) = (build(&free), build(&affine));
    assert!(f.params().named().iter().all(|(n, _)| !n.contains(".bn.")));
    let bn_channels: usize = f.batch_norms().iter().map(|b| b.channels()).sum();
    assert_eq!(a.batch_norms().len(), f.batch_norms().len());
    assert_eq!(f.params().count() + 2 * bn_channels, a.params().count());
    // Standalone networks are the same either way.
    let arch = Architecture::new("spos", vec![1, 2, 3, 0, 2, 1]);
    let cfg = free.default_network_config();
    let net = |s: &nas_space_spos::SposSpace| {
        s.build_network(
            &arch,
            &cfg,
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(1, "n"),
        )
        .unwrap()
        .param_count()
    };
    assert_eq!(net(&free), net(&affine));
    assert_eq!(
        net(&free) as f64,
        free.spec().cost_of(&arch).unwrap().params
    );
}

/// The released OneShot model (block + channel search). Expected counts computed
/// independently (a plain Python transcription of the reference `network.py` and the
/// SPOS `flops.py` convention: conv and linear multiply-accumulates), which round to the
/// reference README's 3.4M parameters and 328M FLOPs.
#[test]
fn released_oneshot_model_matches_the_reference_counts() {
    let f = arch_file("spos-oneshot.json");
    let scales: Vec<f64> = serde_json::from_value(f["mid_channel_scales"].clone()).unwrap();
    let space = imagenet(scales);
    let arch = space.parse_arch(&f.to_string()).unwrap();
    assert_eq!(
        arch.choices,
        vec![0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2]
    );
    let cfg = space.default_network_config();
    let cost = space.network_cost(&arch, &cfg).unwrap();
    assert_eq!(cost.params, 3_432_579.0);
    assert_eq!(cost.flops, 327_857_920.0);
    assert_eq!((cost.params / 1e5).round() / 10.0, 3.4);
    assert_eq!((cost.flops / 1e6).round(), 328.0);
    // The built network holds exactly that many parameters.
    let net = space
        .build_network(
            &arch,
            &cfg,
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(0, "t"),
        )
        .unwrap();
    assert_eq!(net.param_count(), 3_432_579);
    assert_eq!(net.flops(), 327_857_920.0);
}

/// The same block choices at channel scale 1.0: 318.7M MACs, the paper's 319M of its
/// block-search model (independent Python count as above).
#[test]
fn block_search_model_has_the_papers_flops() {
    let space = imagenet(vec![]);
    let arch = space
        .parse_arch(&arch_file("spos-block.json").to_string())
        .unwrap();
    let cost = space
        .network_cost(&arch, &space.default_network_config())
        .unwrap();
    assert_eq!(cost.params, 3_345_088.0);
    assert_eq!(cost.flops, 318_729_024.0);
    assert_eq!((cost.flops / 1e6).round(), 319.0);
    // All-3x3 and all-Xception networks, as the reference `flops.py` main() prints them
    // (independent Python count).
    let all = |k: usize| {
        space
            .network_cost(
                &Architecture::new("spos", vec![k; 20]),
                &space.default_network_config(),
            )
            .unwrap()
    };
    assert_eq!(all(0).flops, 295_842_496.0);
    assert_eq!(all(3).flops, 358_825_920.0);
    assert_eq!(all(3).params, 3_870_816.0);
}

#[test]
fn one_option_cost_by_hand() {
    // First block of the tiny CIFAR space: 4 -> 8 channels at 8x8, stride 1, mid = 4,
    // projection branch (dw3 4 + BN, 1x1 4->4 + BN) and main (1x1 4->4 + BN, dw3 4 + BN,
    // 1x1 4->4 + BN): params 36+8 + 16+8 + 16+8 + 36+8 + 16+8 = 160; MACs x 64 pixels.
    let space = tiny("cifar");
    let o = &space.spec().decisions[0].options[0];
    assert_eq!(o.name, "shufflenet_3x3");
    assert_eq!(o.cost.params, 160.0);
    assert_eq!(o.cost.flops, ((36 + 16 + 16 + 36 + 16) * 64) as f64);
    // The same block in the ImageNet layout: stem and block strided, 8 -> 4 -> 2 pixels.
    let im = tiny("imagenet");
    assert_eq!(
        im.spec().decisions[0].options[0].cost.flops,
        ((36 + 16 + 36 + 16) * 4 + 16 * 16) as f64
    );
}

#[test]
fn supernet_and_networks_hold_exactly_the_costed_parameters() {
    for variant in ["cifar", "imagenet"] {
        let space = tiny(variant);
        let spec = space.spec();
        let sn = space
            .build_supernet(&Device::Cpu, DType::F32, nas_core::component_rng(1, "s"))
            .unwrap();
        let all: f64 = spec.fixed_cost.params
            + spec
                .decisions
                .iter()
                .flat_map(|d| d.options.iter())
                .map(|o| o.cost.params)
                .sum::<f64>();
        assert_eq!(sn.params().count() as f64, all, "{variant}");
        for choices in [vec![0; 6], vec![3; 6], vec![1, 2, 3, 0, 2, 1]] {
            let a = Architecture::new("spos", choices);
            let net = space
                .build_network(
                    &a,
                    &space.default_network_config(),
                    &Device::Cpu,
                    DType::F32,
                    nas_core::component_rng(1, "n"),
                )
                .unwrap();
            assert_eq!(net.param_count() as f64, spec.cost_of(&a).unwrap().params);
        }
    }
}

/// A path through the supernet computes exactly what the standalone network of that
/// architecture computes with the same weights (copied by name).
#[test]
fn path_forward_equals_the_standalone_network() {
    let space = tiny("cifar");
    let a = Architecture::new("spos", vec![3, 1, 2, 0, 3, 1]);
    let sn = space
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(2, "s"))
        .unwrap();
    let net = space
        .build_network(
            &a,
            &space.default_network_config(),
            &Device::Cpu,
            DType::F64,
            nas_core::component_rng(3, "n"),
        )
        .unwrap();
    for (name, v) in net.params().named() {
        let src = sn
            .params()
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in supernet"));
        v.set(src.as_tensor()).unwrap();
    }
    let x = Tensor::randn(0f64, 1.0, (3, 1, 8, 8), &Device::Cpu).unwrap();
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
    let (y2, aux) = net.forward(&x, false).unwrap();
    assert!(aux.is_none());
    assert_eq!(y1.dims(), &[3, 10]);
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
fn bad_params_are_errors_naming_the_key() {
    let bad = |v: serde_json::Value| {
        nas_space_spos::from_params(&v, DIGITS)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        bad(json!({"stage_channels": [9, 16], "stage_repeats": [1, 1]}))
            .contains("stage_channels[0]")
    );
    assert!(
        bad(json!({"stem_channels": 16, "stage_channels": [8], "stage_repeats": [1]}))
            .contains("exceed")
    );
    assert!(bad(json!({"stage_repeats": [4, 4]})).contains("stage_repeats"));
    assert!(bad(json!({"mid_channel_scales": [1.0]})).contains("mid_channel_scales"));
    assert!(bad(json!({"varaint": "cifar"})).contains("varaint"));
}
