//! Loading a plugin: open the shared library, find the entry point, check the header, read
//! the declared info. A library, once opened, is never closed (DESIGN.md section 3): code
//! and statics of a plugin may be referenced by strategies until the process ends.
use std::path::Path;
use std::sync::Arc;

use libloading::Library;
use nas_core::{ComponentInfo, NasError, Result, SearchStrategy};
use nas_plugin_sdk::abi::{
    EntryFn, OwnedBuffer, PluginVTable, Status, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use nas_plugin_sdk::buffer::Received;
use nas_plugin_sdk::wire::{decode_error, Wire};
use nas_plugin_sdk::{PluginInfo, ENTRY_SYMBOL};

use crate::check::check_header;
use crate::register::PluginFactory;
use crate::strategy::PluginStrategy;

/// What every instance of a plugin shares: its table and where it came from.
pub(crate) struct PluginShared {
    pub vtable: &'static PluginVTable,
    pub name: String,
    pub origin: String,
}

impl PluginShared {
    /// Takes a buffer the plugin wrote.
    pub fn received(&self, b: OwnedBuffer) -> Received {
        // SAFETY: every buffer handed back by a plugin function was made by that plugin.
        unsafe { Received::new(b, self.vtable.free_buffer) }
    }

    /// Calls a plugin function with a fresh `err` slot and turns its status into a result.
    /// Errors keep their variant; a panic becomes [`NasError::Plugin`] naming the plugin.
    pub fn call(&self, method: &str, f: impl FnOnce(*mut OwnedBuffer) -> Status) -> Result<()> {
        let mut err = OwnedBuffer::EMPTY;
        let status = f(&mut err);
        let err = self.received(err);
        match status {
            STATUS_OK => Ok(()),
            STATUS_ERROR => Err(match decode_error(err.bytes().unwrap_or_default()) {
                NasError::Plugin(m) => NasError::Plugin(format!(
                    "plugin `{}` ({}) failed in `{method}`: {m}",
                    self.name, self.origin
                )),
                e => e,
            }),
            STATUS_PANIC => Err(NasError::Plugin(format!(
                "plugin `{}` ({}) panicked in `{method}`: {}",
                self.name,
                self.origin,
                err.text_lossy()
            ))),
            s => Err(NasError::Plugin(format!(
                "plugin `{}` ({}) returned unknown status {s} from `{method}`",
                self.name, self.origin
            ))),
        }
    }

    /// Calls a plugin function that writes one buffer into `out`.
    pub fn call_out(
        &self,
        method: &str,
        f: impl FnOnce(*mut OwnedBuffer, *mut OwnedBuffer) -> Status,
    ) -> Result<Received> {
        let mut out = OwnedBuffer::EMPTY;
        let r = self.call(method, |err| f(&mut out, err));
        let out = self.received(out);
        r.map(|()| out)
    }
}

/// A loaded, checked plugin. Cheap to clone; every clone shares the library.
#[derive(Clone)]
pub struct LoadedPlugin {
    shared: Arc<PluginShared>,
    info: Arc<PluginInfo>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.shared.name)
            .field("origin", &self.shared.origin)
            .finish()
    }
}

/// Loads the strategy plugin at `path`.
///
/// Fails with [`NasError::Plugin`] and a message that says what is wrong when the file
/// does not exist, is not a loadable shared library, exports no `nas_plugin_entry`, or was
/// built for another ABI or protocol (a table of host and plugin fields; nothing of the
/// plugin runs beyond its trivial entry point). The library is never unloaded.
pub fn load_plugin(path: impl AsRef<Path>) -> Result<LoadedPlugin> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| {
        NasError::Plugin(if e.kind() == std::io::ErrorKind::NotFound {
            format!("plugin file `{}` does not exist", path.display())
        } else {
            format!("cannot read plugin file `{}`: {e}", path.display())
        })
    })?;
    if !meta.is_file() {
        return Err(NasError::Plugin(format!(
            "plugin path `{}` is not a file (give the path of the built library, e.g. \
             target/release/libmy_plugin.so)",
            path.display()
        )));
    }
    let full = std::fs::canonicalize(path).map_err(|e| {
        NasError::Plugin(format!(
            "cannot resolve plugin path `{}`: {e}",
            path.display()
        ))
    })?;
    let origin = full.display().to_string();
    // SAFETY: opening a library runs its initialisers; a plugin is trusted code by design.
    let lib = unsafe { Library::new(&full) }.map_err(|e| {
        NasError::Plugin(format!(
            "`{origin}` is not a shared library that can be loaded: {e}"
        ))
    })?;
    // Never unloaded: strategies made from it may live until the process ends.
    let lib: &'static Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is the SDK's entry-point type; checked below by the magic.
    let entry = unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
        NasError::Plugin(format!(
            "`{origin}` is not a nas plugin: it exports no `{ENTRY_SYMBOL}` symbol (a plugin \
             crate has `crate-type = [\"cdylib\"]` and one `nas_plugin_sdk::export_strategy!` line)"
        ))
    })?;
    // SAFETY: the entry point of an SDK plugin only returns the address of a static.
    let vtable = unsafe { entry() };
    // SAFETY: the pointer comes from the plugin's entry point; the header is checked first.
    unsafe { load_from_vtable(vtable, &origin) }
}

/// Checks and wraps a plugin table that is already in this process (statically linked,
/// or obtained by other means); `origin` names it in messages. [`load_plugin`] ends here.
///
/// # Safety
/// `vtable` must be null or point to a table that lives for the rest of the process and
/// whose header, when it carries the nas plugin marker, is a valid [`PluginHeader`]
/// (frozen layout); the rest of the table is only read after the versions match.
///
/// [`PluginHeader`]: nas_plugin_sdk::PluginHeader
pub unsafe fn load_from_vtable(vtable: *const PluginVTable, origin: &str) -> Result<LoadedPlugin> {
    // SAFETY: guaranteed by the caller.
    let fields = unsafe { check_header(vtable, origin) }?;
    // SAFETY: checked header: this is a table of our ABI, alive for the process.
    let vtable: &'static PluginVTable = unsafe { &*vtable };
    let shared = Arc::new(PluginShared {
        vtable,
        name: fields.name.clone(),
        origin: origin.to_string(),
    });
    let out = shared.call_out("info", |out, err| unsafe { (vtable.info)(out, err) })?;
    let info = PluginInfo::from_wire(out.bytes()?)?;
    if info.name != fields.name {
        return Err(NasError::Plugin(format!(
            "plugin `{origin}` declares the name `{}` in its header but `{}` in its info",
            fields.name, info.name
        )));
    }
    Ok(LoadedPlugin {
        shared,
        info: Arc::new(info),
    })
}

impl LoadedPlugin {
    /// What the plugin declares (name, version, summary, params, versions it was built with).
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The strategy name it registers.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where it was loaded from (the canonical path of the library).
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Its registry entry: kind strategy, origin = the library path.
    pub fn component_info(&self) -> ComponentInfo {
        self.info.component_info(&self.shared.origin)
    }

    /// Makes a strategy instance from `params` (`null` = all defaults). Bad params fail with
    /// the plugin's own error (usually [`NasError::InvalidParams`]).
    pub fn create(&self, params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
        Ok(Box::new(PluginStrategy::create(
            self.shared.clone(),
            params,
        )?))
    }

    /// A factory that makes instances of this plugin, for a registry.
    pub fn factory(&self) -> PluginFactory {
        PluginFactory::new(self.clone())
    }
}
