//! # nas-registry
//!
//! The one registry of every component kind ([`Components`]), the [`BuildContext`] every
//! factory takes, and the functions that build a run's parts from an experiment through it
//! with errors that name the config key ([`build`]). No component is built in here: each
//! space and strategy crate registers its own (`register`), `nas-builtins` calls them all.
#![deny(missing_docs)]

pub mod build;
pub mod components;
pub mod context;

pub use build::{
    build_estimator, build_space, build_strategy, build_trainer, check_trainer, data_shape,
    data_shape_of, experiment_device, load_data, locate_params, parse_device, parse_dtype,
    takes_arch_optimizer, weight_optimizer,
};
pub use components::{
    Components, DatasetFactory, EstimatorFactory, OptimizerFactory, ScheduleFactory, SpaceBox,
    SpaceFactory, StrategyFactory, TrainerBuild, TrainerCheck, TrainerFactory,
};
pub use context::BuildContext;
