//! # nas-space-darts
//!
//! The DARTS cell search space (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture
//! Search", ICLR 2019; reference code quark0/darts): the eight candidate operations, cells
//! with 4 intermediate nodes, reduction cells at 1/3 and 2/3 depth, the weight-sharing
//! search network, derivation (best non-none op per edge, top-2 edges per node), the
//! genotype notation, and standalone networks with auxiliary head and drop-path.
#![deny(missing_docs)]

pub mod diagram;
pub mod genotype;
pub mod layout;
pub mod network;
pub mod ops;
pub mod space;
pub mod supernet;

pub use genotype::{Genotype, DARTS_V1, DARTS_V2};
pub use layout::DartsSpaceParams;
pub use space::{space_info, DartsSpace};

/// Registers this crate's space into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), DartsSpace::from_params)?;
    Ok(())
}
