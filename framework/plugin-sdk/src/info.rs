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

/// The text `nas plugin info` prints: name and version, summary, params with their
/// defaults and docs, and the versions the plugin was built with.
impl std::fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "strategy  {} {}", self.name, self.version)?;
        if !self.summary.is_empty() {
            writeln!(f, "summary   {}", self.summary)?;
        }
        writeln!(
            f,
            "built     nas-plugin-sdk {}, nas-core {}, ABI {}, protocol {}, {}",
            self.sdk_version,
            self.core_version,
            self.abi_version,
            self.protocol_version,
            self.rustc_version
        )?;
        if self.params.is_empty() && self.defaults.as_object().is_none_or(|m| m.is_empty()) {
            return write!(f, "params    (none)");
        }
        write!(f, "params")?;
        let mut names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        if let Some(m) = self.defaults.as_object() {
            for k in m.keys() {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
        for name in names {
            let default = self
                .defaults
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(required)".into());
            let doc = self
                .params
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.doc.as_str())
                .unwrap_or("");
            write!(f, "\n  {name} = {default}")?;
            if !doc.is_empty() {
                write!(f, "  # {doc}")?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_lists_params_with_defaults_and_docs() {
        let info = PluginInfo::new(
            "ls",
            "1.2.3",
            "Local search",
            serde_json::json!({ "max_queries": 150, "extra": null }),
            vec![ParamDoc::new("max_queries", "queries before stopping")],
        );
        let text = info.to_string();
        let want = format!(
            "strategy  ls 1.2.3\nsummary   Local search\nbuilt     nas-plugin-sdk {SDK_VERSION}, \
             nas-core {CORE_VERSION}, ABI {ABI_VERSION}, protocol {PROTOCOL_VERSION}, \
             {RUSTC_VERSION}\nparams\n  max_queries = 150  # queries before stopping\n  \
             extra = null"
        );
        assert_eq!(text, want);
        let bare = PluginInfo::new("x", "0", "", serde_json::json!({}), vec![]);
        assert!(bare.to_string().ends_with("params    (none)"));
    }
}
