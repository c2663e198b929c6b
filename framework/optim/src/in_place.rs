//! In-place updates of parameters stored in the tensor library's own buffers: `f32` or `f64`
//! elements, read into `f64`, updated with the optimizer's `f64` state, and written back once.
//!
//! The arithmetic per element is that of the `f64` path exactly: with `f32` parameters the
//! `f64` path copied every tensor out (`f32 -> f64`), stepped, and copied it back
//! (`f64 -> f32`); here each element makes the same two conversions around the same `f64`
//! expression, without the copies (see [`Optimizer::step_in_place`]).
//!
//! [`Optimizer::step_in_place`]: crate::Optimizer::step_in_place
use nas_core::{NasError, Result};

use crate::optimizer::check_shapes;

/// An element type a parameter or gradient buffer may hold: its value as `f64`, and back.
pub trait Element: Copy {
    /// The value as `f64` (exact for `f32` and `f64`).
    fn get(self) -> f64;
    /// The nearest value of this type (round to nearest even for `f32`, as `as f32`).
    fn from_f64(v: f64) -> Self;
}

impl Element for f64 {
    #[inline(always)]
    fn get(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Element for f32 {
    #[inline(always)]
    fn get(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// A parameter tensor's values, updated in place.
#[derive(Debug)]
pub enum ParamsMut<'a> {
    /// Single precision (the supernet's usual dtype).
    F32(&'a mut [f32]),
    /// Double precision (the gradient-check tests' dtype).
    F64(&'a mut [f64]),
}

/// A gradient tensor's values.
#[derive(Debug, Clone, Copy)]
pub enum GradsRef<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Double precision.
    F64(&'a [f64]),
}

/// One parameter tensor and its gradient for [`Optimizer::step_in_place`], with the factor
/// gradient clipping scales the gradient by (`1.0` when it does not clip: `g * 1.0 == g`).
///
/// [`Optimizer::step_in_place`]: crate::Optimizer::step_in_place
#[derive(Debug)]
pub struct InPlace<'a> {
    /// The parameter's values.
    pub param: ParamsMut<'a>,
    /// Its gradient, of the same length.
    pub grad: GradsRef<'a>,
    /// Every gradient value is multiplied by this (in `f64`) before use; see
    /// [`clip_coefficient`](crate::clip_coefficient).
    pub grad_scale: f64,
}

impl InPlace<'_> {
    /// Number of parameter values.
    pub fn param_len(&self) -> usize {
        match &self.param {
            ParamsMut::F32(p) => p.len(),
            ParamsMut::F64(p) => p.len(),
        }
    }

    /// Number of gradient values.
    pub fn grad_len(&self) -> usize {
        match self.grad {
            GradsRef::F32(g) => g.len(),
            GradsRef::F64(g) => g.len(),
        }
    }

    /// Checks that the gradient has the parameter's length and that state created for
    /// parameter `index` (of length `state_len`, when present) fits it.
    pub(crate) fn check(&self, name: &str, index: usize, state_len: Option<usize>) -> Result<()> {
        let (p, g) = (self.param_len(), self.grad_len());
        if p != g {
            return Err(NasError::Other(format!(
                "optimizer {name}: parameter {index} has {p} values but its gradient has {g}"
            )));
        }
        match state_len {
            Some(n) if n != p => Err(NasError::Other(format!(
                "optimizer {name}: parameter {index} has {p} values but its state was created \
                 for {n}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Calls `$body` with `$p` and `$g` bound to the typed slices of an [`InPlace`].
macro_rules! with_slices {
    ($t:expr, |$p:ident, $g:ident| $body:expr) => {
        match ($t.param, $t.grad) {
            ($crate::ParamsMut::F32($p), $crate::GradsRef::F32($g)) => $body,
            ($crate::ParamsMut::F32($p), $crate::GradsRef::F64($g)) => $body,
            ($crate::ParamsMut::F64($p), $crate::GradsRef::F32($g)) => $body,
            ($crate::ParamsMut::F64($p), $crate::GradsRef::F64($g)) => $body,
        }
    };
}

/// An optimizer whose update of one parameter tensor depends on that tensor's state alone
/// (every optimizer of this crate): its `f64` path ([`Self::step_active_per_tensor`]) and its
/// in-place path ([`Self::step_in_place_per_tensor`]) are one generic [`Self::update`].
pub(crate) trait PerTensor {
    /// The registered name, for errors.
    fn label(&self) -> &'static str;
    /// The length of parameter `index`'s state, once created.
    fn state_len(&self, index: usize) -> Option<usize>;
    /// Makes room for state of parameters `0..n` (none created).
    fn grow_slots(&mut self, n: usize);
    /// The update of parameter `index` (room made, lengths checked), the arithmetic in `f64`
    /// whatever the element types, each value written back once.
    fn update<P: Element, G: Element>(
        &mut self,
        index: usize,
        p: &mut [P],
        g: &[G],
        grad_scale: f64,
        lr: f64,
    );

    /// [`crate::Optimizer::step_active`] on `f64` buffers.
    fn step_active_per_tensor(
        &mut self,
        params: &mut [&mut [f64]],
        grads: &[&[f64]],
        lr: f64,
        active: &[bool],
    ) -> Result<()> {
        check_shapes(self.label(), params, grads, |i| self.state_len(i))?;
        self.grow_slots(params.len());
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            if active.get(i).copied().unwrap_or(false) {
                self.update(i, p, g, 1.0, lr);
            }
        }
        Ok(())
    }

    /// [`crate::Optimizer::step_in_place`].
    fn step_in_place_per_tensor(
        &mut self,
        index: usize,
        tensor: InPlace<'_>,
        lr: f64,
    ) -> Result<()> {
        tensor.check(self.label(), index, self.state_len(index))?;
        self.grow_slots(index + 1);
        let scale = tensor.grad_scale;
        with_slices!(tensor, |p, g| self.update(index, p, g, scale, lr));
        Ok(())
    }
}
