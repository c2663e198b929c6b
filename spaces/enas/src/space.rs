//! [`EnasMicroSpace`]: the ENAS micro space as a [`SearchSpace`], and its notation.
use candle_core::{DType, Device};
use nas_core::{
    argmax_derive, decode_params, Architecture, ComponentInfo, ComponentKind, Cost, MixingWeights,
    NasError, ParamDoc, Result, SpaceRules, SpaceSpec,
};
use nas_model::{DataShape, Network, NetworkConfig, SearchSpace, Supernet};
use rand_chacha::ChaCha8Rng;

use crate::layout::{self, EnasSpaceParams, NODES, OPS, SPACE};
use crate::network::EnasNetwork;
use crate::supernet::{check_data, EnasSupernet};

/// The ENAS micro cell space.
pub struct EnasMicroSpace {
    params: EnasSpaceParams,
    shape: DataShape,
    spec: SpaceSpec,
}

/// Registry information for `nas list` / `nas describe`.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: SPACE.into(),
        summary: "ENAS micro cells (Pham et al. 2018): 5 nodes, each two inputs and two ops \
                  of 5; per-candidate weights; paths only"
            .into(),
        defaults: serde_json::to_value(EnasSpaceParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "channels",
                "out_filters of the search network (reference 20)",
            ),
            ParamDoc::new(
                "layers",
                "normal layers of the search network (reference 6); 2 reductions are added",
            ),
            ParamDoc::new(
                "retrain_channels",
                "out_filters of the standalone network (reference final 36)",
            ),
            ParamDoc::new(
                "retrain_layers",
                "normal layers of the standalone network (reference final 15)",
            ),
        ],
        origin: "built-in".into(),
    }
}

const BAD_PARAMS: &str = "space enas-micro";

impl EnasMicroSpace {
    /// The space for `params` (the untyped `space.params` block) on data of `shape`.
    pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<Self> {
        let p: EnasSpaceParams = decode_params(BAD_PARAMS, params)?;
        Self::new(p, shape)
    }

    /// The space for checked params.
    pub fn new(params: EnasSpaceParams, shape: DataShape) -> Result<Self> {
        let bad = |path: &str, message: &str| NasError::InvalidParams {
            component: BAD_PARAMS.into(),
            path: path.into(),
            message: message.into(),
        };
        for (k, c) in [
            ("channels", params.channels),
            ("retrain_channels", params.retrain_channels),
        ] {
            if c == 0 || !c.is_multiple_of(2) {
                return Err(bad(
                    k,
                    "must be even and > 0 (the factorized reduction halves it)",
                ));
            }
        }
        for (k, l) in [
            ("layers", params.layers),
            ("retrain_layers", params.retrain_layers),
        ] {
            if l < 3 {
                return Err(bad(
                    k,
                    "must be >= 3 (reductions at layers/3 and 2*(layers/3)+1)",
                ));
            }
        }
        check_data(shape)?;
        let spec = layout::spec(&op_costs(&params, shape), Cost::default());
        Ok(EnasMicroSpace {
            params,
            shape,
            spec,
        })
    }

    /// The space's params.
    pub fn params(&self) -> &EnasSpaceParams {
        &self.params
    }
}

/// Per cell type, what each op adds to the search network summed over that cell type's
/// layers (two 2-stack separable convolutions at the layer's width; pools and identity
/// add nothing).
fn op_costs(p: &EnasSpaceParams, s: DataShape) -> [[Cost; 5]; 2] {
    let mut costs = [[Cost::default(); 5]; 2];
    let pools = layout::pool_layers(p.layers);
    let (mut c, mut h) = (p.channels, s.height);
    for l in 0..p.layers + 2 {
        let reduce = pools.contains(&l);
        if reduce {
            c *= 2;
            h = h.div_ceil(2);
        }
        for (op, k) in [(0, 3usize), (1, 5usize)] {
            let params = 2.0 * (c * k * k + c * c + 2 * c) as f64;
            let flops = 2.0 * ((c * k * k + c * c) * h * h) as f64;
            let cost = &mut costs[usize::from(reduce)][op];
            cost.params += params;
            cost.flops += flops;
        }
    }
    costs
}

/// The reference's arc notation: `normal: 20 integers | reduce: 20 integers`, each node
/// `x_id x_op y_id y_op` (ops: 0 sep 3x3, 1 sep 5x5, 2 avg pool, 3 max pool, 4 identity).
pub fn format_arc(choices: &[usize]) -> String {
    let j = |s: &[usize]| {
        s.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let n = 4 * NODES;
    format!(
        "normal: {} | reduce: {}",
        j(&choices[..n.min(choices.len())]),
        j(&choices[n.min(choices.len())..])
    )
}

/// Parses [`format_arc`]'s notation, or the reference's bare 40 integers (`fixed_arc`).
pub fn parse_arc(text: &str) -> Result<Vec<usize>> {
    let cleaned = text
        .replace("normal:", " ")
        .replace("reduce:", " ")
        .replace(['|', ';', ','], " ");
    let v = cleaned
        .split_whitespace()
        .map(|t| {
            t.parse::<usize>().map_err(|_| {
                NasError::Architecture(format!(
                    "enas-micro arc: `{t}` is not a non-negative integer (expected \
                     `normal: 20 integers | reduce: 20 integers`)"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if v.len() != 8 * NODES {
        return Err(NasError::Architecture(format!(
            "enas-micro arc has {} integers, needs {} (normal then reduce, `x_id x_op y_id y_op` per node)",
            v.len(),
            8 * NODES
        )));
    }
    Ok(v)
}

impl SpaceRules for EnasMicroSpace {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    /// Argmax per decision (the space has no relaxation; this serves strategies that keep
    /// per-decision probabilities).
    fn derive(&self, weights: &MixingWeights, _mode: &str) -> Result<Architecture> {
        argmax_derive(&self.spec, weights)
    }

    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        let t = text.trim();
        let arch = if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            if let Some(a) = v.get("fixed_arc").and_then(|a| a.as_str()) {
                Architecture::new(SPACE, parse_arc(a)?)
            } else {
                serde_json::from_value(v.get("architecture").cloned().unwrap_or(v))
                    .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?
            }
        } else {
            Architecture::new(SPACE, parse_arc(t)?)
        };
        self.spec.check(&arch)?;
        Ok(arch)
    }

    fn format_arch(&self, arch: &Architecture) -> String {
        format_arc(&arch.choices)
    }
}

impl SearchSpace for EnasMicroSpace {
    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn build_supernet(
        &self,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Supernet>> {
        Ok(Box::new(EnasSupernet::new(
            self.shape,
            self.params.channels,
            self.params.layers,
            device,
            dtype,
            rng,
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
        check_cfg(cfg)?;
        Ok(Box::new(EnasNetwork::new(
            &arch.choices,
            self.shape,
            cfg,
            device,
            dtype,
            rng,
        )?))
    }

    fn network_cost(&self, arch: &Architecture, cfg: &NetworkConfig) -> Result<Cost> {
        self.spec.check(arch)?;
        check_cfg(cfg)?;
        let cfg = NetworkConfig {
            auxiliary: false,
            ..*cfg
        };
        let net = EnasNetwork::new(
            &arch.choices,
            self.shape,
            &cfg,
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(0, "enas-micro.cost"),
        )?;
        Ok(Cost {
            params: net.param_count() as f64,
            flops: net.flops(),
            latency_ms: None,
        })
    }

    fn default_network_config(&self) -> NetworkConfig {
        NetworkConfig {
            channels: self.params.retrain_channels,
            layers: self.params.retrain_layers,
            auxiliary: true,
        }
    }
}

fn check_cfg(cfg: &NetworkConfig) -> Result<()> {
    if cfg.channels == 0 || !cfg.channels.is_multiple_of(2) || cfg.layers < 3 {
        return Err(NasError::Architecture(format!(
            "enas-micro networks need even channels and >= 3 layers, got {} channels, {} layers",
            cfg.channels, cfg.layers
        )));
    }
    Ok(())
}

/// The op names (for reports).
pub fn op_names() -> [&'static str; 5] {
    OPS
}
