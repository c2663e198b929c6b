//! # nas-optim
//!
//! Object-safe optimizers over flat `f64` buffers (one buffer per parameter tensor),
//! learning-rate schedules, and gradient clipping. No tensor library: the same code updates
//! the supernet weights (in place, on each tensor's own `f32` or `f64` storage, which the
//! trainer hands over one tensor at a time) and the architecture parameters a strategy owns
//! as plain data.
//!
//! * [`Optimizer`]: [`Sgd`] (momentum, Nesterov, coupled weight decay), [`Adam`] (coupled
//!   L2), [`AdamW`] (decoupled), [`RmsProp`]; all with PyTorch's semantics; built by name with
//!   [`build_optimizer`], documented by [`optimizer_infos`].
//! * [`Schedule`]: [`Constant`], [`StepDecay`], [`Cosine`]; [`build_schedule`],
//!   [`schedule_infos`].
//! * [`clip_grad_norm`].
//! * [`FlatState`]: an optimizer's per-parameter state as plain `f64` buffers, for a step
//!   taken elsewhere (the GPU weight step) to take over and hand back; [`adam_bias_corrections`].
//! * In place: [`Optimizer::step_in_place`] updates one tensor's own `f32` or `f64` buffer
//!   ([`InPlace`]) with exactly the values of the `f64` path, without copying it.
//!
//! ```
//! use nas_optim::{build_optimizer, build_schedule};
//! let mut opt = build_optimizer("sgd", &serde_json::json!({"momentum": 0.0, "weight_decay": 0.0}))?;
//! let sched = build_schedule("constant", &serde_json::Value::Null)?;
//! let mut w = vec![1.0, 2.0];
//! let lr = sched.lr(opt.base_lr(), 0, 10);
//! opt.step(&mut [&mut w[..]], &[&[1.0, -1.0][..]], lr)?;
//! assert_eq!(w, vec![1.0 - 0.025, 2.0 + 0.025]);
//! # Ok::<(), nas_core::NasError>(())
//! ```
#![deny(missing_docs)]

mod adam;
mod check;
mod clip;
mod factory;
mod flat_state;
mod in_place;
mod optimizer;
mod rmsprop;
mod schedule;
mod sgd;

#[cfg(test)]
mod tests;

pub use adam::{adam_bias_corrections, Adam, AdamParams, AdamW, AdamWParams};
pub use clip::{clip_coefficient, clip_grad_norm, grad_norm};
pub use factory::{build_optimizer, optimizer_infos, OPTIMIZER_NAMES};
pub use flat_state::{FlatSlot, FlatState};
pub use in_place::{Element, GradsRef, InPlace, ParamsMut};
pub use optimizer::Optimizer;
pub use rmsprop::{RmsProp, RmsPropParams};
pub use schedule::{
    build_schedule, schedule_infos, Constant, ConstantParams, Cosine, CosineParams, Schedule,
    StepDecay, StepParams, SCHEDULE_NAMES,
};
pub use sgd::{Sgd, SgdParams};
