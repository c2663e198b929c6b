//! # nas-builtins
//!
//! Every built-in component in one registry: each space and strategy crate's own
//! `register`, the runner's (the `supernet` trainer, the `supernet` and `zero_cost`
//! estimators), and the optimizers, schedules and data sets of `nas-optim` and `nas-data`
//! (those two crates sit below the registry, so they are registered here). A user's own
//! binary starts from [`components`] and registers more (`nas_cli::run_with`).
#![deny(missing_docs)]

use std::sync::Arc;

use nas_core::Result;
use nas_registry::Components;

/// Registers every built-in component into `c`.
pub fn register(c: &mut Components) -> Result<()> {
    nas_space_darts::register(c)?;
    nas_space_nb201::register(c)?;
    nas_strategy_darts::register(c)?;
    nas_strategy_discrete::register(c)?;
    nas_strategy_darts_cc::register(c)?;
    // Single-path spaces (SPOS, ProxylessNAS, FBNet) and their strategies (issue 5).
    nas_space_spos::register(c)?;
    nas_space_proxyless::register(c)?;
    nas_space_fbnet::register(c)?;
    nas_strategy_single_path::register(c)?;
    // Gumbel-softmax (gdas, snas, fbnet) and ProxylessNAS binary gates (issue 17).
    nas_strategy_gumbel::register(c)?;
    nas_strategy_proxylessnas::register(c)?;
    // ENAS (issue 18): the micro and macro spaces and the controller strategy.
    nas_space_enas::register(c)?;
    nas_strategy_enas::register(c)?;
    nas_runner::register(c)?;
    register_optim_and_data(c)
}

/// Every built-in component, in a fresh registry.
pub fn components() -> Result<Components> {
    let mut c = Components::empty();
    register(&mut c)?;
    Ok(c)
}

/// The optimizers and schedules of `nas-optim` and the data sets of `nas-data`.
fn register_optim_and_data(c: &mut Components) -> Result<()> {
    for info in nas_optim::optimizer_infos() {
        let name = info.name.clone();
        c.optimizers.register(
            info,
            Arc::new(move |p, _| nas_optim::build_optimizer(&name, p)),
        )?;
    }
    for info in nas_optim::schedule_infos() {
        let name = info.name.clone();
        c.schedules.register(
            info,
            Arc::new(move |p, _| nas_optim::build_schedule(&name, p)),
        )?;
    }
    for info in nas_data::dataset_infos() {
        let name = info.name.clone();
        c.datasets
            .register(info, Arc::new(move |p, _| nas_data::load_dataset(&name, p)))?;
    }
    Ok(())
}
