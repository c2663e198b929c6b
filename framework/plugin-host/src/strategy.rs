//! A plugin's strategy instance seen by the host as an ordinary [`SearchStrategy`].
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use nas_core::{
    EpochReport, MixingWeights, NasError, Needs, Result, SearchEnv, SearchOutcome, SearchStrategy,
    SpaceSpec, StepReport,
};
use nas_plugin_sdk::abi::{OwnedBuffer, Slice, NEEDS_TRAINER};
use nas_plugin_sdk::codec::needs_from_code;
use nas_plugin_sdk::wire::Wire;

use crate::env_export::EnvCtx;
use crate::load::PluginShared;

/// One instance of a plugin strategy, behind the plugin's opaque handle.
pub(crate) struct PluginStrategy {
    plugin: Arc<PluginShared>,
    handle: *mut c_void,
    /// What `needs` answered at creation (returned if a later call fails).
    needs: Needs,
    /// An error from a method that cannot return one (`needs`, `mixing_weights`), returned
    /// by the next method that can.
    pending: Mutex<Option<NasError>>,
}

// SAFETY: the handle is owned by this value alone, and plugin strategies are `Send` (the
// factory a plugin exports returns `Box<dyn SearchStrategy>`, and `SearchStrategy: Send`).
unsafe impl Send for PluginStrategy {}

impl PluginStrategy {
    /// Makes an instance from `params`.
    pub fn create(plugin: Arc<PluginShared>, params: &serde_json::Value) -> Result<Self> {
        let json = params.to_wire()?;
        let vt = plugin.vtable;
        let mut handle: *mut c_void = std::ptr::null_mut();
        plugin.call("create", |err| unsafe {
            (vt.create)(Slice::new(&json), &mut handle, err)
        })?;
        if handle.is_null() {
            return Err(NasError::Plugin(format!(
                "plugin `{}` ({}) returned no instance from `create`",
                plugin.name, plugin.origin
            )));
        }
        let mut s = PluginStrategy {
            plugin,
            handle,
            needs: Needs::Trainer,
            pending: Mutex::new(None),
        };
        // Dropping `s` on error destroys the instance.
        s.needs = s.query_needs()?;
        Ok(s)
    }

    fn query_needs(&self) -> Result<Needs> {
        let mut code = NEEDS_TRAINER;
        let vt = self.plugin.vtable;
        self.plugin.call("needs", |err| unsafe {
            (vt.needs)(self.handle, &mut code, err)
        })?;
        needs_from_code(code)
    }

    fn take_pending(&self) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match p.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn defer(&self, e: NasError) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.get_or_insert(e);
    }

    /// Calls `step`, `end_epoch` or `outcome` with `env` lent as a host table.
    fn with_env<T: Wire>(
        &mut self,
        method: &str,
        env: &mut dyn SearchEnv,
        f: unsafe extern "C" fn(
            *mut c_void,
            *const nas_plugin_sdk::HostEnv,
            *mut OwnedBuffer,
            *mut OwnedBuffer,
        ) -> i32,
    ) -> Result<T> {
        self.take_pending()?;
        let mut ctx = EnvCtx::new(env);
        let table = ctx.table();
        let handle = self.handle;
        let out = self
            .plugin
            .call_out(method, |out, err| unsafe { f(handle, &table, out, err) })?;
        T::from_wire(out.bytes()?)
    }
}

impl Drop for PluginStrategy {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed exactly once.
        unsafe { (self.plugin.vtable.destroy)(self.handle) };
    }
}

impl SearchStrategy for PluginStrategy {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn needs(&self) -> Needs {
        match self.query_needs() {
            Ok(n) => n,
            Err(e) => {
                self.defer(e);
                self.needs
            }
        }
    }

    fn init(&mut self, spec: &SpaceSpec, seed: u64) -> Result<()> {
        self.take_pending()?;
        let json = spec.to_wire()?;
        let (vt, handle) = (self.plugin.vtable, self.handle);
        self.plugin.call("init", |err| unsafe {
            (vt.init)(handle, Slice::new(&json), seed, err)
        })
    }

    fn step(&mut self, env: &mut dyn SearchEnv) -> Result<StepReport> {
        let f = self.plugin.vtable.step;
        self.with_env("step", env, f)
    }

    fn end_epoch(&mut self, env: &mut dyn SearchEnv) -> Result<EpochReport> {
        let f = self.plugin.vtable.end_epoch;
        self.with_env("end_epoch", env, f)
    }

    fn outcome(&mut self, env: &mut dyn SearchEnv) -> Result<SearchOutcome> {
        let f = self.plugin.vtable.outcome;
        self.with_env("outcome", env, f)
    }

    fn mixing_weights(&self) -> Option<MixingWeights> {
        let (vt, handle) = (self.plugin.vtable, self.handle);
        let mut present = 0u32;
        let (mut weights, mut shape) = (OwnedBuffer::EMPTY, OwnedBuffer::EMPTY);
        let r = self.plugin.call("mixing_weights", |err| unsafe {
            (vt.mixing_weights)(handle, &mut present, &mut weights, &mut shape, err)
        });
        let (weights, shape) = (self.plugin.received(weights), self.plugin.received(shape));
        let decoded = r.and_then(|()| {
            if present == 0 {
                return Ok(None);
            }
            let (flat, shape) = (weights.floats()?, shape.sizes()?);
            MixingWeights::from_flat(flat, shape)
                .map(Some)
                .ok_or_else(|| {
                    NasError::Plugin(format!(
                        "plugin `{}` returned {} mixing weights for shape {shape:?}",
                        self.plugin.name,
                        flat.len()
                    ))
                })
        });
        match decoded {
            Ok(w) => w,
            Err(e) => {
                self.defer(e);
                None
            }
        }
    }

    fn save_state(&self) -> Result<serde_json::Value> {
        self.take_pending()?;
        let (vt, handle) = (self.plugin.vtable, self.handle);
        let out = self.plugin.call_out("save_state", |out, err| unsafe {
            (vt.save_state)(handle, out, err)
        })?;
        serde_json::Value::from_wire(out.bytes()?)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.take_pending()?;
        let json = state.to_wire()?;
        let (vt, handle) = (self.plugin.vtable, self.handle);
        self.plugin.call("load_state", |err| unsafe {
            (vt.load_state)(handle, Slice::new(&json), err)
        })
    }
}
