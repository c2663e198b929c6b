//! Gradient clipping by global norm.

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, with
/// PyTorch's `clip_grad_norm_` semantics: `total = sqrt(sum of squares over every buffer)`,
/// and every value is multiplied by `max_norm / (total + 1e-6)` when that factor is < 1.
/// Returns the norm before clipping. A non-finite norm is returned as is; with an infinite
/// norm the factor is 0, with a NaN norm nothing is scaled (as in PyTorch with
/// `error_if_nonfinite=False`). `max_norm` should be >= 0 (callers validate their
/// configuration); a negative value is taken as 0 rather than flipping the gradients' sign.
/// DARTS clips the weights' gradients at 5 (`grad_clip`, Liu et al. 2019).
pub fn clip_grad_norm(grads: &mut [&mut [f64]], max_norm: f64) -> f64 {
    let total = grad_norm(grads.iter().map(|g| &**g));
    let coef = clip_coefficient(total, max_norm);
    if coef != 1.0 {
        for g in grads.iter_mut() {
            for x in g.iter_mut() {
                *x *= coef;
            }
        }
    }
    total
}

/// The factor [`clip_grad_norm`] multiplies every gradient value by, given the global norm
/// `total`: `max_norm / (total + 1e-6)` when that is below 1, otherwise exactly 1 (no
/// clipping). For optimizers that scale the gradient as they read it
/// ([`InPlace::grad_scale`](crate::InPlace)).
pub fn clip_coefficient(total: f64, max_norm: f64) -> f64 {
    let coef = max_norm.max(0.0) / (total + 1e-6);
    if coef < 1.0 {
        coef
    } else {
        1.0
    }
}

/// The global L2 norm of several buffers taken together.
pub fn grad_norm<'a>(grads: impl IntoIterator<Item = &'a [f64]>) -> f64 {
    grads
        .into_iter()
        .flat_map(|g| g.iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
}
