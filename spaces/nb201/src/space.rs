//! [`Nb201Space`]: the NAS-Bench-201 space with its tensor side, so that one-shot strategies
//! (DARTS, GDAS, SPOS, ...) search it on real data, and standalone networks of its cells can
//! be built and retrained.
use candle_core::{DType, Device};
use nas_core::{
    argmax_derive, decode_params, Architecture, ComponentInfo, ComponentKind, Cost, MixingWeights,
    NasError, ParamDoc, Result, SpaceRules, SpaceSpec,
};
use nas_model::{DataShape, Network, NetworkConfig, ParamStore, SearchSpace, Supernet};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arch_str::{parse_arch_str, to_arch_str};
use crate::spec::{nb201_spec, SPACE_NAME};
use crate::tiny::{tiny_cost, Edges, TinyNet};

/// Parameters of the space (`space.params`). The defaults are the benchmark's own network:
/// `C = 16`, `N = 5` (Dong & Yang 2020, section 2.1), for the supernet and for retraining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nb201SpaceParams {
    /// Channels of the first stage of the supernet (`C`).
    pub channels: usize,
    /// Cells per stage of the supernet (`N`).
    pub cells: usize,
    /// Channels of the first stage of standalone networks.
    pub retrain_channels: usize,
    /// Cells per stage of standalone networks (`NetworkConfig::layers` for this space).
    pub retrain_cells: usize,
}

impl Default for Nb201SpaceParams {
    fn default() -> Self {
        Nb201SpaceParams {
            channels: 16,
            cells: 5,
            retrain_channels: 16,
            retrain_cells: 5,
        }
    }
}

/// Registry information of the space.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: SPACE_NAME.into(),
        summary: "NAS-Bench-201 cell space (Dong & Yang 2020): 6 edges x 5 ops, TinyNetwork \
                  supernet; tabular estimator nb201_table"
            .into(),
        defaults: serde_json::to_value(Nb201SpaceParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "channels",
                "first-stage channels C of the supernet (NB201: 16)",
            ),
            ParamDoc::new("cells", "cells per stage N of the supernet (NB201: 5)"),
            ParamDoc::new("retrain_channels", "C of standalone networks (NB201: 16)"),
            ParamDoc::new("retrain_cells", "N of standalone networks (NB201: 5)"),
        ],
        origin: "built-in".into(),
    }
}

/// The NAS-Bench-201 space: plain rules (arch strings, argmax derivation as the
/// benchmark's DARTS search derives, `none` included) and the tensor side.
pub struct Nb201Space {
    params: Nb201SpaceParams,
    shape: DataShape,
    spec: SpaceSpec,
}

impl Nb201Space {
    /// The space from the untyped `space.params` block, for data of `shape`.
    pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<Self> {
        Self::new(decode_params("space nb201", params)?, shape)
    }

    /// The space from typed params.
    pub fn new(params: Nb201SpaceParams, shape: DataShape) -> Result<Self> {
        for (key, v) in [
            ("channels", params.channels),
            ("cells", params.cells),
            ("retrain_channels", params.retrain_channels),
            ("retrain_cells", params.retrain_cells),
        ] {
            if v == 0 {
                return Err(NasError::InvalidParams {
                    component: "space nb201".into(),
                    path: key.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        Ok(Nb201Space {
            params,
            shape,
            spec: nb201_spec(),
        })
    }

    /// The params.
    pub fn params(&self) -> &Nb201SpaceParams {
        &self.params
    }
}

impl SpaceRules for Nb201Space {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        match mode {
            "default" | "argmax" => argmax_derive(&self.spec, weights),
            m => Err(NasError::Architecture(format!(
                "unknown derivation mode `{m}` for nb201; known: argmax (default)"
            ))),
        }
    }

    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        let t = text.trim();
        if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            if let Some(s) = v.get("notation").and_then(|s| s.as_str()) {
                return parse_arch_str(s);
            }
            let a: Architecture =
                serde_json::from_value(v.get("architecture").cloned().unwrap_or(v))
                    .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            self.spec.check(&a)?;
            return Ok(a);
        }
        parse_arch_str(t)
    }

    fn format_arch(&self, arch: &Architecture) -> String {
        to_arch_str(arch).unwrap_or_else(|e| format!("<invalid: {e}>"))
    }

    /// The one cell: nodes 0 (input) to 3 (output), one edge per non-`none` choice.
    fn cell_diagrams(&self, arch: &Architecture) -> Vec<nas_core::CellDiagram> {
        use nas_core::{DiagramEdge, DiagramNode, NodeKind};
        if self.spec.check(arch).is_err() {
            return Vec::new();
        }
        let last = crate::NUM_NODES - 1;
        let nodes = (0..=last)
            .map(|i| {
                let kind = match i {
                    0 => NodeKind::Input,
                    i if i == last => NodeKind::Output,
                    _ => NodeKind::Inner,
                };
                DiagramNode::new(i.to_string(), kind)
            })
            .collect();
        let edges = crate::EDGES
            .iter()
            .zip(&arch.choices)
            .filter(|(_, &c)| crate::OPS[c] != "none")
            .map(|(&(to, from), &c)| DiagramEdge {
                from,
                to,
                label: Some(crate::OPS[c].to_string()),
            })
            .collect();
        vec![nas_core::CellDiagram {
            title: self.format_arch(arch),
            stem: "cell".into(),
            nodes,
            edges,
        }]
    }

    /// The benchmark's CIFAR-10 figures of `arch` (Dong & Yang 2020, "NAS-Bench-201", Table
    /// 5, compares weight-sharing methods this way): `table_test_acc`, test accuracy after
    /// 200 epochs in % (NATS-Bench tss column `c10_oritest_200`, the figure the table-based
    /// strategies report as `test_acc`), and `table_params_m`, parameters in millions. The
    /// table is looked for where the tabular estimator looks without a `path`
    /// ([`crate::Nb201Table::locate`]); `None` when it is not found.
    fn table_figures(&self, arch: &Architecture) -> Option<nas_core::strategy::Metrics> {
        let table = crate::Nb201Table::locate(None)
            .and_then(crate::Nb201Table::load_shared)
            .ok()?;
        let rec = table.get(arch)?;
        Some(
            [
                ("table_test_acc".to_string(), rec.c10_oritest_200),
                ("table_params_m".to_string(), rec.params_m),
            ]
            .into(),
        )
    }
}

impl SearchSpace for Nb201Space {
    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn build_supernet(
        &self,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Supernet>> {
        let store = ParamStore::new(device.clone(), dtype, rng);
        Ok(Box::new(TinyNet::new(
            Edges::All,
            self.params.channels,
            self.params.cells,
            self.shape,
            store,
        )?))
    }

    fn build_network(
        &self,
        arch: &Architecture,
        cfg: &NetworkConfig,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Network>> {
        self.spec.check(arch)?;
        let store = ParamStore::new(device.clone(), dtype, rng);
        Ok(Box::new(TinyNet::new(
            Edges::Chosen(&arch.choices),
            cfg.channels,
            cfg.layers,
            self.shape,
            store,
        )?))
    }

    fn network_cost(&self, arch: &Architecture, cfg: &NetworkConfig) -> Result<Cost> {
        self.spec.check(arch)?;
        Ok(tiny_cost(
            &arch.choices,
            cfg.channels,
            cfg.layers,
            self.shape,
        ))
    }

    fn default_network_config(&self) -> NetworkConfig {
        NetworkConfig {
            channels: self.params.retrain_channels,
            layers: self.params.retrain_cells,
            auxiliary: false,
        }
    }
}
