//! Test fixture: a strategy plugin whose header declares ABI version
//! `ABI_VERSION + 1000`. The host must refuse to load it, print host and plugin fields
//! side by side, and never call anything in its table (its factory would fail loudly).
#![deny(missing_docs)]

use nas_core::{NasError, Result, SearchStrategy};
use nas_plugin_sdk::{PluginHeader, PluginVTable, ABI_VERSION};

fn make(_params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    Err(NasError::Plugin(
        "wrong-abi-plugin: the host created a strategy from a plugin of another ABI".into(),
    ))
}

/// The table the SDK would build...
const TABLE: PluginVTable = nas_plugin_sdk::strategy_vtable!(
    make,
    "wrong_abi",
    summary = "A plugin built for another ABI (test fixture)"
);

/// ...with the ABI number changed.
static WRONG: PluginVTable = PluginVTable {
    header: PluginHeader {
        abi_version: ABI_VERSION + 1000,
        ..TABLE.header
    },
    ..TABLE
};

/// The entry point, as `export_strategy!` would write it.
#[unsafe(no_mangle)]
pub extern "C" fn nas_plugin_entry() -> *const PluginVTable {
    &WRONG
}
