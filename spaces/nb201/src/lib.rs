//! # nas-space-nb201
//!
//! The NAS-Bench-201 cell space (Dong & Yang, "NAS-Bench-201: Extending the Scope of
//! Reproducible Neural Architecture Search", ICLR 2020) as plain data:
//!
//! * [`nb201_spec`]: 6 edges x 5 operations in the benchmark's order, with per-operation
//!   parameter and FLOP costs of the benchmark's CIFAR-10 network ([`cost`]);
//! * arch strings (`|nor_conv_3x3~0|+|...|`) read and written ([`parse_arch_str`],
//!   [`to_arch_str`]);
//! * the benchmark table ([`Nb201Table`]) and the [`TabularEstimator`] that scores cells
//!   from it with the paper's protocol (search on 12-epoch validation accuracy, report the
//!   200-epoch test accuracy), counting every query.
//!
//! * the tensor side ([`Nb201Space`], a `nas_model::SearchSpace`): the benchmark's
//!   `TinyNetwork` macro structure (`C = 16`, `N = 5`, residual reduction blocks) as a
//!   weight-sharing supernet (all five operations on every edge) and as the standalone
//!   network of one cell, whose parameter count equals the table's.
#![deny(missing_docs)]

pub mod arch_str;
pub mod cost;
pub mod estimator;
pub mod space;
pub mod spec;
pub mod table;
pub mod tensor_ops;
pub mod tiny;

pub use arch_str::{parse_arch_str, to_arch_str};
pub use estimator::{
    build_estimator, estimator_info, DatasetFigures, Nb201Dataset, TabularEstimator, TabularParams,
    DEFAULT_SECONDS_PER_QUERY, ESTIMATOR_NAME,
};
pub use space::{space_info, Nb201Space, Nb201SpaceParams};
pub use spec::{
    all_architectures, edge_key, nb201_cost, nb201_spec, nb201_spec_ref, EDGES, NUM_ARCHITECTURES,
    NUM_NODES, OPS, SPACE_NAME,
};
pub use table::{Nb201Record, Nb201Table, DEFAULT_TABLE_PATH};
pub use tiny::{tiny_cost, TinyNet};

/// Registers this crate's space and the tabular estimator into `c`; `nas-builtins` calls it.
pub fn register(c: &mut nas_registry::Components) -> nas_core::Result<()> {
    c.register_tensor_space(space_info(), Nb201Space::from_params)?;
    c.estimators.register(
        estimator_info(),
        std::sync::Arc::new(|p, _| build_estimator(p)),
    )?;
    Ok(())
}
