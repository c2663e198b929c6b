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
pub(crate) use with_slices;
