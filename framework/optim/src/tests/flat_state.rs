//! `FlatState`: an optimizer's state taken out as flat buffers and put into a fresh optimizer
//! continues exactly as the original would (the device step hands the state back this way),
//! and a state of the wrong shape is refused with nothing changed.
use crate::{build_optimizer, Adam, AdamW, FlatSlot, FlatState, Optimizer, RmsProp, Sgd};

/// Builds `name` with `params` as the concrete type `T`.
fn make<T: Optimizer + FlatState + Clone + 'static>(name: &str, params: serde_json::Value) -> T {
    let mut boxed = build_optimizer(name, &params).unwrap();
    let any = boxed
        .as_any_mut()
        .expect("the built-in optimizers can be downcast");
    any.downcast_ref::<T>().expect("the built type").clone()
}

/// Two steps on the original; its flat slots moved into a fresh one; a third step on both.
fn continues_after_a_move<T: Optimizer + FlatState + Clone + 'static>(
    name: &str,
    params: serde_json::Value,
    buffers: usize,
) {
    let mut a: T = make(name, params.clone());
    let mut b: T = make(name, params);
    assert_eq!(a.buffer_names().len(), buffers, "{name}");
    let (mut x, mut y) = (vec![0.5, -1.0, 2.0], vec![0.25, 0.75]);
    let g = [vec![0.1, -0.2, 0.3], vec![-0.4, 0.5]];
    for _ in 0..2 {
        a.step_active(&mut [&mut x, &mut y], &[&g[0], &g[1]], 0.1, &[true, false])
            .unwrap();
    }
    for i in 0..2 {
        b.set_flat_slot(i, a.flat_slot(i)).unwrap();
    }
    assert_eq!(a.save_state(), b.save_state(), "{name}: the moved state");
    if buffers > 0 {
        let slot = a.flat_slot(0).expect("stepped");
        assert_eq!(slot.buffers.len(), buffers);
        assert!(a.flat_slot(1).is_none(), "{name}: never stepped");
    }
    let (mut x2, mut y2) = (x.clone(), y.clone());
    a.step(&mut [&mut x, &mut y], &[&g[0], &g[1]], 0.1).unwrap();
    b.step(&mut [&mut x2, &mut y2], &[&g[0], &g[1]], 0.1)
        .unwrap();
    assert_eq!((x, y), (x2, y2), "{name}: the next step");
}

#[test]
fn a_moved_state_continues_as_the_original() {
    continues_after_a_move::<Sgd>("sgd", serde_json::json!({"momentum": 0.9}), 1);
    continues_after_a_move::<Sgd>("sgd", serde_json::json!({"momentum": 0.0}), 0);
    continues_after_a_move::<Adam>("adam", serde_json::json!({}), 2);
    continues_after_a_move::<AdamW>("adamw", serde_json::json!({}), 2);
    continues_after_a_move::<RmsProp>("rmsprop", serde_json::json!({}), 1);
    continues_after_a_move::<RmsProp>(
        "rmsprop",
        serde_json::json!({"momentum": 0.9, "centered": true}),
        3,
    );
}

#[test]
fn a_slot_of_the_wrong_shape_is_refused() {
    let mut adam: Adam = make("adam", serde_json::json!({}));
    let one = FlatSlot {
        step: 1,
        buffers: vec![vec![0.0; 3]],
    };
    let uneven = FlatSlot {
        step: 1,
        buffers: vec![vec![0.0; 3], vec![0.0; 2]],
    };
    for bad in [one, uneven] {
        let err = adam.set_flat_slot(0, Some(bad)).unwrap_err();
        assert!(err.to_string().contains("adam"), "{err}");
    }
    assert!(adam.flat_slot(0).is_none(), "nothing changed");
    let mut rms: RmsProp = make("rmsprop", serde_json::json!({"centered": true}));
    let plain = FlatSlot {
        step: 1,
        buffers: vec![vec![1.0; 2]],
    };
    assert!(
        rms.set_flat_slot(0, Some(plain)).is_err(),
        "centered keeps two"
    );
}
