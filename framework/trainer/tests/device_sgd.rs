//! `DeviceSgd` (the weight step a GPU runs in one launch, momentum buffers in device memory),
//! run here on the CPU through the same path (`nas_ops::sgd_step`, the host build of the
//! kernel body), against the trainer's plain SGD: the same weights to the last bit under every
//! kind of drive (mixed; one path with the unused parameters left alone; two paths, whose
//! summed gradients take the host path and so move the buffers back and forth), with
//! clipping, the same checkpoint state, the same state after a checkpoint is loaded back, and
//! the same second-order architecture gradient (which reads the momentum buffers).
use crate::common;
use crate::in_place::{bits, drives};

use candle_core::DType;
use nas_core::{Drive, GradOrder, SpaceRules, SupernetTrainer};
use nas_optim::build_optimizer;
use nas_trainer::DeviceSgd;

fn sgd(params: &serde_json::Value) -> Box<dyn nas_optim::Optimizer> {
    build_optimizer("sgd", params).unwrap()
}

#[test]
fn device_sgd_steps_as_plain_sgd_bit_for_bit() {
    let configs = [
        serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}),
        serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4, "nesterov": true}),
        serde_json::json!({"lr": 0.1, "momentum": 0.0, "weight_decay": 3e-4}),
    ];
    for params in configs {
        for dtype in [DType::F32, DType::F64] {
            for clip in [None, Some(0.05)] {
                let wrapped = DeviceSgd::wrap(sgd(&params)).ok().expect("SGD is wrapped");
                let (space, mut a) = common::tiny_with(dtype, sgd(&params), 6, clip);
                let (_, mut b) = common::tiny_with(dtype, Box::new(wrapped), 6, clip);
                a.begin_epoch(0).unwrap();
                b.begin_epoch(0).unwrap();
                let what = format!("{params} {dtype:?} clip {clip:?}");
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
                // DARTS' second order reads the momentum buffers for its virtual step.
                let order = GradOrder::Second { xi: None };
                let ga = a.arch_gradient(&d, order).unwrap();
                let gb = b.arch_gradient(&d, order).unwrap();
                assert_eq!(format!("{ga:?}"), format!("{gb:?}"), "{what} second order");
                assert_eq!(a.optimizer().save_state(), b.optimizer().save_state());
            }
        }
    }
}

#[test]
fn only_sgd_is_wrapped() {
    let adam = build_optimizer("adam", &serde_json::json!({"lr": 0.01})).unwrap();
    let back = DeviceSgd::wrap(adam).err().expect("Adam is given back");
    assert_eq!(back.name(), "adam");
}

/// What `DeviceSgd::save_state` writes when the GPU cannot give the buffers back: a resume
/// from it stops with an error naming the cause rather than going on from stale buffers.
#[test]
fn a_state_the_device_could_not_give_back_is_refused_on_resume() {
    let mut s = sgd(&serde_json::json!({"lr": 0.1}));
    let unreadable = serde_json::json!({
        "optimizer": "sgd",
        "unreadable": "the momentum buffers could not be read from the GPU: lost",
    });
    let err = s.load_state(&unreadable).unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
}
