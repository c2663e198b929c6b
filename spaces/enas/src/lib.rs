//! # nas-space-enas
//!
//! The ENAS micro search space (Pham, Guan, Zoph, Le, Dean, "Efficient Neural Architecture
//! Search via Parameter Sharing", ICML 2018, section 2.3; reference code melodyguan/enas
//! `src/cifar10/micro_child.py`): normal and reduction cells of B = 5 nodes; each node picks
//! two inputs among the two cell inputs and the earlier nodes (the same input twice is
//! allowed) and an op for each among sep conv 3x3, sep conv 5x5, avg pool 3x3, max pool 3x3
//! and identity, and sums the two results; the nodes no other node uses are concatenated
//! into the cell output.
//!
//! The decisions are the node's inputs and ops (`{cell}.n{i}.input_a`, `op_a`, `input_b`,
//! `op_b`), so an architecture is the reference's `arc` (40 integers, normal then reduce).
//!
//! The macro space (`enas-macro`, module [`macro_space`]; `general_child.py`): layers of
//! one op among six plus skip connections from earlier outputs, decided per layer.
//!
//! Deviations from the reference, all documented where they live: weights use the
//! framework's fan-in uniform initialisation (the reference: He normal); convolutions pad
//! symmetrically (PyTorch's convention; TensorFlow's `SAME` pads a stride-2 3x3 convolution
//! on the bottom/right only); the search network has no auxiliary head and no drop-path
//! (the reference search script enables both) and the standalone network no dropout before
//! the classifier (the reference final script keeps 0.8).
#![deny(missing_docs)]

pub mod blocks;
pub mod layout;
pub mod macro_space;
pub mod network;
pub mod space;
pub mod supernet;

pub use layout::{EnasSpaceParams, OPS, SPACE};
pub use macro_space::{macro_space_info, EnasMacroSpace, MacroSpaceParams, MACRO_SPACE};
pub use network::EnasNetwork;
pub use space::{format_arc, parse_arc, space_info, EnasMicroSpace};
pub use supernet::EnasSupernet;

/// Registers this crate's spaces into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), EnasMicroSpace::from_params)?;
    c.register_tensor_space(macro_space_info(), EnasMacroSpace::from_params)?;
    Ok(())
}
