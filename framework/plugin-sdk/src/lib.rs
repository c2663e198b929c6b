//! # nas-plugin-sdk
//!
//! Makes a search strategy crate a plugin that the `nas` host loads at run time
//! (DESIGN.md section 3). A plugin author writes an ordinary
//! [`nas_core::SearchStrategy`], builds the crate as a `cdylib`, and adds one line:
//!
//! ```no_run
//! use nas_core::{Result, SearchStrategy};
//! # use nas_core::*;
//! # struct MyStrategy;
//! # impl SearchStrategy for MyStrategy {
//! #     fn name(&self) -> &str { "my_strategy" }
//! #     fn needs(&self) -> Needs { Needs::Estimator }
//! #     fn init(&mut self, _: &SpaceSpec, _: u64) -> Result<()> { Ok(()) }
//! #     fn step(&mut self, _: &mut dyn SearchEnv) -> Result<StepReport> { Ok(Default::default()) }
//! #     fn end_epoch(&mut self, _: &mut dyn SearchEnv) -> Result<EpochReport> { Ok(Default::default()) }
//! #     fn outcome(&mut self, _: &mut dyn SearchEnv) -> Result<SearchOutcome> { Ok(Default::default()) }
//! #     fn mixing_weights(&self) -> Option<MixingWeights> { None }
//! #     fn save_state(&self) -> Result<serde_json::Value> { Ok(serde_json::Value::Null) }
//! #     fn load_state(&mut self, _: &serde_json::Value) -> Result<()> { Ok(()) }
//! # }
//! fn make(params: &serde_json::Value) -> Result<Box<dyn SearchStrategy>> {
//!     // decode and check `params` here (nas_core::decode_params), then:
//!     Ok(Box::new(MyStrategy))
//! }
//!
//! nas_plugin_sdk::export_strategy!(make, "my_strategy", summary = "What it does, in one line");
//! ```
//!
//! ## What crosses the boundary
//! Nothing Rust-specific: the host and the plugin each link their own copy of std, serde
//! and nas-core, so they talk through a versioned `#[repr(C)]` table of `extern "C"`
//! functions ([`PluginVTable`], and [`HostEnv`] the other way) over integers, flat `f32`
//! buffers (mixing weights, gradients) and UTF-8 JSON (params, specs, architectures,
//! reports, state). Each side frees only what it allocated, and each catches its own
//! panics. Inside the plugin the SDK wraps the host's callbacks as a
//! [`nas_core::SearchEnv`] ([`proxy::HostEnvProxy`]), so strategy code never sees the ABI.
//!
//! ## Module map
//! * [`abi`]: the tables and plain types, with the version constants.
//! * [`buffer`]: who allocates and who frees.
//! * [`codec`] and [`wire`]: how values are encoded (binary for tensors-sized data, JSON
//!   for the rest, errors keep their variant).
//! * [`guest`] and [`proxy`]: the plugin side of the table and of the environment.
//! * [`info`]: what a plugin declares.
//!
//! The host side (loading, checks, the strategy wrapper) is `nas-plugin-host`.
#![deny(missing_docs)]

pub mod abi;
pub mod buffer;
pub mod codec;
pub mod guest;
pub mod info;
pub mod proxy;
pub mod wire;

pub use abi::{
    Bytes, EntryFn, Floats, HostEnv, OwnedBuffer, PluginHeader, PluginVTable, Sizes, Slice, Status,
    ABI_VERSION, ENTRY_SYMBOL, PROTOCOL_VERSION,
};
pub use info::PluginInfo;

/// Re-exported for the macros and for plugin authors.
pub use nas_core;
/// Re-exported for the macros and for plugin authors.
pub use serde_json;

#[doc(hidden)]
#[macro_export]
macro_rules! __nas_or {
    (; $default:expr) => {
        $default
    };
    ($value:expr ; $default:expr) => {
        $value
    };
}

/// Builds the [`PluginVTable`] of a strategy, as a constant expression, without exporting
/// it. [`export_strategy!`] is this plus the exported entry point; use this one directly to
/// hold several tables in one binary (tests) or to adjust a header.
///
/// Arguments: the factory (a path or closure of type
/// `fn(&serde_json::Value) -> nas_core::Result<Box<dyn nas_core::SearchStrategy>>`,
/// which decodes and checks the params, `null` meaning all defaults), the registered name
/// (a string literal), then optionally, in this order: `summary = <&str>`,
/// `defaults = <serde_json::Value>` (the params with their defaults),
/// `params = <Vec<nas_core::ParamDoc>>`. The optional expressions are evaluated inside
/// the plugin only when the host asks for its info.
#[macro_export]
macro_rules! strategy_vtable {
    (
        $factory:expr, $name:literal
        $(, summary = $summary:expr)?
        $(, defaults = $defaults:expr)?
        $(, params = $params:expr)?
        $(,)?
    ) => {{
        #[cfg(panic = "abort")]
        compile_error!(
            "a nas plugin must be built with panic = \"unwind\": with abort, a panic in the \
             plugin would end the host process instead of failing the run"
        );

        extern "C" fn __nas_info(
            out: *mut $crate::OwnedBuffer,
            err: *mut $crate::OwnedBuffer,
        ) -> $crate::Status {
            // SAFETY: the host passes valid out-parameters (PluginVTable contract).
            unsafe {
                $crate::guest::info_with(out, err, || {
                    $crate::PluginInfo::new(
                        $name,
                        env!("CARGO_PKG_VERSION"),
                        $crate::__nas_or!($($summary)? ; ""),
                        $crate::__nas_or!(
                            $($defaults)? ;
                            $crate::serde_json::Value::Object(::std::default::Default::default())
                        ),
                        $crate::__nas_or!($($params)? ; ::std::vec::Vec::new()),
                    )
                })
            }
        }

        extern "C" fn __nas_create(
            params: $crate::Bytes,
            handle: *mut *mut ::std::ffi::c_void,
            err: *mut $crate::OwnedBuffer,
        ) -> $crate::Status {
            // SAFETY: the host passes valid pointers (PluginVTable contract).
            unsafe {
                $crate::guest::create_with(
                    params,
                    handle,
                    err,
                    |p: &$crate::serde_json::Value| -> $crate::nas_core::Result<
                        ::std::boxed::Box<dyn $crate::nas_core::SearchStrategy>,
                    > { ($factory)(p) },
                )
            }
        }

        $crate::PluginVTable {
            header: $crate::info::header($name, env!("CARGO_PKG_VERSION")),
            info: __nas_info,
            create: __nas_create,
            destroy: $crate::guest::destroy,
            needs: $crate::guest::needs,
            init: $crate::guest::init,
            step: $crate::guest::step,
            end_epoch: $crate::guest::end_epoch,
            outcome: $crate::guest::outcome,
            mixing_weights: $crate::guest::mixing_weights,
            save_state: $crate::guest::save_state,
            load_state: $crate::guest::load_state,
            free_buffer: $crate::buffer::free_buffer,
        }
    }};
}

/// Makes the crate a strategy plugin: builds its [`PluginVTable`] with
/// [`strategy_vtable!`] (same arguments) and exports the entry point
/// `nas_plugin_entry` ([`ENTRY_SYMBOL`]) that returns it. Use it once, at the root of a
/// crate built with `crate-type = ["cdylib"]`.
#[macro_export]
macro_rules! export_strategy {
    ($($args:tt)*) => {
        static __NAS_PLUGIN_VTABLE: $crate::PluginVTable = $crate::strategy_vtable!($($args)*);

        /// The plugin's entry point: the table the `nas` host reads.
        #[unsafe(no_mangle)]
        pub extern "C" fn nas_plugin_entry() -> *const $crate::PluginVTable {
            &__NAS_PLUGIN_VTABLE
        }
    };
}
