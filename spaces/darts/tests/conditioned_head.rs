//! The DARTS-CC lambda-conditioned classifier of the search network (`head_anchors`):
//! logits are piecewise linear in the condition `t` between anchor classifiers at evenly
//! spaced pivots, the anchors outside `t`'s segment get no gradient, and the default is the
//! plain classifier.
use candle_core::{DType, Device, Tensor};
use nas_core::{MixingWeights, SpaceRules};
use nas_model::{DataShape, SearchSpace, TensorDrive};
use nas_space_darts::{DartsSpace, DartsSpaceParams};

fn space(head_anchors: usize) -> nas_core::Result<DartsSpace> {
    DartsSpace::new(
        DartsSpaceParams {
            channels: 2,
            layers: 3,
            nodes: 2,
            multiplier: 2,
            stem_multiplier: 2,
            head_anchors,
            ..Default::default()
        },
        DataShape {
            channels: 1,
            height: 8,
            width: 8,
            num_classes: 3,
        },
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn logits_interpolate_between_anchor_classifiers() {
    let sp = space(3).unwrap();
    let net = sp
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(1, "t"))
        .unwrap();
    // Three anchor classifiers instead of one.
    let names: Vec<&str> = net
        .params()
        .named()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    for k in 0..3 {
        assert!(
            names.contains(&format!("classifier.{k}.weight").as_str()),
            "{names:?}"
        );
    }
    assert!(!names.contains(&"classifier.weight"));
    let plain = space(0)
        .unwrap()
        .build_supernet(&Device::Cpu, DType::F64, nas_core::component_rng(1, "t"))
        .unwrap();
    // Cells of 2, 4, 8 channels and 2 nodes concatenated: 16 features, 3 classes; two more
    // 16 x 3 classifiers with bias.
    assert_eq!(
        net.params().count() - plain.params().count(),
        2 * (16 * 3 + 3)
    );

    let x = Tensor::randn(0f64, 1.0, (4, 1, 8, 8), &Device::Cpu).unwrap();
    let w = MixingWeights::uniform(sp.spec());
    let drive = TensorDrive::Mixed {
        weights: w
            .0
            .iter()
            .map(|r| {
                Tensor::new(r.as_slice(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
            })
            .collect(),
        skip_zero: false,
        values: Some(w.clone()),
    };
    // Evaluation mode (running statistics): the cells give the same features every call.
    let at = |t: Option<f32>| net.forward(&x, &drive, t, false).unwrap();
    let (l0, l25, l5, l1) = (at(Some(0.0)), at(Some(0.25)), at(Some(0.5)), at(Some(1.0)));
    // Pivots 0, 0.5, 1: t = 0.25 is halfway between anchors 0 and 1.
    let mid = ((&l0 + &l5).unwrap() * 0.5).unwrap();
    assert!(max_abs_diff(&l25, &mid) < 1e-12);
    // t = 0.8 is 60% of the way from anchor 1 to anchor 2 (0.8 rounded to f32).
    let l8 = at(Some(0.8));
    let s = 2.0 * (0.8f32 as f64) - 1.0;
    let want = ((&l5 * (1.0 - s)).unwrap() + (&l1 * s).unwrap()).unwrap();
    assert!(max_abs_diff(&l8, &want) < 1e-12);
    // Different anchors give different logits; no condition (or a NaN) means t = 0.
    assert!(max_abs_diff(&l0, &l1) > 1e-3);
    assert!(max_abs_diff(&at(None), &l0) == 0.0);
    assert!(max_abs_diff(&at(Some(f32::NAN)), &l0) == 0.0);
    assert!(max_abs_diff(&at(Some(3.0)), &l1) == 0.0);

    // Gradients reach the two anchors of t's segment only.
    let loss = net
        .forward(&x, &drive, Some(0.25), true)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g = |name: &str| {
        grads
            .get(net.params().get(name).unwrap().as_tensor())
            .cloned()
    };
    assert!(g("classifier.0.weight").is_some() && g("classifier.1.weight").is_some());
    assert!(g("classifier.2.weight").is_none());
}

#[test]
fn one_anchor_is_rejected_and_the_default_is_plain() {
    assert!(space(1).is_err());
    assert_eq!(DartsSpaceParams::default().head_anchors, 0);
}
