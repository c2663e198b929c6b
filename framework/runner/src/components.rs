//! The one registry of every component a run can name (DESIGN.md section 3): spaces,
//! strategies, estimators, and the descriptions of optimizers, schedules and data sets.
//! Built-ins register through [`Components::builtin`]; a user's own binary adds more with
//! the `register_*` methods, and loaded plugins register strategies the same way
//! ([`Components::with_plugins`]). Factories are shared (`Arc`), so a [`Components`] is
//! cheap to clone: a run that loads plugins registers them into its own clone.
use std::sync::Arc;

use nas_core::{
    ComponentInfo, ComponentKind, Estimator, ParamDoc, Registry, Result, SearchStrategy, SpaceRules,
};
use nas_data::DataSplits;
use nas_model::{DataShape, SearchSpace};
use nas_optim::{Optimizer, Schedule};

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

/// Builds a space from its params and the data shape.
pub type SpaceFactory =
    Arc<dyn Fn(&serde_json::Value, DataShape) -> Result<SpaceBox> + Send + Sync>;
/// Builds a strategy from its params.
pub type StrategyFactory =
    Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn SearchStrategy>> + Send + Sync>;
/// Builds an optimizer from its params (weights: `optimizers.weights`, `train.optimizer`).
pub type OptimizerFactory =
    Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn Optimizer>> + Send + Sync>;
/// Builds a learning-rate schedule from its params.
pub type ScheduleFactory =
    Arc<dyn Fn(&serde_json::Value) -> Result<Box<dyn Schedule>> + Send + Sync>;
/// Loads a data set from its params (`data.params`).
pub type DatasetFactory = Arc<dyn Fn(&serde_json::Value) -> Result<DataSplits> + Send + Sync>;
/// What an estimator factory may use beyond its params: the experiment (its data block,
/// seed, device), the registry (to load data or build a trainer) and the space's rules.
pub struct EstimatorContext<'a> {
    /// The experiment being run.
    pub exp: &'a nas_config::Experiment,
    /// Every registered component.
    pub comps: &'a Components,
    /// The experiment's space.
    pub rules: &'a dyn SpaceRules,
}

/// Builds an estimator from its params and the run's context.
pub type EstimatorFactory = Arc<
    dyn Fn(&serde_json::Value, &EstimatorContext<'_>) -> Result<Box<dyn Estimator>> + Send + Sync,
>;

/// Every registered component. Cloning shares the factories.
pub struct Components {
    /// Spaces.
    pub spaces: Registry<SpaceFactory>,
    /// Strategies.
    pub strategies: Registry<StrategyFactory>,
    /// Estimators.
    pub estimators: Registry<EstimatorFactory>,
    /// Trainers (only `supernet` today; the registry documents its params).
    pub trainers: Registry<()>,
    /// Weight optimizers (the built-ins: `nas_optim::build_optimizer`).
    pub optimizers: Registry<OptimizerFactory>,
    /// Learning-rate schedules (the built-ins: `nas_optim::build_schedule`).
    pub schedules: Registry<ScheduleFactory>,
    /// Data sets (the built-ins: `nas_data::load_dataset`).
    pub datasets: Registry<DatasetFactory>,
}

fn unit_info(
    kind: ComponentKind,
    name: &str,
    summary: &str,
    defaults: serde_json::Value,
    params: Vec<ParamDoc>,
) -> ComponentInfo {
    ComponentInfo {
        kind,
        name: name.into(),
        summary: summary.into(),
        defaults,
        params,
        origin: "built-in".into(),
    }
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

    /// Every built-in component.
    pub fn builtin() -> Result<Self> {
        let mut c = Components::empty();
        c.spaces.register(
            nas_space_darts::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(
                    nas_space_darts::DartsSpace::from_params(p, shape)?,
                )))
            }),
        )?;
        c.spaces.register(
            nas_space_nb201::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(
                    nas_space_nb201::Nb201Space::from_params(p, shape)?,
                )))
            }),
        )?;
        for info in nas_strategy_darts::infos() {
            let name = info.name.clone();
            c.strategies
                .register(info, Arc::new(move |p| nas_strategy_darts::build(&name, p)))?;
        }
        for info in nas_strategy_discrete::infos() {
            let name = info.name.clone();
            c.strategies.register(
                info,
                Arc::new(move |p| nas_strategy_discrete::build(&name, p)),
            )?;
        }
        for info in nas_strategy_darts_cc::infos() {
            let name = info.name.clone();
            c.strategies.register(
                info,
                Arc::new(move |p| nas_strategy_darts_cc::build(&name, p)),
            )?;
        }
        // Single-path spaces (SPOS, ProxylessNAS, FBNet) and their strategies (issue 5).
        c.spaces.register(
            nas_space_spos::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(nas_space_spos::from_params(
                    p, shape,
                )?)))
            }),
        )?;
        c.spaces.register(
            nas_space_proxyless::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(
                    nas_space_proxyless::from_params(p, shape)?,
                )))
            }),
        )?;
        c.spaces.register(
            nas_space_fbnet::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(nas_space_fbnet::from_params(
                    p, shape,
                )?)))
            }),
        )?;
        for info in nas_strategy_single_path::infos() {
            let name = info.name.clone();
            c.strategies.register(
                info,
                Arc::new(move |p| nas_strategy_single_path::build(&name, p)),
            )?;
        }
        // Gumbel-softmax strategies: gdas, snas, fbnet (issue 17).
        for info in nas_strategy_gumbel::infos() {
            let name = info.name.clone();
            c.strategies.register(
                info,
                Arc::new(move |p| nas_strategy_gumbel::build(&name, p)),
            )?;
        }
        // ProxylessNAS: binary gates over any supernet space (issue 17).
        for info in nas_strategy_proxylessnas::infos() {
            let name = info.name.clone();
            c.strategies.register(
                info,
                Arc::new(move |p| nas_strategy_proxylessnas::build(&name, p)),
            )?;
        }
        // ENAS (issue 18): the micro space and the LSTM-controller strategy.
        c.spaces.register(
            nas_space_enas::space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(
                    nas_space_enas::EnasMicroSpace::from_params(p, shape)?,
                )))
            }),
        )?;
        // ENAS macro space (issue 18): layers of one op plus skip connections.
        c.spaces.register(
            nas_space_enas::macro_space_info(),
            Arc::new(|p, shape| {
                Ok(SpaceBox::Tensor(Box::new(
                    nas_space_enas::EnasMacroSpace::from_params(p, shape)?,
                )))
            }),
        )?;
        for info in nas_strategy_enas::infos() {
            let name = info.name.clone();
            c.strategies
                .register(info, Arc::new(move |p| nas_strategy_enas::build(&name, p)))?;
        }
        c.estimators.register(
            nas_space_nb201::estimator_info(),
            Arc::new(|p, _| nas_space_nb201::build_estimator(p)),
        )?;
        c.estimators.register(
            crate::trained_supernet::info(),
            Arc::new(|p, cx: &EstimatorContext<'_>| {
                crate::trained_supernet::build(cx.exp, cx.comps, p)
            }),
        )?;
        c.estimators.register(
            crate::zero_cost::info(),
            Arc::new(|p, cx: &EstimatorContext<'_>| crate::zero_cost::build(cx.exp, cx.comps, p)),
        )?;
        c.trainers.register(
            unit_info(
                ComponentKind::Trainer,
                "supernet",
                "weight-sharing supernet trainer (first/second-order arch gradients, paths, BN recalibration)",
                serde_json::to_value(nas_trainer::TrainerParams::default()).unwrap_or_default(),
                vec![
                    ParamDoc::new("recalibrate_bn", "recalibrate BN statistics before scoring a single path (SPOS)"),
                    ParamDoc::new("recalibrate_images", "shuffled training images for the recalibration, momentum 0.1 from reset statistics (SPOS: ~20,000)"),
                    ParamDoc::new("recalibrate_batches", "when > 0: training batches for the recalibration instead of recalibrate_images"),
                    ParamDoc::new("skip_unused", "path drives: parameters off the sampled paths get no momentum or weight-decay step (SPOS)"),
                    ParamDoc::new("augment_valid", "augment the architecture step's validation batches like training batches (DARTS reference)"),
                    ParamDoc::new("on_non_finite", "error (stop, keep the last checkpoint) | skip (drop the batch)"),
                    ParamDoc::new("hessian_radius", "second order: finite-difference step of the Hessian-vector product, eps = r/||v|| (DARTS: 0.01)"),
                ],
            ),
            (),
        )?;
        for info in nas_optim::optimizer_infos() {
            let name = info.name.clone();
            c.optimizers.register(
                info,
                Arc::new(move |p| nas_optim::build_optimizer(&name, p)),
            )?;
        }
        for info in nas_optim::schedule_infos() {
            let name = info.name.clone();
            c.schedules
                .register(info, Arc::new(move |p| nas_optim::build_schedule(&name, p)))?;
        }
        for info in nas_data::dataset_infos() {
            let name = info.name.clone();
            c.datasets
                .register(info, Arc::new(move |p| nas_data::load_dataset(&name, p)))?;
        }
        Ok(c)
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
