//! # nas-core
//!
//! The plain-data heart of the framework. It defines the four roles of
//! `shared/DESIGN.md` and the data they exchange:
//!
//! * [`SpaceSpec`]: a search space's choice points as plain data (decisions, options,
//!   per-option costs), and [`Architecture`]: one choice index per decision.
//! * [`SupernetTrainer`]: the tensor side, seen through plain data only
//!   ([`Drive`] in, [`ArchGradient`] / [`StepStats`] / [`EvalStats`] out).
//! * [`SearchStrategy`]: the decision side (alphas, hypernets, controllers, populations).
//! * [`Estimator`]: scores one discrete architecture.
//!
//! **Invariant:** nothing in this crate depends on a tensor library, a file system, YAML or
//! the terminal. No tensor crosses between a strategy and a trainer; that is what lets a
//! strategy live in a dynamically loaded plugin (DESIGN.md section 2).
#![deny(missing_docs)]

pub mod arch;
pub mod cost_term;
pub mod diagram;
pub mod drive;
pub mod error;
pub mod estimator;
pub mod math;
pub mod params;
pub mod registry;
pub mod rng;
pub mod space;
pub mod strategy;
pub mod trainer;

pub use arch::Architecture;
pub use diagram::{CellDiagram, DiagramEdge, DiagramNode, NodeKind};
pub use drive::{
    check_active, ArchGradient, Drive, DriveKind, GradOrder, MixingWeights, OrderSetting,
};
pub use error::{NasError, Result};
pub use estimator::{Estimator, Score};
pub use params::{decode_params, ParamDoc};
pub use registry::{ComponentInfo, ComponentKind, Registry};
pub use rng::component_rng;
pub use space::{argmax_derive, Cost, Decision, OptionSpec, SpaceRules, SpaceSpec};
pub use strategy::{
    EpochReport, FoundArchitecture, Metrics, Needs, SearchEnv, SearchOutcome, SearchStrategy,
    StepReport,
};
pub use trainer::{EvalStats, Split, StepStats, SupernetTrainer};
