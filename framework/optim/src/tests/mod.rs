//! Unit tests of the optimizers, schedules and clipping, checked against values worked out
//! by hand from each method's published formula (the arithmetic is in the comments).
mod clip;
mod factory;
mod flat_state;
mod in_place;
mod lookahead;
mod optimizers;
mod schedules;
mod state;

use crate::Optimizer;

/// Steps a one-value parameter starting at `p0` through `grads` with learning rate `lr` and
/// returns the parameter after each step.
pub(crate) fn trajectory(opt: &mut dyn Optimizer, p0: f64, grads: &[f64], lr: f64) -> Vec<f64> {
    let mut p = [p0];
    grads
        .iter()
        .map(|&g| {
            opt.step(&mut [&mut p[..]], &[&[g][..]], lr).unwrap();
            p[0]
        })
        .collect()
}

/// Asserts `|a - b| <= tol` element-wise.
pub(crate) fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}
