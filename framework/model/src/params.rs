//! Named trainable parameters, created with seeded PyTorch-style initialisation.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use nas_core::{NasError, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::tensor_err;

/// How a parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's default for `Conv2d` and `Linear`
    /// (kaiming_uniform with a = sqrt(5), which reduces to this bound).
    FanInUniform {
        /// Inputs per output unit (`in/groups * kh * kw`, or `in_features`).
        fan_in: usize,
    },
    /// A constant (batch-norm weight 1, bias 0).
    Const(f64),
    /// `U(lo, hi)`.
    Uniform(f64, f64),
}

/// Named parameters in creation order.
pub struct ParamStore {
    device: Device,
    dtype: DType,
    rng: ChaCha8Rng,
    vars: Vec<(String, Var)>,
    index: HashMap<String, usize>,
    affine_bn: bool,
}

impl ParamStore {
    /// An empty store whose initialisation draws from `rng`.
    pub fn new(device: Device, dtype: DType, rng: ChaCha8Rng) -> Self {
        ParamStore {
            device,
            dtype,
            rng,
            vars: Vec::new(),
            index: HashMap::new(),
            affine_bn: true,
        }
    }

    /// Whether batch norms built on this store have affine parameters (weight and bias):
    /// `true` unless [`ParamStore::set_affine_bn`] turned it off. A space reads it when it
    /// creates a batch norm, so one build function serves a supernet without affine batch
    /// norms (the SPOS reference supernet: `affine=False`) and its standalone networks
    /// (affine).
    pub fn affine_bn(&self) -> bool {
        self.affine_bn
    }

    /// Sets what [`ParamStore::affine_bn`] returns for the batch norms built afterwards.
    pub fn set_affine_bn(&mut self, affine: bool) {
        self.affine_bn = affine;
    }

    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Creates a parameter; names must be unique.
    pub fn var(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        if self.index.contains_key(name) {
            return Err(NasError::Other(format!("parameter `{name}` created twice")));
        }
        let n: usize = shape.iter().product();
        let data: Vec<f64> = match init {
            Init::FanInUniform { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f64).sqrt();
                (0..n).map(|_| self.rng.random_range(-b..b)).collect()
            }
            Init::Const(c) => vec![c; n],
            Init::Uniform(lo, hi) => (0..n).map(|_| self.rng.random_range(lo..hi)).collect(),
        };
        let t = Tensor::from_vec(data, shape, &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(tensor_err)?;
        let v = Var::from_tensor(&t).map_err(tensor_err)?;
        self.index.insert(name.to_string(), self.vars.len());
        self.vars.push((name.to_string(), v.clone()));
        Ok(v)
    }

    /// Every parameter with its name, in creation order.
    pub fn named(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.index.get(name).map(|&i| &self.vars[i].1)
    }

    /// Total number of scalar parameters.
    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Number of scalar parameters whose name does not start with any of `prefixes`.
    pub fn count_excluding(&self, prefixes: &[&str]) -> usize {
        self.vars
            .iter()
            .filter(|(n, _)| !prefixes.iter().any(|p| n.starts_with(p)))
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// Writes every parameter (as f32 or the store's dtype) to a safetensors file,
    /// atomically (temp file, then rename).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&tensors.into_iter().collect::<HashMap<_, _>>(), &tmp)
            .map_err(tensor_err)?;
        std::fs::rename(&tmp, path).map_err(|e| NasError::io(path, e))
    }

    /// Loads parameters saved by [`ParamStore::save_safetensors`]; every name and shape must
    /// match this store exactly.
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        let loaded = candle_core::safetensors::load(path, &self.device)
            .map_err(|e| NasError::data(path, e.to_string()))?;
        if loaded.len() != self.vars.len() {
            return Err(NasError::data(
                path,
                format!(
                    "has {} tensors, the model has {} parameters (a checkpoint of another config?)",
                    loaded.len(),
                    self.vars.len()
                ),
            ));
        }
        for (name, var) in &self.vars {
            let t = loaded
                .get(name)
                .ok_or_else(|| NasError::data(path, format!("parameter `{name}` is missing")))?;
            if t.dims() != var.dims() {
                return Err(NasError::data(
                    path,
                    format!(
                        "parameter `{name}` has shape {:?}, the model needs {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(self.dtype).map_err(tensor_err)?)
                .map_err(tensor_err)?;
        }
        Ok(())
    }
}
