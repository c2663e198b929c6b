//! A discrete architecture: one option index per decision of its space.
use serde::{Deserialize, Serialize};

/// One architecture of a space, as plain data. Spaces add their own text notation
/// (DARTS genotype, NB201 arch string) on top; this is the common form that crosses
/// every boundary and is written to `architecture.json`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Architecture {
    /// The space it belongs to.
    pub space: String,
    /// Chosen option index for each decision, in [`crate::SpaceSpec::decisions`] order.
    pub choices: Vec<usize>,
}

impl Architecture {
    /// A new architecture.
    pub fn new(space: impl Into<String>, choices: Vec<usize>) -> Self {
        Architecture {
            space: space.into(),
            choices,
        }
    }
}
