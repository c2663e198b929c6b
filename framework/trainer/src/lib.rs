//! # nas-trainer
//!
//! [`WeightSharingTrainer`] implements [`nas_core::SupernetTrainer`] for any space's
//! [`nas_model::Supernet`]: it owns the supernet weights, the weight optimizer and
//! schedule, and the data loaders, and answers a strategy's plain-data requests with
//! losses, accuracies and gradients with respect to the mixing weights (first order, or
//! DARTS' unrolled second order with the finite-difference Hessian-vector product).
//! [`Retrainer`] trains a standalone network from scratch (the DARTS "augment" stage).
#![deny(missing_docs)]

pub mod bridge;
mod device_optimizer;
pub mod retrain;
pub mod run_trainer;
pub mod supernet;
mod weight_update;
pub mod zero_cost;

pub use device_optimizer::DeviceOptimizer;
pub use retrain::{EpochEnd, RetrainProgress, RetrainReport, RetrainSettings, Retrainer};
pub use run_trainer::{RunTrainer, WriteFile};
pub use supernet::{
    BatchGradients, OnNonFinite, TrainerParams, TrainerSetup, WeightSharingTrainer,
};
