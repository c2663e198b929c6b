//! [`RunEnv`]: the [`SearchEnv`] a strategy sees during a run.
use nas_core::{
    Architecture, Cost, Estimator, MixingWeights, Result, SearchEnv, SpaceRules, SpaceSpec,
    SupernetTrainer,
};
use nas_model::NetworkConfig;

use nas_registry::SpaceBox;

/// The environment of one run.
pub struct RunEnv<'a> {
    /// The space.
    pub space: &'a SpaceBox,
    /// The trainer, for supernet strategies.
    pub trainer: Option<&'a mut dyn SupernetTrainer>,
    /// The estimator, for estimator strategies.
    pub estimator: Option<&'a mut dyn Estimator>,
    /// The standalone-network configuration used for costs.
    pub network: Option<NetworkConfig>,
    /// Current epoch.
    pub epoch: usize,
    /// Total epochs.
    pub epochs: usize,
}

impl SearchEnv for RunEnv<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.space.rules().spec()
    }

    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        match &mut self.trainer {
            Some(t) => Some(&mut **t),
            None => None,
        }
    }

    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        match &mut self.estimator {
            Some(e) => Some(&mut **e),
            None => None,
        }
    }

    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        self.space.rules().derive(weights, mode)
    }

    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        match (self.space.tensor(), &self.network) {
            (Some(s), Some(cfg)) => s.network_cost(arch, cfg),
            _ => self.space.rules().spec().cost_of(arch),
        }
    }

    fn describe(&self, arch: &Architecture) -> String {
        self.space.rules().format_arch(arch)
    }

    fn epoch(&self) -> (usize, usize) {
        (self.epoch, self.epochs)
    }
}

/// The notation of `arch` in `rules`.
pub fn notation(rules: &dyn SpaceRules, arch: &Architecture) -> String {
    rules.format_arch(arch)
}
