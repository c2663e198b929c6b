//! The ENAS macro search space (Pham et al. 2018, section 2.4; melodyguan/enas
//! `general_child.py` with `whole_channels`): a chain of layers, each one op among conv
//! 3x3/5x5, sep conv 3x3/5x5, avg/max pool 3x3 on the previous output, plus skip
//! connections from any earlier output (the stem and the layers before the previous one);
//! factorized reductions of every output after the pool layers.
//!
//! The decisions are the reference's `arc` (`layer{l}.op`, then `layer{l}.skip{i}`), so an
//! architecture is exactly its `fixed_arc`.
pub mod blocks;
pub mod layout;
pub mod network;
pub mod space;
pub mod supernet;

pub use layout::{
    decision_count, format_macro_arc, parse_macro_arc, pool_layers, MacroSpaceParams, MACRO_OPS,
    MACRO_SPACE,
};
pub use network::MacroNetwork;
pub use space::{macro_space_info, EnasMacroSpace};
pub use supernet::MacroSupernet;
