//! The one registry of every component a run can name (DESIGN.md section 3): spaces,
//! strategies, trainers, estimators, optimizers, schedules and data sets, each a factory
//! that takes its params and a [`BuildContext`]. Each space and strategy crate registers its
//! own components with a `register(&mut Components)` function (`nas-builtins` calls them
//! all); a user's own binary registers more the same way, and loaded plugins register
//! strategies beside them. Factories are shared (`Arc`), so a [`Components`] is
//! cheap to clone: a run that loads plugins registers them into its own clone.
use std::sync::Arc;

use nas_core::{
    ComponentInfo, ComponentKind, Estimator, Registry, Result, SearchStrategy, SpaceRules,
};
use nas_data::DataSplits;
use nas_model::SearchSpace;
use nas_optim::{Optimizer, Schedule};
use nas_trainer::RunTrainer;

use crate::BuildContext;

/// A space as built: plain rules only (benchmark tables), or with a supernet.
pub enum SpaceBox {
    /// Only the plain rules (no supernet): estimator-only strategies.
    Plain(Box<dyn SpaceRules>),
    /// A space with a supernet and standalone networks.
    Tensor(Box<dyn SearchSpace>),
}

impl SpaceBox {
    /// The plain rules.
    pub fn rules(&self) -> &dyn SpaceRules {
        match self {
            SpaceBox::Plain(r) => r.as_ref(),
            SpaceBox::Tensor(s) => s.as_ref(),
        }
    }

    /// The tensor side, when there is one.
    pub fn tensor(&self) -> Option<&dyn SearchSpace> {
        match self {
            SpaceBox::Plain(_) => None,
            SpaceBox::Tensor(s) => Some(s.as_ref()),
        }
    }
}

/// Builds a space from its params; the data shape comes from the context
/// ([`BuildContext::shape`]).
pub type SpaceFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<SpaceBox> + Send + Sync>;
/// Builds a strategy from its params.
pub type StrategyFactory = Arc<
    dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<Box<dyn SearchStrategy>> + Send + Sync,
>;
/// Builds a trainer from its params over the context's space and loaded data
/// ([`BuildContext::space`], [`BuildContext::data`]).
pub type TrainerBuild =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<Box<dyn RunTrainer>> + Send + Sync>;
/// Decodes a trainer's params without building it (`nas config validate` checks them
/// without loading data or building a supernet).
pub type TrainerCheck = Arc<dyn Fn(&serde_json::Value) -> Result<()> + Send + Sync>;

/// A trainer's factory: a check of its params, and the build.
#[derive(Clone)]
pub struct TrainerFactory {
    /// Decodes the params (errors name the key).
    pub check: TrainerCheck,
    /// Builds the trainer.
    pub build: TrainerBuild,
}

/// Builds an optimizer from its params (weights: `optimizers.weights`, `train.optimizer`).
pub type OptimizerFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<Box<dyn Optimizer>> + Send + Sync>;
/// Builds a learning-rate schedule from its params.
pub type ScheduleFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<Box<dyn Schedule>> + Send + Sync>;
/// Loads a data set from its params (`data.params`).
pub type DatasetFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<DataSplits> + Send + Sync>;
/// Builds an estimator from its params; the context has the experiment and its space.
pub type EstimatorFactory =
    Arc<dyn Fn(&serde_json::Value, &BuildContext<'_>) -> Result<Box<dyn Estimator>> + Send + Sync>;

/// Every registered component. Cloning shares the factories.
pub struct Components {
    /// Spaces.
    pub spaces: Registry<SpaceFactory>,
    /// Strategies.
    pub strategies: Registry<StrategyFactory>,
    /// Estimators.
    pub estimators: Registry<EstimatorFactory>,
    /// Trainers (the built-in: `supernet`, [`nas_trainer::WeightSharingTrainer`]).
    pub trainers: Registry<TrainerFactory>,
    /// Weight optimizers.
    pub optimizers: Registry<OptimizerFactory>,
    /// Learning-rate schedules.
    pub schedules: Registry<ScheduleFactory>,
    /// Data sets.
    pub datasets: Registry<DatasetFactory>,
}

impl Components {
    /// Empty registries.
    pub fn empty() -> Self {
        Components {
            spaces: Registry::new(ComponentKind::Space),
            strategies: Registry::new(ComponentKind::Strategy),
            estimators: Registry::new(ComponentKind::Estimator),
            trainers: Registry::new(ComponentKind::Trainer),
            optimizers: Registry::new(ComponentKind::Optimizer),
            schedules: Registry::new(ComponentKind::Schedule),
            datasets: Registry::new(ComponentKind::Dataset),
        }
    }

    /// Registers every strategy of `infos`, each built by `build(name, params)` (the shape of
    /// a strategy crate's `infos()` and `build`).
    pub fn register_strategies(
        &mut self,
        infos: Vec<ComponentInfo>,
        build: fn(&str, &serde_json::Value) -> Result<Box<dyn SearchStrategy>>,
    ) -> Result<()> {
        for info in infos {
            let name = info.name.clone();
            self.strategies
                .register(info, Arc::new(move |p, _| build(&name, p)))?;
        }
        Ok(())
    }

    /// Registers a space with a supernet, built by `build(params, data shape)`.
    pub fn register_tensor_space<S: SearchSpace + 'static>(
        &mut self,
        info: ComponentInfo,
        build: fn(&serde_json::Value, nas_model::DataShape) -> Result<S>,
    ) -> Result<()> {
        self.spaces.register(
            info,
            Arc::new(move |p, cx| Ok(SpaceBox::Tensor(Box::new(build(p, cx.shape())?)))),
        )
    }

    /// `[channels, height, width, classes]` of data set `name` when a built-in knows it
    /// without reading files ([`nas_data::known_shape`]); `None` for registered sets of
    /// a user's binary (they are loaded to learn it).
    pub fn dataset_shape(&self, name: &str, params: &serde_json::Value) -> Option<[usize; 4]> {
        let builtin = self
            .datasets
            .info(name)
            .is_some_and(|i| i.origin == "built-in");
        builtin
            .then(|| nas_data::known_shape(name, params))
            .flatten()
    }

    /// Every component's info, by kind then name.
    pub fn all_infos(&self) -> Vec<&ComponentInfo> {
        let mut v: Vec<&ComponentInfo> = Vec::new();
        v.extend(self.spaces.infos());
        v.extend(self.strategies.infos());
        v.extend(self.trainers.infos());
        v.extend(self.estimators.infos());
        v.extend(self.optimizers.infos());
        v.extend(self.schedules.infos());
        v.extend(self.datasets.infos());
        v
    }

    /// Every component called `name` (a name may be both, say, a space and an estimator).
    pub fn find(&self, name: &str) -> Vec<&ComponentInfo> {
        self.all_infos()
            .into_iter()
            .filter(|i| i.name == name)
            .collect()
    }
}

impl Clone for Components {
    fn clone(&self) -> Self {
        Components {
            spaces: clone_registry(&self.spaces, ComponentKind::Space),
            strategies: clone_registry(&self.strategies, ComponentKind::Strategy),
            estimators: clone_registry(&self.estimators, ComponentKind::Estimator),
            trainers: clone_registry(&self.trainers, ComponentKind::Trainer),
            optimizers: clone_registry(&self.optimizers, ComponentKind::Optimizer),
            schedules: clone_registry(&self.schedules, ComponentKind::Schedule),
            datasets: clone_registry(&self.datasets, ComponentKind::Dataset),
        }
    }
}

/// A copy of `r` (of kind `kind`) sharing its factories.
fn clone_registry<F: Clone>(r: &Registry<F>, kind: ComponentKind) -> Registry<F> {
    let mut out = Registry::new(kind);
    for info in r.infos() {
        if let Ok(f) = r.get(&info.name) {
            // Names are unique in `r`, so registering into the empty copy cannot clash.
            let _ = out.register(info.clone(), f.clone());
        }
    }
    out
}
