//! A scope in which the caller wants no gradient of the network's weights, only of its input
//! and mixing weights: the architecture step of first-order DARTS and of GDAS. quark0/darts'
//! `architect.py` (`_backward_step`) calls `loss.backward()`, which also fills the weights'
//! gradients (then discarded: the weight step zeroes them); `torch.autograd.grad(loss,
//! alphas)`, which `benches/pytorch/darts_step.py` uses, computes only what the alphas need.
//! This scope gives nas the latter: the fused ops built inside it ([`crate::mixed_edge`],
//! [`crate::relu_dw_pw_bn`]) skip their weight-gradient kernels (and give the weights no
//! gradient), and the gradients of inputs and mixing weights stay the same, bit for bit.
use std::cell::Cell;

thread_local! {
    static FROZEN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the weights frozen on this thread: ops built meanwhile compute no weight
/// gradients in their backward (which may run after `f` returns). Scopes nest.
pub fn with_frozen_weights<R>(f: impl FnOnce() -> R) -> R {
    let outer = FROZEN.with(|c| c.replace(true));
    let r = f();
    FROZEN.with(|c| c.set(outer));
    r
}

/// Whether this thread is inside [`with_frozen_weights`].
pub(crate) fn weights_frozen() -> bool {
    FROZEN.with(Cell::get)
}
