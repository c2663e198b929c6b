//! Checks a plugin's frozen header against this host before anything else of the plugin is
//! read or run, and words the mismatch as a side-by-side table of host and plugin fields.
use nas_core::{NasError, Result};
use nas_plugin_sdk::abi::{PluginHeader, PluginVTable, PLUGIN_MAGIC};
use nas_plugin_sdk::info::{CORE_VERSION, RUSTC_VERSION, SDK_VERSION};
use nas_plugin_sdk::{Bytes, ABI_VERSION, PROTOCOL_VERSION};

/// Longest header string read from a plugin; anything longer is shown as unreadable.
const MAX_FIELD: usize = 1024;

/// The header fields of one side, as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeaderFields {
    pub abi_version: u32,
    pub protocol_version: u32,
    pub vtable_size: usize,
    pub name: String,
    pub version: String,
    pub sdk_version: String,
    pub core_version: String,
    pub rustc_version: String,
}

impl HeaderFields {
    /// This host's side.
    pub fn host() -> Self {
        HeaderFields {
            abi_version: ABI_VERSION,
            protocol_version: PROTOCOL_VERSION,
            vtable_size: std::mem::size_of::<PluginVTable>(),
            name: "-".into(),
            version: "-".into(),
            sdk_version: SDK_VERSION.into(),
            core_version: CORE_VERSION.into(),
            rustc_version: RUSTC_VERSION.into(),
        }
    }

    /// A plugin's side, read from its frozen header.
    ///
    /// # Safety
    /// `h` must be a header with [`PLUGIN_MAGIC`] whose strings point to readable memory.
    pub unsafe fn plugin(h: &PluginHeader) -> Self {
        // SAFETY: guaranteed by the caller.
        unsafe {
            HeaderFields {
                abi_version: h.abi_version,
                protocol_version: h.protocol_version,
                vtable_size: h.vtable_size,
                name: text(h.name),
                version: text(h.version),
                sdk_version: text(h.sdk_version),
                core_version: text(h.core_version),
                rustc_version: text(h.rustc_version),
            }
        }
    }
}

/// A header string, lossily decoded and bounded in length.
unsafe fn text(b: Bytes) -> String {
    if b.len > MAX_FIELD {
        return format!("(unreadable: {} bytes)", b.len);
    }
    // SAFETY: guaranteed by the caller of `HeaderFields::plugin`.
    String::from_utf8_lossy(unsafe { b.as_slice() }).into_owned()
}

/// Checks the header of the table at `vtable`; returns the plugin's fields when it fits.
///
/// # Safety
/// `vtable` must be null or point to at least a readable [`PluginHeader`].
pub(crate) unsafe fn check_header(
    vtable: *const PluginVTable,
    origin: &str,
) -> Result<HeaderFields> {
    if vtable.is_null() {
        return Err(NasError::Plugin(format!(
            "`{origin}` is not a nas plugin: its entry point returned no table"
        )));
    }
    // SAFETY: the header is the table's first field, and the caller vouches for it.
    let header: &PluginHeader = unsafe { &(*vtable).header };
    if header.magic != PLUGIN_MAGIC {
        return Err(NasError::Plugin(format!(
            "`{origin}` is not a nas plugin: its entry point's table does not start with the \
             nas plugin marker"
        )));
    }
    // SAFETY: the magic says this is a nas plugin header, whose layout is frozen.
    let plugin = unsafe { HeaderFields::plugin(header) };
    let host = HeaderFields::host();
    if plugin.abi_version != host.abi_version
        || plugin.protocol_version != host.protocol_version
        || plugin.vtable_size != host.vtable_size
    {
        return Err(NasError::Plugin(mismatch_message(origin, &host, &plugin)));
    }
    if plugin.name.trim().is_empty() {
        return Err(NasError::Plugin(format!(
            "plugin `{origin}` declares an empty strategy name"
        )));
    }
    Ok(plugin)
}

/// The side-by-side table shown when a plugin does not fit.
pub(crate) fn mismatch_message(origin: &str, host: &HeaderFields, plugin: &HeaderFields) -> String {
    let rows: [(&str, String, String); 8] = [
        (
            "abi_version",
            host.abi_version.to_string(),
            plugin.abi_version.to_string(),
        ),
        (
            "protocol_version",
            host.protocol_version.to_string(),
            plugin.protocol_version.to_string(),
        ),
        (
            "vtable_size",
            host.vtable_size.to_string(),
            plugin.vtable_size.to_string(),
        ),
        ("strategy", host.name.clone(), plugin.name.clone()),
        ("version", host.version.clone(), plugin.version.clone()),
        (
            "nas-plugin-sdk",
            host.sdk_version.clone(),
            plugin.sdk_version.clone(),
        ),
        (
            "nas-core",
            host.core_version.clone(),
            plugin.core_version.clone(),
        ),
        (
            "rustc",
            host.rustc_version.clone(),
            plugin.rustc_version.clone(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    let mut s = format!(
        "plugin `{origin}` does not fit this host (nothing of it was run):\n  {:w0$}  {:w1$}  plugin\n",
        "field", "host"
    );
    for (i, (k, h, p)) in rows.iter().enumerate() {
        // Only the first three rows must agree; the rest are context.
        let mark = if i < 3 && h != p {
            "   <-- differs"
        } else {
            ""
        };
        s.push_str(&format!("  {k:w0$}  {h:w1$}  {p}{mark}\n"));
    }
    if host.protocol_version != plugin.protocol_version {
        s.push_str(&format!(
            "the plugin speaks call protocol {}, this host speaks protocol {} (see \
             nas_plugin_sdk::PROTOCOL_VERSION for what changed)\n",
            plugin.protocol_version, host.protocol_version
        ));
    }
    s.push_str(&format!(
        "rebuild the plugin against nas-plugin-sdk {} (ABI {}, protocol {}) with the host's \
         toolchain",
        host.sdk_version, host.abi_version, host.protocol_version
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_table_shows_both_sides_and_marks_the_difference() {
        let host = HeaderFields::host();
        let mut plugin = host.clone();
        plugin.abi_version = 999;
        plugin.name = "odd".into();
        let m = mismatch_message("/p/libodd.so", &host, &plugin);
        let abi_line = m.lines().find(|l| l.contains("abi_version")).unwrap();
        assert!(abi_line.contains(&ABI_VERSION.to_string()), "{m}");
        assert!(
            abi_line.contains("999") && abi_line.contains("differs"),
            "{m}"
        );
        let proto_line = m.lines().find(|l| l.contains("protocol_version")).unwrap();
        assert!(!proto_line.contains("differs"), "{m}");
        assert!(m.contains("/p/libodd.so") && m.contains("odd"), "{m}");
    }
}
