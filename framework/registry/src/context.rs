//! [`BuildContext`]: what a factory may use beyond its own params. One type for every kind,
//! so that a factory that needs more (a trainer needs the space and the loaded data, an
//! estimator the experiment and earlier runs) gets it without a special case in the runner.
use std::path::Path;

use candle_core::{DType, Device};
use nas_config::Experiment;
use nas_core::{NasError, Result};
use nas_data::DataSplits;
use nas_model::DataShape;

use crate::{Components, SpaceBox};

/// What a factory may use beyond its params. Built by the runner as a run's parts come
/// into being: data sets are loaded with a context that has no data yet, the space is built
/// with the data's shape, the trainer and the estimator with the space.
#[derive(Clone)]
pub struct BuildContext<'a> {
    /// Every registered component (a factory may build others: an estimator builds a
    /// trainer).
    pub comps: &'a Components,
    /// The experiment being built, when there is one (`nas describe` and tests build
    /// components without one).
    pub exp: Option<&'a Experiment>,
    /// The shape of the data (channels, height, width, classes), when known.
    pub shape: Option<DataShape>,
    /// The loaded data, once loaded.
    pub data: Option<&'a DataSplits>,
    /// The space, once built.
    pub space: Option<&'a SpaceBox>,
    /// The device tensors live on.
    pub device: Device,
    /// The element type of weights and activations.
    pub dtype: DType,
}

impl<'a> BuildContext<'a> {
    /// A context with nothing but the registry: CPU, f32, no experiment, data or space.
    pub fn new(comps: &'a Components) -> Self {
        BuildContext {
            comps,
            exp: None,
            shape: None,
            data: None,
            space: None,
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }

    /// With the data's shape.
    pub fn with_shape(mut self, shape: DataShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// With loaded data (and its shape).
    pub fn with_data(mut self, data: &'a DataSplits) -> Self {
        self.shape = Some(crate::build::data_shape(Some(data)));
        self.data = Some(data);
        self
    }

    /// With the built space.
    pub fn with_space(mut self, space: &'a SpaceBox) -> Self {
        self.space = Some(space);
        self
    }

    /// The data shape: the known one, else CIFAR's (3 x 32 x 32, 10 classes).
    pub fn shape(&self) -> DataShape {
        self.shape.unwrap_or_else(|| crate::build::data_shape(None))
    }

    /// The experiment, or an error naming `what` needs it.
    pub fn experiment(&self, what: &str) -> Result<&'a Experiment> {
        self.exp
            .ok_or_else(|| NasError::Other(format!("{what} is built for an experiment only")))
    }

    /// The loaded data, or an error naming `what` needs it.
    pub fn loaded_data(&self, what: &str) -> Result<&'a DataSplits> {
        self.data.ok_or_else(|| match self.exp {
            Some(exp) => exp.error_at("data", format!("{what} needs a `data` block")),
            None => NasError::Other(format!("{what} needs loaded data")),
        })
    }

    /// The built space, or an error naming `what` needs it.
    pub fn built_space(&self, what: &str) -> Result<&'a SpaceBox> {
        self.space
            .ok_or_else(|| NasError::Other(format!("{what} needs the experiment's space")))
    }

    /// The experiment of an earlier run in `dir` (its `config.resolved.yaml`): estimators
    /// that score with a finished run's weights rebuild it from there.
    pub fn earlier_run(&self, dir: &Path) -> Result<Experiment> {
        nas_config::load_experiment(&dir.join("config.resolved.yaml"), &[])
    }
}
