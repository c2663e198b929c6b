//! The plugin side of [`PluginVTable`]: `extern "C"` functions over one strategy instance.
//! The export macros put these into the plugin's table; a plugin author never calls them.
//!
//! Every function runs its body under [`std::panic::catch_unwind`]: a panic becomes
//! [`STATUS_PANIC`] with its message, an error becomes [`STATUS_ERROR`] with the error as
//! JSON. An instance whose call was cut short by a panic is poisoned: later calls fail with
//! an error instead of running on half-updated state.
//!
//! [`PluginVTable`]: crate::PluginVTable
use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nas_core::{NasError, Result, SearchEnv, SearchStrategy, SpaceSpec};

use crate::abi::*;
use crate::buffer::put;
use crate::codec::needs_code;
use crate::info::PluginInfo;
use crate::proxy::HostEnvProxy;
use crate::wire::{encode_error, Wire};

/// One strategy instance behind an opaque handle.
struct Instance {
    strategy: Box<dyn SearchStrategy>,
    /// The method a panic cut short, if any.
    poisoned: Option<&'static str>,
}

/// Unwind payload the proxy uses when a host callback behind an infallible trait method
/// (`spec`, `epoch`, `describe`, ...) fails: the error reaches the host as an error, not as
/// a panic. `resume_unwind` with it does not run the panic hook.
pub(crate) struct HostFailure(pub NasError);

/// The text of a panic payload (`&str` or `String`; anything else is described).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_string()
    }
}

/// Runs `f`, catching panics; writes the error or panic message into `err`. Returns the
/// status and whether `f` was cut short by an unwind.
unsafe fn guarded(err: *mut OwnedBuffer, f: impl FnOnce() -> Result<()>) -> (Status, bool) {
    let (status, message, unwound) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return (STATUS_OK, false),
        Ok(Err(e)) => (STATUS_ERROR, encode_error(&e), false),
        Err(payload) => match payload.downcast::<HostFailure>() {
            Ok(h) => (STATUS_ERROR, encode_error(&h.0), true),
            Err(payload) => (STATUS_PANIC, panic_message(&*payload).into_bytes(), true),
        },
    };
    // SAFETY: the caller passes a valid or null out-parameter.
    unsafe { put(err, OwnedBuffer::from_bytes(message)) };
    (status, unwound)
}

/// Runs `f` on the instance behind `handle`, poisoning it when `f` unwinds.
unsafe fn with_instance(
    handle: *mut c_void,
    method: &'static str,
    err: *mut OwnedBuffer,
    f: impl FnOnce(&mut dyn SearchStrategy) -> Result<()>,
) -> Status {
    let inst = handle as *mut Instance;
    let (status, unwound) = unsafe {
        guarded(err, || {
            if inst.is_null() {
                return Err(NasError::Plugin(format!(
                    "`{method}` called with a null handle"
                )));
            }
            // SAFETY: a non-null handle comes from `create_with` and is not yet destroyed.
            let inst = &mut *inst;
            if let Some(m) = inst.poisoned {
                return Err(NasError::Plugin(format!(
                    "the strategy was interrupted by a panic in `{m}` and cannot be used any more"
                )));
            }
            f(inst.strategy.as_mut())
        })
    };
    if unwound && !inst.is_null() {
        // SAFETY: as above; the closure's borrow has ended.
        unsafe { (*inst).poisoned = Some(method) };
    }
    status
}

/// `create`: decodes the params and calls the author's factory.
///
/// # Safety
/// `params` must be valid for reads; `handle` and `err` valid for writes.
pub unsafe fn create_with<F>(
    params: Bytes,
    handle: *mut *mut c_void,
    err: *mut OwnedBuffer,
    factory: F,
) -> Status
where
    F: FnOnce(&serde_json::Value) -> Result<Box<dyn SearchStrategy>>,
{
    unsafe {
        guarded(err, || {
            if handle.is_null() {
                return Err(NasError::Plugin(
                    "`create` called without a handle slot".into(),
                ));
            }
            let bytes = params.as_slice();
            let value = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::from_wire(bytes)?
            };
            let strategy = factory(&value)?;
            let inst = Box::new(Instance {
                strategy,
                poisoned: None,
            });
            handle.write(Box::into_raw(inst) as *mut c_void);
            Ok(())
        })
        .0
    }
}

/// `info`: writes what the author declared, as JSON.
///
/// # Safety
/// `out` and `err` must be valid for writes.
pub unsafe fn info_with(
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
    info: impl FnOnce() -> PluginInfo,
) -> Status {
    unsafe {
        guarded(err, || {
            put(out, OwnedBuffer::from_bytes(info().to_wire()?));
            Ok(())
        })
        .0
    }
}

/// `destroy`: drops the instance; a panic in its `Drop` is swallowed.
///
/// # Safety
/// `handle` must come from `create` and not be used afterwards.
pub unsafe extern "C" fn destroy(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let inst = unsafe { Box::from_raw(handle as *mut Instance) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(inst)));
}

/// `needs`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn needs(
    handle: *mut c_void,
    out: *mut u32,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        with_instance(handle, "needs", err, |s| {
            let code = needs_code(s.needs());
            if !out.is_null() {
                out.write(code);
            }
            Ok(())
        })
    }
}

/// `init`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn init(
    handle: *mut c_void,
    spec: Bytes,
    seed: u64,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        with_instance(handle, "init", err, |s| {
            let spec = SpaceSpec::from_wire(spec.as_slice())?;
            s.init(&spec, seed)
        })
    }
}

/// Runs a method that takes the environment and writes a JSON answer.
unsafe fn with_env<T: Wire>(
    handle: *mut c_void,
    method: &'static str,
    env: *const HostEnv,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
    f: impl FnOnce(&mut dyn SearchStrategy, &mut dyn SearchEnv) -> Result<T>,
) -> Status {
    unsafe {
        with_instance(handle, method, err, |s| {
            let mut proxy = HostEnvProxy::new(env)?;
            let answer = f(s, &mut proxy)?;
            put(out, OwnedBuffer::from_bytes(answer.to_wire()?));
            Ok(())
        })
    }
}

/// `step`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn step(
    handle: *mut c_void,
    env: *const HostEnv,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe { with_env(handle, "step", env, out, err, |s, e| s.step(e)) }
}

/// `end_epoch`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn end_epoch(
    handle: *mut c_void,
    env: *const HostEnv,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe { with_env(handle, "end_epoch", env, out, err, |s, e| s.end_epoch(e)) }
}

/// `outcome`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn outcome(
    handle: *mut c_void,
    env: *const HostEnv,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe { with_env(handle, "outcome", env, out, err, |s, e| s.outcome(e)) }
}

/// `mixing_weights`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn mixing_weights(
    handle: *mut c_void,
    present: *mut u32,
    weights: *mut OwnedBuffer,
    shape: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        with_instance(handle, "mixing_weights", err, |s| {
            let w = s.mixing_weights();
            if !present.is_null() {
                present.write(w.is_some() as u32);
            }
            if let Some(w) = w {
                put(
                    shape,
                    OwnedBuffer::from_usize(w.0.iter().map(Vec::len).collect()),
                );
                put(weights, OwnedBuffer::from_f32(w.flatten()));
            }
            Ok(())
        })
    }
}

/// `save_state`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn save_state(
    handle: *mut c_void,
    out: *mut OwnedBuffer,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        with_instance(handle, "save_state", err, |s| {
            let state = s.save_state()?;
            put(out, OwnedBuffer::from_bytes(state.to_wire()?));
            Ok(())
        })
    }
}

/// `load_state`.
///
/// # Safety
/// Pointers as documented in [`PluginVTable`](crate::PluginVTable).
pub unsafe extern "C" fn load_state(
    handle: *mut c_void,
    state: Bytes,
    err: *mut OwnedBuffer,
) -> Status {
    unsafe {
        with_instance(handle, "load_state", err, |s| {
            let state = serde_json::Value::from_wire(state.as_slice())?;
            s.load_state(&state)
        })
    }
}
