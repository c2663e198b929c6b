//! A search space's choice points as plain data.
use serde::{Deserialize, Serialize};

use crate::{Architecture, NasError, Result};

/// Costs of one option (or of a whole architecture). Every figure is additive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Trainable parameters.
    pub params: f64,
    /// Multiply-accumulates of one forward pass for one input example.
    pub flops: f64,
    /// Measured latency in milliseconds, when a latency table is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl Cost {
    /// Sum of two costs (latency is summed when both have one).
    pub fn add(&self, other: &Cost) -> Cost {
        Cost {
            params: self.params + other.params,
            flops: self.flops + other.flops,
            latency_ms: match (self.latency_ms, other.latency_ms) {
                (Some(a), Some(b)) => Some(a + b),
                (a, None) => a,
                (None, b) => b,
            },
        }
    }
}

/// One option of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionSpec {
    /// Operation name (`sep_conv_3x3`, `k5_e6`, ...).
    pub name: String,
    /// What choosing this option adds to the network.
    pub cost: Cost,
}

/// One choice point of a space: a key, its options and their costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique key (`normal.n2.e0`, `block7`, ...).
    pub key: String,
    /// Group the decision belongs to (`normal`, `reduce`, a stage name), used by
    /// strategies that share parameters within a group and by reports.
    pub group: String,
    /// For cell spaces, the node this edge feeds (DARTS derivation keeps the top-2 edges
    /// of each node); `None` for single-path spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<usize>,
    /// The options, in the space's fixed order.
    pub options: Vec<OptionSpec>,
}

/// Plain-data description of a search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceSpec {
    /// Registered space name.
    pub space: String,
    /// The decisions, in a fixed order: mixing weights and architectures index into it.
    pub decisions: Vec<Decision>,
    /// Cost of everything that is not searched (stem, classifier, preprocessing).
    pub fixed_cost: Cost,
}

impl SpaceSpec {
    /// Number of options of each decision.
    pub fn shape(&self) -> Vec<usize> {
        self.decisions.iter().map(|d| d.options.len()).collect()
    }

    /// Checks that `arch` belongs to this space (name, length, index ranges).
    pub fn check(&self, arch: &Architecture) -> Result<()> {
        if arch.space != self.space {
            return Err(NasError::Architecture(format!(
                "architecture is for space `{}`, but this space is `{}`",
                arch.space, self.space
            )));
        }
        if arch.choices.len() != self.decisions.len() {
            return Err(NasError::Architecture(format!(
                "architecture has {} choices, space `{}` has {} decisions",
                arch.choices.len(),
                self.space,
                self.decisions.len()
            )));
        }
        for (d, &c) in self.decisions.iter().zip(&arch.choices) {
            if c >= d.options.len() {
                return Err(NasError::Architecture(format!(
                    "decision `{}` has {} options, choice {} is out of range",
                    d.key,
                    d.options.len(),
                    c
                )));
            }
        }
        Ok(())
    }

    /// Total cost of an architecture: fixed cost plus the chosen option of each decision.
    pub fn cost_of(&self, arch: &Architecture) -> Result<Cost> {
        self.check(arch)?;
        Ok(self
            .decisions
            .iter()
            .zip(&arch.choices)
            .fold(self.fixed_cost, |acc, (d, &c)| acc.add(&d.options[c].cost)))
    }

    /// Index of the option named `name` in decision `d`, if any.
    pub fn option_index(&self, d: usize, name: &str) -> Option<usize> {
        self.decisions
            .get(d)?
            .options
            .iter()
            .position(|o| o.name == name)
    }
}

/// The plain-data rules of a search space: its choice points, how it derives a discrete
/// architecture from mixing weights, and its own text notation. Every space implements it;
/// spaces with a supernet also implement the tensor-side `nas_model::SearchSpace`, which
/// extends this trait. Estimator-only runs (a benchmark table) need nothing more.
///
/// Invariants: `spec()` never changes; architectures returned by `derive` and `parse_arch`
/// pass `spec().check`; `parse_arch(&format_arch(a)) == a`.
pub trait SpaceRules: Send + Sync {
    /// The choice points.
    fn spec(&self) -> &SpaceSpec;
    /// Derives a discrete architecture from mixing weights; `mode` `"default"` is the
    /// space's standard rule.
    fn derive(&self, weights: &crate::MixingWeights, mode: &str) -> Result<Architecture>;
    /// Parses an architecture from the JSON form or the space's own notation.
    fn parse_arch(&self, text: &str) -> Result<Architecture>;
    /// The space's own notation of an architecture.
    fn format_arch(&self, arch: &Architecture) -> String;
    /// Extra keys of the space's own for `architecture.json` (and the family's files), beside
    /// the generic `space`, `architecture`, `notation`, costs and network: the DARTS space
    /// adds `genotype`, the notation its reference code reads. Default: none.
    fn architecture_fields(
        &self,
        _arch: &Architecture,
    ) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    /// Diagrams of the cells of `arch` for reports (the DARTS space: its normal and
    /// reduction cells; NB201: its one cell). Default: none (the report draws no cell).
    fn cell_diagrams(&self, _arch: &Architecture) -> Vec<crate::CellDiagram> {
        Vec::new()
    }
    /// Figures a benchmark table holds for `arch` when the space has one and it is found
    /// (NB201: `table_test_acc`, `table_params_m`); reports show them beside a
    /// weight-sharing run's own. Default: none.
    fn table_figures(&self, _arch: &Architecture) -> Option<crate::strategy::Metrics> {
        None
    }
}

/// The default derivation of single-path spaces: the option with the largest weight per
/// decision (ties keep the first).
pub fn argmax_derive(spec: &SpaceSpec, weights: &crate::MixingWeights) -> Result<Architecture> {
    weights.check_shape(spec)?;
    let choices = weights
        .0
        .iter()
        .map(|w| {
            let mut best = 0;
            for (k, &v) in w.iter().enumerate() {
                if v > w[best] {
                    best = k;
                }
            }
            best
        })
        .collect();
    Ok(Architecture::new(spec.space.clone(), choices))
}
