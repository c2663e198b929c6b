//! The trainer's gradients with respect to the mixing weights, checked against central
//! finite differences of the loss it reports, on a tiny DARTS supernet in f64.
use crate::common;

use candle_core::DType;
use nas_core::{Drive, GradOrder, MixingWeights, SearchEnv, SpaceRules, SupernetTrainer};
use nas_trainer::WeightSharingTrainer;

fn val_loss(t: &mut WeightSharingTrainer, w: &MixingWeights) -> f64 {
    t.arch_gradient(&Drive::mixed(w.clone()), GradOrder::First)
        .unwrap()
        .loss
}

#[test]
fn first_order_mixing_weight_gradient_matches_central_differences() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 6);
    t.begin_epoch(0).unwrap();
    let w = common::random_weights(space.spec(), 5);
    let g = t
        .arch_gradient(&Drive::mixed(w.clone()), GradOrder::First)
        .unwrap();
    let analytic = &g.grads[0];
    // A small step: ReLU and max-pool kinks make larger steps (1e-3) disagree by ~1e-2
    // on a few entries, which shrinks with the step; away from kinks the loss is smooth.
    let h = 1e-5f32;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut checked = 0;
    for d in 0..w.0.len() {
        for k in 0..w.0[d].len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp.0[d][k] += h;
            wm.0[d][k] -= h;
            // The step actually taken in f32 weights.
            let step = (wp.0[d][k] - wm.0[d][k]) as f64;
            let fd = (val_loss(&mut t, &wp) - val_loss(&mut t, &wm)) / step;
            let a = analytic.0[d][k] as f64;
            if (fd - a).abs() > 1e-3 * (1.0 + fd.abs()) {
                eprintln!(
                    "d={d} ({}) k={k} ({}): fd {fd:.6e} analytic {a:.6e}",
                    space.spec().decisions[d].key,
                    space.spec().decisions[d].options[k].name
                );
            }
            num += (fd - a).powi(2);
            den += fd.powi(2);
            checked += 1;
            // `none` has no output, so its gradient is exactly zero.
            if space.spec().decisions[d].options[k].name == "none" {
                assert_eq!(a, 0.0);
            }
        }
    }
    let rel = (num / den).sqrt();
    eprintln!("normwise relative error over {checked} weights: {rel:e}");
    assert!(checked > 40);
    assert!(rel < 1e-3, "relative error {rel:e}");
}

#[test]
fn per_example_gradients_sum_to_the_shared_gradient() {
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 4);
    t.begin_epoch(0).unwrap();
    let w = common::random_weights(space.spec(), 9);
    let shared = t
        .arch_gradient(&Drive::mixed(w.clone()), GradOrder::First)
        .unwrap();
    let per = t
        .arch_gradient(
            &Drive {
                kind: nas_core::DriveKind::MixedPerSample {
                    weights: vec![w.clone(); 4],
                },
                condition: None,
            },
            GradOrder::First,
        )
        .unwrap();
    assert_eq!(per.grads.len(), 4);
    assert!((per.loss - shared.loss).abs() < 1e-9);
    for d in 0..w.0.len() {
        for k in 0..w.0[d].len() {
            let s: f32 = per.grads.iter().map(|g| g.0[d][k]).sum();
            assert!(
                (s - shared.grads[0].0[d][k]).abs() < 1e-5 * (1.0 + s.abs()),
                "decision {d} option {k}: {s} vs {}",
                shared.grads[0].0[d][k]
            );
        }
    }
}

/// The DARTS strategy's alpha gradient (trainer gradient through its softmax chain rule)
/// equals central differences of the trainer's loss as a function of the alphas.
#[test]
fn darts_alpha_gradient_matches_finite_differences_through_softmax() {
    use nas_core::SearchStrategy;
    let (space, mut t) = common::tiny(DType::F64, serde_json::json!({"lr": 0.1}), 6);
    t.begin_epoch(0).unwrap();
    let mut s = nas_strategy_darts::Darts::new(&serde_json::json!({"init_scale": 0.5})).unwrap();
    s.init(space.spec(), 11).unwrap();
    let g = t
        .arch_gradient(&Drive::mixed(s.weights()), GradOrder::First)
        .unwrap();
    let ga = s.alpha_gradient(&g.grads[0]);
    let alphas = s.alphas().to_vec();
    let h = 1e-3;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for d in [0usize, 3, 7] {
        for k in 0..alphas[d].len() {
            let mut ap = alphas.clone();
            ap[d][k] += h;
            s.set_alphas(ap);
            let lp = val_loss(&mut t, &s.weights());
            let mut am = alphas.clone();
            am[d][k] -= h;
            s.set_alphas(am);
            let lm = val_loss(&mut t, &s.weights());
            let fd = (lp - lm) / (2.0 * h);
            num += (fd - ga[d][k]).powi(2);
            den += fd.powi(2);
        }
    }
    let rel = (num / den).sqrt();
    assert!(rel < 2e-3, "relative error {rel:e}");
    let _ = &t as &dyn SupernetTrainer;
    let _: Option<&dyn SearchEnv> = None;
}
