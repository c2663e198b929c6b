//! The object-safe [`Optimizer`] trait and the checks every implementation shares.
use nas_core::{NasError, Result};

use crate::InPlace;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An optimizer over flat `f64` buffers, one buffer per parameter tensor.
///
/// Why this shape: candle-nn's optimizer trait is not object safe and its SGD has no
/// momentum. Working on plain buffers lets one implementation serve both the supernet
/// weights (the trainer hands each tensor's own storage to
/// [`step_in_place`](Optimizer::step_in_place), or copies tensors out and back for an
/// optimizer without it) and the architecture parameters a strategy owns as plain data
/// (DESIGN.md section 2: no tensor crosses that boundary). The state (momentum buffers,
/// moments) is `f64` either way; PyTorch keeps it in the parameter's dtype (`f32`).
///
/// Invariants:
/// * Parameter tensor `i` keeps index `i` and its length for the optimizer's lifetime.
///   State for an index is created lazily on its first [`step`](Optimizer::step); a later
///   call with a different length for that index is an error, and so is a `grads` slice
///   whose shape differs from `params`. On error nothing is changed.
/// * The learning rate is passed to every `step` (a [`Schedule`](crate::Schedule) computes
///   it from [`base_lr`](Optimizer::base_lr)); hyper-parameters other than the learning rate
///   are fixed at construction.
///
/// Every method is required.
pub trait Optimizer: Send {
    /// Registered name (`sgd`, `adam`, `adamw`, `rmsprop`).
    fn name(&self) -> &str;

    /// The learning rate configured in the optimizer's params (`lr`), which a schedule
    /// scales per epoch. (An addition to the first sketch of this trait: a boxed optimizer
    /// is otherwise unable to tell its caller which base rate it was configured with.)
    fn base_lr(&self) -> f64;

    /// One update of every parameter tensor `i`: `params[i] -= ...` using `grads[i]` and the
    /// learning rate `lr`. Lazily creates state for each index on first use; lengths must
    /// stay the same.
    fn step(&mut self, params: &mut [&mut [f64]], grads: &[&[f64]], lr: f64) -> Result<()>;

    /// One update of the parameter tensors `i` with `active[i]` true only: the others, and
    /// their state (momentum buffers, step counts), are left exactly as they are, as
    /// PyTorch's optimizers skip a parameter whose `.grad` is `None` (no momentum step, no
    /// weight decay). SPOS relies on it: options off the sampled path have no gradient in
    /// the reference and are not touched (Guo et al. 2020, megvii-model/SinglePathOneShot).
    /// `active` shorter than `params` counts as `false` for the rest.
    ///
    /// Provided for optimizers written elsewhere: with every parameter active it is
    /// [`step`](Optimizer::step), otherwise an error; every optimizer of this crate
    /// overrides it.
    fn step_active(
        &mut self,
        params: &mut [&mut [f64]],
        grads: &[&[f64]],
        lr: f64,
        active: &[bool],
    ) -> Result<()> {
        if params.len() <= active.len() && active.iter().all(|&a| a) {
            return self.step(params, grads, lr);
        }
        Err(NasError::Other(format!(
            "optimizer `{}` cannot leave parameters out of a step",
            self.name()
        )))
    }

    /// Whether [`step_in_place`](Optimizer::step_in_place) is implemented. When it is not
    /// (the default, for optimizers written elsewhere), the trainer copies the weights and
    /// gradients into `f64` buffers and calls [`step`](Optimizer::step) instead.
    fn updates_in_place(&self) -> bool {
        false
    }

    /// One update of parameter tensor `index` alone, on the tensor library's own buffer
    /// (`f32` or `f64`), with its gradient scaled by `tensor.grad_scale`: the same update
    /// as [`step_active`](Optimizer::step_active) with only `index` active, and exactly the
    /// same values (the arithmetic is in `f64`, each element converted on the way in and
    /// out, as a copy to `f64` and back would). No copy of the tensor is made; the
    /// optimizer's state stays in `f64`. The lengths are checked as in `step`; on error
    /// nothing is changed.
    ///
    /// Only for optimizers whose update of one tensor does not depend on the others (every
    /// optimizer here); the default refuses (see
    /// [`updates_in_place`](Optimizer::updates_in_place)).
    fn step_in_place(&mut self, index: usize, tensor: InPlace<'_>, lr: f64) -> Result<()> {
        let _ = (index, tensor, lr);
        Err(NasError::Other(format!(
            "optimizer `{}` has no in-place update",
            self.name()
        )))
    }

    /// The direction `d` of a plain next step, without mutating state, such that the next
    /// [`step`](Optimizer::step) with learning rate `lr` would move `param` to
    /// `param - lr * d` (exactly, up to rounding, for every optimizer here).
    ///
    /// For SGD without Nesterov this is `momentum * buf + grad + wd * param`, what DARTS'
    /// second-order virtual step uses (Liu et al. 2019, reference code
    /// `_compute_unrolled_model`, with `buf = 0` before the first step). For adaptive
    /// methods it is their current update. `param` and `grad` should have the same length
    /// (the result has the length of the shorter one); state whose length does not match
    /// is ignored.
    fn lookahead_direction(&self, index: usize, param: &[f64], grad: &[f64]) -> Vec<f64>;

    /// This optimizer as [`std::any::Any`], so that a caller that knows a concrete optimizer
    /// type can reach its own methods (the trainer finds [`Sgd`](crate::Sgd) this way to run
    /// its steps on a GPU, and its own wrapper around it). `None` (the default): an
    /// optimizer that does not offer it.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }

    /// State for checkpoints: a JSON object with the optimizer's name and, per parameter
    /// index, its buffers and step counts (`null` for indices not yet stepped).
    fn save_state(&self) -> serde_json::Value;

    /// Restores what [`save_state`](Optimizer::save_state) wrote; continuing afterwards is
    /// bit-identical to never having stopped. A state of another optimizer, or one that
    /// does not decode, is an error and leaves the current state unchanged.
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()>;
}

/// Checks that `grads` has the shape of `params` and that per-index state (of length
/// `state_len(i)`, when present) still fits. Nothing is mutated before this passes.
pub(crate) fn check_shapes(
    name: &str,
    params: &[&mut [f64]],
    grads: &[&[f64]],
    state_len: impl Fn(usize) -> Option<usize>,
) -> Result<()> {
    if params.len() != grads.len() {
        return Err(NasError::Other(format!(
            "optimizer {name}: {} parameter tensors but {} gradients",
            params.len(),
            grads.len()
        )));
    }
    for (i, (p, g)) in params.iter().zip(grads).enumerate() {
        if p.len() != g.len() {
            return Err(NasError::Other(format!(
                "optimizer {name}: parameter {i} has {} values but its gradient has {}",
                p.len(),
                g.len()
            )));
        }
        if let Some(n) = state_len(i) {
            if n != p.len() {
                return Err(NasError::Other(format!(
                    "optimizer {name}: parameter {i} has {} values but its state was created \
                     for {n}",
                    p.len()
                )));
            }
        }
    }
    Ok(())
}

/// Makes sure `slots` has an entry (possibly `None`) for every index below `n`.
pub(crate) fn grow<T>(slots: &mut Vec<Option<T>>, n: usize) {
    if slots.len() < n {
        slots.resize_with(n, || None);
    }
}

/// Serialises per-index slots as `{"optimizer": name, "slots": [...]}`.
pub(crate) fn save_slots<T: Serialize>(name: &str, slots: &[Option<T>]) -> serde_json::Value {
    serde_json::json!({
        "optimizer": name,
        // Plain structs of numbers and vectors always serialise.
        "slots": serde_json::to_value(slots).unwrap_or(serde_json::Value::Null),
    })
}

/// What [`save_slots`] writes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved<T> {
    /// Checked before decoding; kept so that `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    optimizer: String,
    slots: Vec<Option<T>>,
}

/// Decodes what [`save_slots`] wrote, checking the optimizer's name. Errors name the key
/// path inside the state (`slots[1].exp_avg`, ...).
pub(crate) fn load_slots<T: DeserializeOwned>(
    name: &str,
    state: &serde_json::Value,
) -> Result<Vec<Option<T>>> {
    let component = format!("{name} optimizer state");
    // The name first, so that another optimizer's state is reported as such.
    let saved_name = state.get("optimizer").and_then(|v| v.as_str());
    if saved_name != Some(name) {
        return Err(NasError::InvalidParams {
            component,
            path: "optimizer".into(),
            message: format!(
                "expected `{name}`, found {}",
                saved_name.map_or("nothing".to_string(), |n| format!("`{n}`"))
            ),
        });
    }
    let saved: Saved<T> = nas_core::decode_params(&component, state)?;
    Ok(saved.slots)
}

/// A loaded state's buffer `key` of slot `index` must have the length `expected` of the
/// slot's first buffer.
pub(crate) fn ensure_same_len(
    name: &str,
    index: usize,
    key: &str,
    expected: usize,
    found: usize,
) -> Result<()> {
    nas_core::params::ensure(
        expected == found,
        &format!("{name} optimizer state"),
        &format!("slots[{index}].{key}"),
        format!("has {found} values, expected {expected} like the slot's first buffer"),
    )
}
