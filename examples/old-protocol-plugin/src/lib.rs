//! Test fixture: a strategy plugin whose header declares call protocol 2, the protocol
//! before the per-example selected drive (`DRIVE_SELECTED_PER_SAMPLE`, protocol 3; protocol
//! 2 added the binary-gate drive). Its table layout is the
//! current one (same ABI), so only the protocol differs: the host must refuse to load it,
//! name both protocol versions, and never call anything in its table.
#![deny(missing_docs)]

use nas_core::{NasError, Result, SearchStrategy};
use nas_plugin_sdk::{PluginHeader, PluginVTable};

/// The protocol this fixture claims to speak: the one before the per-example selected drive.
pub const OLD_PROTOCOL: u32 = 2;

fn make(_params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
    Err(NasError::Plugin(
        "old-protocol-plugin: the host created a strategy from a plugin of an old protocol".into(),
    ))
}

/// The table the SDK would build...
const TABLE: PluginVTable = nas_plugin_sdk::strategy_vtable!(
    make,
    "old_protocol",
    summary = "A plugin built for call protocol 2 (test fixture)"
);

/// ...as a plugin built against the protocol-2 SDK declares it.
static OLD: PluginVTable = PluginVTable {
    header: PluginHeader {
        protocol_version: OLD_PROTOCOL,
        ..TABLE.header
    },
    ..TABLE
};

/// The entry point, as `export_strategy!` would write it.
#[unsafe(no_mangle)]
pub extern "C" fn nas_plugin_entry() -> *const PluginVTable {
    &OLD
}
