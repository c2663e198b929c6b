//! The host side of [`HostEnv`]: the runner's [`SearchEnv`] lent to a plugin for one call
//! as a table of `extern "C"` callbacks. Every callback catches panics in the host (a
//! trainer bug must not unwind into the plugin) and reports errors with their variant.
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nas_core::{
    Architecture, Estimator, MixingWeights, NasError, Result, SearchEnv, SupernetTrainer,
};
use nas_plugin_sdk::abi::*;
use nas_plugin_sdk::buffer::{free_buffer, put};
use nas_plugin_sdk::codec::{decode_drive, split_from_code};
use nas_plugin_sdk::guest::panic_message;
use nas_plugin_sdk::wire::{encode_error, Wire};

/// The context behind [`HostEnv::ctx`] for one plugin call.
pub(crate) struct EnvCtx<'a> {
    env: &'a mut dyn SearchEnv,
}

impl<'a> EnvCtx<'a> {
    /// Lends `env`.
    pub fn new(env: &'a mut dyn SearchEnv) -> Self {
        EnvCtx { env }
    }

    /// The table; valid while `self` is neither moved nor dropped.
    pub fn table(&mut self) -> HostEnv {
        HostEnv {
            size: std::mem::size_of::<HostEnv>(),
            ctx: self as *mut EnvCtx<'a> as *mut c_void,
            spec,
            has_trainer,
            has_estimator,
            epoch,
            derive,
            cost,
            describe,
            steps_per_epoch,
            batch_size,
            weight_lr,
            begin_epoch,
            train_weights,
            arch_gradient,
            evaluate,
            estimate,
            queries,
            free_buffer,
        }
    }

    fn trainer(&mut self) -> Result<&mut dyn SupernetTrainer> {
        self.env.trainer().ok_or_else(|| {
            NasError::Strategy(
                "this run has no supernet trainer, but the strategy asked for one".into(),
            )
        })
    }

    fn estimator(&mut self) -> Result<&mut dyn Estimator> {
        self.env.estimator().ok_or_else(|| {
            NasError::Strategy("this run has no estimator, but the strategy asked for one".into())
        })
    }
}

/// Runs a callback body on the context, catching panics.
unsafe fn guard(
    ctx: *mut c_void,
    err: *mut OwnedBuffer,
    f: impl FnOnce(&mut EnvCtx<'_>) -> Result<()>,
) -> Status {
    let r = catch_unwind(AssertUnwindSafe(|| {
        if ctx.is_null() {
            return Err(NasError::Plugin(
                "host callback called without its context".into(),
            ));
        }
        // SAFETY: `ctx` is the `EnvCtx` whose table the plugin was given for this call.
        f(unsafe { &mut *(ctx as *mut EnvCtx<'_>) })
    }));
    let (status, message) = match r {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(e)) => (STATUS_ERROR, encode_error(&e)),
        Err(p) => (STATUS_PANIC, panic_message(&*p).into_bytes()),
    };
    // SAFETY: the plugin passes a valid or null out-parameter.
    unsafe { put(err, OwnedBuffer::from_bytes(message)) };
    status
}

/// Writes a plain value into an out-pointer that may be null.
unsafe fn write<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: the plugin passes a valid or null out-parameter.
        unsafe { out.write(v) };
    }
}

/// Runs a callback that answers one plain value into `out`.
unsafe fn answer<T>(
    ctx: *mut c_void,
    out: *mut T,
    err: *mut OwnedBuffer,
    f: impl FnOnce(&mut EnvCtx<'_>) -> Result<T>,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let v = f(c)?;
            write(out, v);
            Ok(())
        })
    }
}

unsafe fn arch_of(b: Bytes) -> Result<Architecture> {
    // SAFETY: the plugin passes a valid slice for the duration of the call.
    Architecture::from_wire(unsafe { b.as_slice() })
}

unsafe extern "C" fn spec(
    ctx: *mut c_void,
    role: u32,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let json = match role {
                ROLE_ENV => c.env.spec().to_wire()?,
                ROLE_TRAINER => c.trainer()?.spec().to_wire()?,
                ROLE_ESTIMATOR => c.estimator()?.spec().to_wire()?,
                r => return Err(NasError::Plugin(format!("unknown spec role {r}"))),
            };
            put(out, OwnedBuffer::from_bytes(json));
            Ok(())
        })
    }
}

unsafe extern "C" fn has_trainer(ctx: *mut c_void) -> u32 {
    let mut has = false;
    // A panic here reads as "no trainer"; the strategy then fails with a clear error.
    unsafe {
        guard(ctx, std::ptr::null_mut(), |c| {
            has = c.env.trainer().is_some();
            Ok(())
        })
    };
    has as u32
}

unsafe extern "C" fn has_estimator(ctx: *mut c_void) -> u32 {
    let mut has = false;
    unsafe {
        guard(ctx, std::ptr::null_mut(), |c| {
            has = c.env.estimator().is_some();
            Ok(())
        })
    };
    has as u32
}

unsafe extern "C" fn epoch(
    ctx: *mut c_void,
    epoch: *mut usize,
    total: *mut usize,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let (e, t) = c.env.epoch();
            write(epoch, e);
            write(total, t);
            Ok(())
        })
    }
}

unsafe extern "C" fn derive(
    ctx: *mut c_void,
    weights: Floats,
    shape: Sizes,
    mode: Bytes,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let (flat, shape) = (weights.as_slice(), shape.as_slice());
            let w = MixingWeights::from_flat(flat, shape).ok_or_else(|| {
                NasError::Strategy(format!(
                    "derive: {} mixing weights do not fit shape {shape:?}",
                    flat.len()
                ))
            })?;
            let mode = std::str::from_utf8(mode.as_slice())
                .map_err(|e| NasError::Strategy(format!("derive: mode is not UTF-8: {e}")))?;
            let arch = c.env.derive(&w, mode)?;
            put(out, OwnedBuffer::from_bytes(arch.to_wire()?));
            Ok(())
        })
    }
}

unsafe extern "C" fn cost(
    ctx: *mut c_void,
    arch: Bytes,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let cost = c.env.cost(&arch_of(arch)?)?;
            put(out, OwnedBuffer::from_bytes(cost.to_wire()?));
            Ok(())
        })
    }
}

unsafe extern "C" fn describe(
    ctx: *mut c_void,
    arch: Bytes,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let text = c.env.describe(&arch_of(arch)?);
            put(out, OwnedBuffer::from_bytes(text.into_bytes()));
            Ok(())
        })
    }
}

unsafe extern "C" fn steps_per_epoch(
    ctx: *mut c_void,
    out: *mut usize,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe { answer(ctx, out, err, |c| Ok(c.trainer()?.steps_per_epoch())) }
}

unsafe extern "C" fn batch_size(
    ctx: *mut c_void,
    out: *mut usize,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe { answer(ctx, out, err, |c| Ok(c.trainer()?.batch_size())) }
}

unsafe extern "C" fn weight_lr(ctx: *mut c_void, out: *mut f64, err: *mut OwnedBuffer) -> Status {
    unsafe { answer(ctx, out, err, |c| Ok(c.trainer()?.weight_lr())) }
}

unsafe extern "C" fn begin_epoch(ctx: *mut c_void, epoch: usize, err: *mut OwnedBuffer) -> Status {
    unsafe { guard(ctx, err, |c| c.trainer()?.begin_epoch(epoch)) }
}

unsafe extern "C" fn train_weights(
    ctx: *mut c_void,
    drive: *const DriveView,
    out: *mut StepStatsC,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let drive = decode_drive(drive.as_ref().ok_or_else(no_drive)?)?;
            let stats = c.trainer()?.train_weights(&drive)?;
            write(out, stats.into());
            Ok(())
        })
    }
}

fn no_drive() -> NasError {
    NasError::Plugin("trainer call without a drive".into())
}

unsafe extern "C" fn arch_gradient(
    ctx: *mut c_void,
    drive: *const DriveView,
    order: GradOrderC,
    out: *mut ArchGradC,
    grads: *mut OwnedBuffer,
    shape: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let drive = decode_drive(drive.as_ref().ok_or_else(no_drive)?)?;
            let g = c.trainer()?.arch_gradient(&drive, order.try_into()?)?;
            let first: Vec<usize> = g
                .grads
                .first()
                .map(|w| w.0.iter().map(Vec::len).collect())
                .unwrap_or_default();
            let mut flat = Vec::with_capacity(g.grads.len() * first.iter().sum::<usize>());
            for (i, w) in g.grads.iter().enumerate() {
                if w.0.len() != first.len() || w.0.iter().zip(&first).any(|(r, &n)| r.len() != n) {
                    return Err(NasError::Tensor(format!(
                        "arch gradient {i} differs in shape from gradient 0"
                    )));
                }
                flat.extend(w.0.iter().flatten());
            }
            write(
                out,
                ArchGradC {
                    loss: g.loss,
                    accuracy: g.accuracy,
                    samples: g.grads.len(),
                    has_condition_grad: g.condition_grad.is_some() as u32,
                    condition_grad: g.condition_grad.unwrap_or(0.0),
                },
            );
            put(grads, OwnedBuffer::from_f32(flat));
            put(shape, OwnedBuffer::from_usize(first));
            Ok(())
        })
    }
}

unsafe extern "C" fn evaluate(
    ctx: *mut c_void,
    drive: *const DriveView,
    split: u32,
    max_batches: usize,
    out: *mut EvalStatsC,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let drive = decode_drive(drive.as_ref().ok_or_else(no_drive)?)?;
            let max = (max_batches != NO_BATCH_LIMIT).then_some(max_batches);
            let stats = c
                .trainer()?
                .evaluate(&drive, split_from_code(split)?, max)?;
            write(out, stats.into());
            Ok(())
        })
    }
}

unsafe extern "C" fn estimate(
    ctx: *mut c_void,
    arch: Bytes,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        guard(ctx, err, |c| {
            let score = c.estimator()?.estimate(&arch_of(arch)?)?;
            put(out, OwnedBuffer::from_bytes(score.to_wire()?));
            Ok(())
        })
    }
}

unsafe extern "C" fn queries(ctx: *mut c_void, out: *mut u64, err: *mut OwnedBuffer) -> Status {
    unsafe { answer(ctx, out, err, |c| Ok(c.estimator()?.queries())) }
}
