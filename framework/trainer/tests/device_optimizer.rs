//! `DeviceOptimizer` (the weight step a GPU runs in one launch, the optimizer's state in device
//! memory), run here on the CPU through the same path (`nas_ops::optimizer_step`, the host
//! build of the kernel bodies), against the trainer's plain SGD, Adam, AdamW and RMSprop: the
//! same weights to the last bit under every kind of drive (mixed; one path with the unused
//! parameters left alone, whose step counts then lag; two paths, whose summed gradients take
//! the host path and so move the state back and forth), with clipping, the same checkpoint
//! state, the same state after a checkpoint is loaded back, and the same second-order
//! architecture gradient (which reads the state for its virtual step).
use crate::common;
use crate::in_place::{bits, drives};

use candle_core::DType;
use nas_core::{Drive, GradOrder, SpaceRules, SupernetTrainer};
use nas_optim::build_optimizer;
use nas_trainer::DeviceOptimizer;

fn optimizer(name: &str, params: &serde_json::Value) -> Box<dyn nas_optim::Optimizer> {
    build_optimizer(name, params).unwrap()
}

#[test]
fn the_device_step_steps_as_the_plain_optimizers_bit_for_bit() {
    let configs = [
        (
            "sgd",
            serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}),
        ),
        (
            "sgd",
            serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4, "nesterov": true}),
        ),
        (
            "sgd",
            serde_json::json!({"lr": 0.1, "momentum": 0.0, "weight_decay": 3e-4}),
        ),
        (
            "adam",
            serde_json::json!({"lr": 0.01, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
        ),
        ("adamw", serde_json::json!({"lr": 0.01})),
        (
            "rmsprop",
            serde_json::json!({"lr": 0.01, "weight_decay": 1e-4}),
        ),
        (
            "rmsprop",
            serde_json::json!({"lr": 0.01, "momentum": 0.9, "centered": true}),
        ),
    ];
    for (name, params) in configs {
        for dtype in [DType::F32, DType::F64] {
            for clip in [None, Some(0.05)] {
                let wrapped = DeviceOptimizer::wrap(optimizer(name, &params))
                    .ok()
                    .expect("a built-in optimizer is wrapped");
                let (space, mut a) = common::tiny_with(dtype, optimizer(name, &params), 6, clip);
                let (_, mut b) = common::tiny_with(dtype, Box::new(wrapped), 6, clip);
                a.begin_epoch(0).unwrap();
                b.begin_epoch(0).unwrap();
                let what = format!("{name} {params} {dtype:?} clip {clip:?}");
                let mut saved = None;
                for d in drives(space.spec()) {
                    for _ in 0..2 {
                        let sa = a.train_weights(&d).unwrap();
                        let sb = b.train_weights(&d).unwrap();
                        assert_eq!(sa.grad_norm.to_bits(), sb.grad_norm.to_bits(), "{what}");
                    }
                    let (wa, wb) = (a.weight_values().unwrap(), b.weight_values().unwrap());
                    assert_eq!(bits(&wa), bits(&wb), "{what} {d:?}");
                    // The checkpoint state, read from the device mid-run.
                    let state = b.optimizer().save_state();
                    assert_eq!(a.optimizer().save_state(), state, "{what} {d:?}");
                    saved.get_or_insert(state);
                }
                // An earlier state loaded back into both (a resumed run): the device copy is
                // dropped and the next step starts from the loaded buffers.
                let saved = saved.unwrap();
                a.optimizer_mut().load_state(&saved).unwrap();
                b.optimizer_mut().load_state(&saved).unwrap();
                let d = Drive::mixed(common::random_weights(space.spec(), 9));
                a.train_weights(&d).unwrap();
                b.train_weights(&d).unwrap();
                assert_eq!(
                    bits(&a.weight_values().unwrap()),
                    bits(&b.weight_values().unwrap()),
                    "{what} after load_state"
                );
                // DARTS' second order reads the state for its virtual step.
                let order = GradOrder::Second { xi: None };
                let ga = a.arch_gradient(&d, order).unwrap();
                let gb = b.arch_gradient(&d, order).unwrap();
                assert_eq!(format!("{ga:?}"), format!("{gb:?}"), "{what} second order");
                assert_eq!(a.optimizer().save_state(), b.optimizer().save_state());
            }
        }
    }
}

/// An optimizer written elsewhere: the device step cannot know its state.
struct Elsewhere;

impl nas_optim::Optimizer for Elsewhere {
    fn name(&self) -> &str {
        "elsewhere"
    }
    fn base_lr(&self) -> f64 {
        0.1
    }
    fn step(&mut self, _: &mut [&mut [f64]], _: &[&[f64]], _: f64) -> nas_core::Result<()> {
        Ok(())
    }
    fn lookahead_direction(&self, _: usize, _: &[f64], grad: &[f64]) -> Vec<f64> {
        grad.to_vec()
    }
    fn save_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load_state(&mut self, _: &serde_json::Value) -> nas_core::Result<()> {
        Ok(())
    }
}

#[test]
fn the_built_in_optimizers_are_wrapped_and_others_given_back() {
    let back = DeviceOptimizer::wrap(Box::new(Elsewhere))
        .err()
        .expect("an optimizer from elsewhere is given back");
    assert_eq!(back.name(), "elsewhere");
    for name in ["sgd", "adam", "adamw", "rmsprop"] {
        let wrapped = DeviceOptimizer::wrap(optimizer(name, &serde_json::json!({})));
        let wrapped = wrapped.ok().expect("wrapped");
        assert_eq!(nas_optim::Optimizer::name(&wrapped), name);
    }
}

/// What `DeviceOptimizer::save_state` writes when the GPU cannot give the state back: a resume
/// from it stops with an error naming the cause rather than going on from a stale state.
#[test]
fn a_state_the_device_could_not_give_back_is_refused_on_resume() {
    for name in ["sgd", "adam", "adamw", "rmsprop"] {
        let mut s = optimizer(name, &serde_json::json!({"lr": 0.1}));
        let unreadable = serde_json::json!({
            "optimizer": name,
            "unreadable": "the optimizer state could not be read from the GPU: lost",
        });
        let err = s.load_state(&unreadable).unwrap_err();
        assert!(err.to_string().contains("unreadable"), "{name}: {err}");
    }
}
