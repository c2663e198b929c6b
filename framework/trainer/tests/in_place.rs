//! The weight update on the network's own tensors (in place) leaves exactly the weights the
//! copying path (weights and gradients to `f64`, step, back) leaves, for every kind of
//! drive, with clipping, and follows SGD's formula.
use crate::common;

use candle_core::DType;
use nas_core::{Architecture, Drive, DriveKind, SpaceRules, SupernetTrainer};
use nas_optim::{build_optimizer, Optimizer};

/// An optimizer that declines in-place updates, so that the trainer takes the copying path.
struct Copying(Box<dyn Optimizer>);

impl Optimizer for Copying {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn base_lr(&self) -> f64 {
        self.0.base_lr()
    }
    fn step(&mut self, p: &mut [&mut [f64]], g: &[&[f64]], lr: f64) -> nas_core::Result<()> {
        self.0.step(p, g, lr)
    }
    fn step_active(
        &mut self,
        p: &mut [&mut [f64]],
        g: &[&[f64]],
        lr: f64,
        active: &[bool],
    ) -> nas_core::Result<()> {
        self.0.step_active(p, g, lr, active)
    }
    fn lookahead_direction(&self, i: usize, p: &[f64], g: &[f64]) -> Vec<f64> {
        self.0.lookahead_direction(i, p, g)
    }
    fn save_state(&self) -> serde_json::Value {
        self.0.save_state()
    }
    fn load_state(&mut self, s: &serde_json::Value) -> nas_core::Result<()> {
        self.0.load_state(s)
    }
}

pub(crate) fn bits(w: &[Vec<f64>]) -> Vec<u64> {
    w.iter().flatten().map(|v| v.to_bits()).collect()
}

/// Drives of each kind the trainer steps weights under: mixed, one path (SPOS, unused
/// options left alone), two paths on one batch (FairNAS, gradients summed).
pub(crate) fn drives(spec: &nas_core::SpaceSpec) -> Vec<Drive> {
    let shape = spec.shape();
    let arch = |shift: usize| {
        Architecture::new(
            spec.space.as_str(),
            shape
                .iter()
                .enumerate()
                .map(|(d, &k)| (d + shift) % k)
                .collect(),
        )
    };
    let paths = |archs: Vec<Architecture>| Drive {
        kind: DriveKind::Paths { archs },
        condition: None,
    };
    vec![
        Drive::mixed(common::random_weights(spec, 4)),
        paths(vec![arch(0)]),
        paths(vec![arch(1), arch(2)]),
    ]
}

#[test]
fn in_place_update_equals_the_copying_path_bit_for_bit() {
    let configs = [
        (
            "sgd",
            serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}),
        ),
        (
            "adam",
            serde_json::json!({"lr": 0.01, "weight_decay": 1e-3}),
        ),
    ];
    for (name, params) in configs {
        for dtype in [DType::F32, DType::F64] {
            // Clipping at 0.05 is active on this data (norms ~0.5-5).
            for clip in [None, Some(0.05)] {
                let opt = || build_optimizer(name, &params).unwrap();
                let (space, mut a) = common::tiny_with(dtype, opt(), 6, clip);
                let (_, mut b) = common::tiny_with(dtype, Box::new(Copying(opt())), 6, clip);
                assert_eq!(
                    bits(&a.weight_values().unwrap()),
                    bits(&b.weight_values().unwrap())
                );
                a.begin_epoch(0).unwrap();
                b.begin_epoch(0).unwrap();
                let before = a.weight_values().unwrap();
                for d in drives(space.spec()) {
                    for _ in 0..2 {
                        let sa = a.train_weights(&d).unwrap();
                        let sb = b.train_weights(&d).unwrap();
                        assert_eq!(sa.grad_norm.to_bits(), sb.grad_norm.to_bits());
                        if clip.is_some() {
                            assert!(sa.grad_norm > 0.05, "clipping not exercised");
                        }
                    }
                    let (wa, wb) = (a.weight_values().unwrap(), b.weight_values().unwrap());
                    assert_eq!(bits(&wa), bits(&wb), "{name} {dtype:?} clip {clip:?} {d:?}");
                }
                assert_ne!(bits(&before), bits(&a.weight_values().unwrap()));
                assert_eq!(a.optimizer().save_state(), b.optimizer().save_state());
            }
        }
    }
}

#[test]
fn in_place_step_follows_plain_sgd() {
    // Plain SGD, no momentum, decay 0.5: w' = w - lr (g + 0.5 w), g from the same batch
    // (the training part is one batch, so batch_gradients sees what train_weights sees).
    let params = serde_json::json!({"lr": 0.1, "momentum": 0.0, "weight_decay": 0.5});
    let (space, mut t) = common::tiny_with(
        DType::F64,
        build_optimizer("sgd", &params).unwrap(),
        6,
        None,
    );
    t.begin_epoch(0).unwrap();
    let d = Drive::mixed(common::random_weights(space.spec(), 4));
    let w = t.weight_values().unwrap();
    let g = t
        .batch_gradients(&common::train_batch(6), &d)
        .unwrap()
        .weights;
    t.train_weights(&d).unwrap();
    let after = t.weight_values().unwrap();
    let mut worst = 0.0f64;
    for ((w, g), a) in w
        .iter()
        .flatten()
        .zip(g.iter().flatten())
        .zip(after.iter().flatten())
    {
        worst = worst.max((w - 0.1 * (g + 0.5 * w) - a).abs());
    }
    assert!(worst < 1e-9, "largest difference {worst:e}");
}
