//! Scoring one discrete architecture.
use serde::{Deserialize, Serialize};

use crate::{Architecture, Result, SpaceSpec};
use std::collections::BTreeMap;

/// The score of one architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// What a strategy maximises (e.g. validation accuracy in percent).
    pub fitness: f64,
    /// Figures reported but never used for the search (e.g. final test accuracy).
    pub report: BTreeMap<String, f64>,
    /// Simulated or real seconds that obtaining this score cost.
    pub cost_seconds: f64,
}

/// Scores discrete architectures: by supernet weights, a benchmark table, a short
/// training run or a zero-cost proxy. Random and evolutionary search need only this.
pub trait Estimator {
    /// The space it scores.
    fn spec(&self) -> &SpaceSpec;
    /// Scores `arch`; every call counts as one query.
    fn estimate(&mut self, arch: &Architecture) -> Result<Score>;
    /// Queries made so far.
    fn queries(&self) -> u64;
}
