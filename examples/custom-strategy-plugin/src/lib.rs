//! # custom-strategy-plugin
//!
//! An example of a search strategy written outside the framework and loaded by `nas` at
//! run time: local search with random restarts over an estimator (White et al. 2021; see
//! [`search`]). The strategy is ordinary Rust against the `nas-core` traits; the one
//! `export_strategy!` line below makes the crate a plugin. See `docs/plugins.md`.
//!
//! ```yaml
//! plugins: [../../target/release/libcustom_strategy_plugin.so]   # relative to this file
//! strategy:
//!   name: local_search
//!   params: {max_queries: 150}
//! ```
#![deny(missing_docs)]

pub mod params;
pub mod search;

pub use params::LocalSearchParams;
pub use search::LocalSearch;

nas_plugin_sdk::export_strategy!(
    LocalSearch::factory,
    "local_search",
    summary = "Local search with random restarts over an estimator (White et al. 2021)",
    defaults = LocalSearchParams::defaults_json(),
    params = LocalSearchParams::docs(),
);

#[cfg(test)]
mod tests;
