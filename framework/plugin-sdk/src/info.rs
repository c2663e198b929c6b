//! What a plugin declares about itself: the frozen header fields (read before anything of
//! the plugin runs) and the fuller [`PluginInfo`] (returned by its `info` function).
use nas_core::{ComponentInfo, ComponentKind, ParamDoc};
use serde::{Deserialize, Serialize};

use crate::abi::{PluginHeader, PluginVTable, Slice, ABI_VERSION, PLUGIN_MAGIC, PROTOCOL_VERSION};

/// Version of this SDK crate.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of `nas-core` this SDK was built against. The SDK and nas-core are released
/// together from one workspace version (the SDK depends on exactly its own release of
/// nas-core), so this is the SDK's version.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `rustc --version` of the compiler that built this copy of the SDK (and so the crate
/// that uses it), recorded by the build script.
pub const RUSTC_VERSION: &str = env!("NAS_PLUGIN_SDK_RUSTC");

/// Everything a plugin declares: shown by `nas plugin info`, and turned into the
/// [`ComponentInfo`] of its registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginInfo {
    /// Registered strategy name.
    pub name: String,
    /// Version of the plugin crate.
    pub version: String,
    /// One line.
    pub summary: String,
    /// The params with their defaults (a JSON object).
    pub defaults: serde_json::Value,
    /// Documentation of each param.
    pub params: Vec<ParamDoc>,
    /// ABI version it was built with.
    pub abi_version: u32,
    /// Protocol version it was built with.
    pub protocol_version: u32,
    /// SDK version it was built against.
    pub sdk_version: String,
    /// nas-core version it was built against.
    pub core_version: String,
    /// Compiler that built it.
    pub rustc_version: String,
}

impl PluginInfo {
    /// The info of a plugin built with this SDK, from what its author declared.
    pub fn new(
        name: &str,
        version: &str,
        summary: &str,
        defaults: serde_json::Value,
        params: Vec<ParamDoc>,
    ) -> Self {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            summary: summary.to_string(),
            defaults,
            params,
            abi_version: ABI_VERSION,
            protocol_version: PROTOCOL_VERSION,
            sdk_version: SDK_VERSION.to_string(),
            core_version: CORE_VERSION.to_string(),
            rustc_version: RUSTC_VERSION.to_string(),
        }
    }

    /// The registry entry's info; `origin` is where the plugin was loaded from.
    pub fn component_info(&self, origin: &str) -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Strategy,
            name: self.name.clone(),
            summary: self.summary.clone(),
            defaults: self.defaults.clone(),
            params: self.params.clone(),
            origin: origin.to_string(),
        }
    }
}

/// The header of a plugin built with this SDK (used by the export macros).
pub const fn header(name: &'static str, version: &'static str) -> PluginHeader {
    PluginHeader {
        magic: PLUGIN_MAGIC,
        abi_version: ABI_VERSION,
        protocol_version: PROTOCOL_VERSION,
        vtable_size: std::mem::size_of::<PluginVTable>(),
        name: Slice::text(name),
        version: Slice::text(version),
        sdk_version: Slice::text(SDK_VERSION),
        core_version: Slice::text(CORE_VERSION),
        rustc_version: Slice::text(RUSTC_VERSION),
    }
}
