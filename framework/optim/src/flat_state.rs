//! The optimizers' per-parameter state as plain `f64` buffers: what a step taken elsewhere
//! (nas-trainer's weight step on a GPU, one launch over every parameter with the state kept in
//! device memory) takes over from an optimizer and hands back, so that checkpoints, resumption
//! and the host path see exactly the state the host steps would have left.
use nas_core::{NasError, Result};

use crate::adam::{Adam, AdamW};
use crate::optimizer::grow;
use crate::{RmsProp, Sgd};

/// One parameter's state: its step count and the optimizer's buffers, each as long as the
/// parameter, in the order of [`FlatState::buffer_names`].
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSlot {
    /// Steps taken (Adam's bias corrections read it; SGD keeps none: 0).
    pub step: u64,
    /// The buffers.
    pub buffers: Vec<Vec<f64>>,
}

/// An optimizer whose per-parameter state is a [`FlatSlot`]: [`Sgd`], [`Adam`], [`AdamW`],
/// [`RmsProp`].
pub trait FlatState {
    /// The names of the buffers this configuration keeps per parameter, in order (SGD:
    /// `momentum_buffer` with momentum, none without; Adam: `exp_avg`, `exp_avg_sq`; RMSprop:
    /// `square_avg`, then `grad_avg` when centered, then `momentum_buffer` with momentum).
    fn buffer_names(&self) -> Vec<&'static str>;

    /// Parameter `index`'s state, `None` before its first step (or, for SGD without
    /// momentum, always).
    fn flat_slot(&self, index: usize) -> Option<FlatSlot>;

    /// Replaces parameter `index`'s state (`None`: not stepped yet, the next step starts it),
    /// growing the slots to `index + 1` as a step would. A slot whose buffers are not
    /// [`FlatState::buffer_names`] in number, or not of one length, is refused and nothing
    /// changes.
    fn set_flat_slot(&mut self, index: usize, slot: Option<FlatSlot>) -> Result<()>;
}

/// Refuses a slot that does not have `want` buffers of one length.
fn check(label: &str, index: usize, slot: &FlatSlot, want: usize) -> Result<()> {
    if slot.buffers.len() != want {
        return Err(NasError::Other(format!(
            "optimizer {label}: a state of {} buffers for parameter {index}, this configuration keeps {want}",
            slot.buffers.len()
        )));
    }
    if let Some(first) = slot.buffers.first() {
        if slot.buffers.iter().any(|b| b.len() != first.len()) {
            return Err(NasError::Other(format!(
                "optimizer {label}: the state buffers of parameter {index} differ in length"
            )));
        }
    }
    Ok(())
}

impl FlatState for Sgd {
    fn buffer_names(&self) -> Vec<&'static str> {
        if self.params().momentum != 0.0 {
            vec!["momentum_buffer"]
        } else {
            Vec::new()
        }
    }

    fn flat_slot(&self, index: usize) -> Option<FlatSlot> {
        self.momentum_buffer(index).map(|b| FlatSlot {
            step: 0,
            buffers: vec![b.to_vec()],
        })
    }

    fn set_flat_slot(&mut self, index: usize, slot: Option<FlatSlot>) -> Result<()> {
        let buffer = match slot {
            Some(s) => {
                check("sgd", index, &s, self.buffer_names().len())?;
                s.buffers.into_iter().next()
            }
            None => None,
        };
        self.set_momentum_buffer(index, buffer);
        Ok(())
    }
}

macro_rules! flat_adam {
    ($ty:ty) => {
        impl FlatState for $ty {
            fn buffer_names(&self) -> Vec<&'static str> {
                vec!["exp_avg", "exp_avg_sq"]
            }

            fn flat_slot(&self, index: usize) -> Option<FlatSlot> {
                self.core_slot(index).map(|(step, m, v)| FlatSlot {
                    step,
                    buffers: vec![m.to_vec(), v.to_vec()],
                })
            }

            fn set_flat_slot(&mut self, index: usize, slot: Option<FlatSlot>) -> Result<()> {
                let state = match slot {
                    Some(s) => {
                        check(self.core_name(), index, &s, 2)?;
                        let mut b = s.buffers.into_iter();
                        match (b.next(), b.next()) {
                            (Some(m), Some(v)) => Some((s.step, m, v)),
                            _ => None,
                        }
                    }
                    None => None,
                };
                self.set_core_slot(index, state);
                Ok(())
            }
        }
    };
}

flat_adam!(Adam);
flat_adam!(AdamW);

impl FlatState for RmsProp {
    fn buffer_names(&self) -> Vec<&'static str> {
        let p = self.params();
        let mut names = vec!["square_avg"];
        if p.centered {
            names.push("grad_avg");
        }
        if p.momentum > 0.0 {
            names.push("momentum_buffer");
        }
        names
    }

    fn flat_slot(&self, index: usize) -> Option<FlatSlot> {
        let (step, square_avg, grad_avg, momentum_buffer) = self.slot_parts(index)?;
        let mut buffers = vec![square_avg.to_vec()];
        buffers.extend(grad_avg.map(<[f64]>::to_vec));
        buffers.extend(momentum_buffer.map(<[f64]>::to_vec));
        Some(FlatSlot { step, buffers })
    }

    fn set_flat_slot(&mut self, index: usize, slot: Option<FlatSlot>) -> Result<()> {
        let state = match slot {
            Some(s) => {
                check("rmsprop", index, &s, self.buffer_names().len())?;
                let p = self.params();
                let (centered, momentum) = (p.centered, p.momentum > 0.0);
                let mut b = s.buffers.into_iter();
                let square_avg = b.next().unwrap_or_default();
                let grad_avg = if centered { b.next() } else { None };
                let momentum_buffer = if momentum { b.next() } else { None };
                Some((s.step, square_avg, grad_avg, momentum_buffer))
            }
            None => None,
        };
        self.set_slot_parts(index, state);
        Ok(())
    }
}

/// Grows `slots` to `index + 1` and sets slot `index`.
pub(crate) fn put<T>(slots: &mut Vec<Option<T>>, index: usize, value: Option<T>) {
    grow(slots, index + 1);
    slots[index] = value;
}
