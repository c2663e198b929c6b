//! # nas-plugin-host
//!
//! Loads strategy plugins built with `nas-plugin-sdk` from shared libraries, checks them,
//! and wraps each as an ordinary [`nas_core::SearchStrategy`] for the runner
//! (DESIGN.md section 3).
//!
//! ```no_run
//! use nas_core::{ComponentKind, Registry};
//! use nas_plugin_host::{load_plugin, register_plugin, BoxedStrategyFactory};
//!
//! # fn main() -> nas_core::Result<()> {
//! let mut strategies: Registry<BoxedStrategyFactory> = Registry::new(ComponentKind::Strategy);
//! let plugin = load_plugin("target/release/libcustom_strategy_plugin.so")?;
//! register_plugin(&mut strategies, &plugin)?;
//! let factory = strategies.get(plugin.name())?;
//! let strategy = factory(&serde_json::json!({"max_queries": 50}))?;
//! # let _ = strategy; Ok(()) }
//! ```
//!
//! ## Module map
//! * [`load`](crate::load_plugin): open the library, find the entry point, check the
//!   header (ABI, protocol, table size; on a mismatch a table of host and plugin fields),
//!   read the declared info. Libraries are never unloaded.
//! * `strategy`: the [`nas_core::SearchStrategy`] wrapper over a plugin instance. A panic
//!   in the plugin comes back as [`nas_core::NasError::Plugin`] naming the plugin and
//!   carrying the panic message; other errors keep their variant.
//! * `env_export`: the runner's [`nas_core::SearchEnv`] lent to the plugin as C callbacks.
//! * [`register`](crate::register_plugin): entries in the runner's strategy registry.
#![deny(missing_docs)]

mod check;
mod env_export;
mod load;
mod register;
mod strategy;

pub use load::{load_from_vtable, load_plugin, LoadedPlugin};
pub use nas_plugin_sdk::PluginInfo;
pub use register::{
    load_and_register, register_plugin, register_plugin_with, BoxedStrategyFactory, PluginFactory,
};
