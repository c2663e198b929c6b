//! # nas-model
//!
//! The tensor side of a search space (DESIGN.md section 2): a [`SearchSpace`] describes its
//! choice points as plain data ([`nas_core::SpaceSpec`]), builds the weight-sharing
//! [`Supernet`] and the standalone [`Network`] of one architecture, derives discrete
//! architectures by its own rules, and reads and writes its own notation.
//!
//! Parameters live in a [`ParamStore`] (named `candle_core::Var`s in creation order) so that
//! trainers, optimizers and checkpoints treat every space alike. Operations come from
//! `nas-ops` (DESIGN.md section 7), never from ad-hoc tensor arithmetic.
#![deny(missing_docs)]

pub mod drop_path;
pub mod params;
pub mod space;

pub use drop_path::{drop_mask, drop_path_sum};
pub use params::{Init, ParamStore};
pub use space::{
    gated_sum, kept_weights, selected_per_sample_sum, selection_groups, DataShape, KeptWeights,
    Network, NetworkConfig, SearchSpace, Supernet, TensorDrive,
};

/// Converts a candle error into the framework's error.
pub fn tensor_err(e: candle_core::Error) -> nas_core::NasError {
    nas_core::NasError::Tensor(e.to_string())
}
