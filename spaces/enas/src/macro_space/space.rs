//! [`EnasMacroSpace`]: the ENAS macro space as a [`SearchSpace`].
use candle_core::{DType, Device};
use nas_core::{
    argmax_derive, decode_params, Architecture, ComponentInfo, ComponentKind, Cost, MixingWeights,
    NasError, ParamDoc, Result, SpaceRules, SpaceSpec,
};
use nas_model::{DataShape, Network, NetworkConfig, SearchSpace, Supernet};
use rand_chacha::ChaCha8Rng;

use super::layout::{
    self, format_macro_arc, parse_macro_arc, pool_layers, MacroSpaceParams, MACRO_SPACE,
};
use super::network::MacroNetwork;
use super::supernet::MacroSupernet;

/// The ENAS macro space.
pub struct EnasMacroSpace {
    params: MacroSpaceParams,
    shape: DataShape,
    spec: SpaceSpec,
}

/// Registry information for `nas list` / `nas describe`.
pub fn macro_space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: MACRO_SPACE.into(),
        summary: "ENAS macro networks (Pham et al. 2018): per layer one op of 6 and a skip \
                  bit per earlier output; per-(layer, op) weights; paths only"
            .into(),
        defaults: serde_json::to_value(MacroSpaceParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "layers",
                "layers (reference search 12; the published final arc has 24)",
            ),
            ParamDoc::new(
                "channels",
                "out_filters of the search network, constant (reference search 36)",
            ),
            ParamDoc::new(
                "retrain_channels",
                "channels of the standalone network, doubled at each reduction (reference final 96)",
            ),
            ParamDoc::new(
                "retrain_sep_as_conv",
                "standalone sep ops as plain convs, as the reference's _fixed_layer (false)",
            ),
        ],
        origin: "built-in".into(),
    }
}

impl EnasMacroSpace {
    /// The space for `params` (the untyped `space.params` block) on data of `shape`.
    pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<Self> {
        let p: MacroSpaceParams = decode_params("space enas-macro", params)?;
        Self::new(p, shape)
    }

    /// The space for checked params.
    pub fn new(params: MacroSpaceParams, shape: DataShape) -> Result<Self> {
        params.check()?;
        if shape.height == 0 || shape.width == 0 {
            return Err(NasError::Architecture(
                "enas-macro needs inputs of at least 1x1".into(),
            ));
        }
        let (ops, skips, fixed) = costs(&params, shape);
        let spec = layout::spec(params.layers, &ops, &skips, fixed);
        Ok(EnasMacroSpace {
            params,
            shape,
            spec,
        })
    }

    /// The space's params.
    pub fn params(&self) -> &MacroSpaceParams {
        &self.params
    }
}

/// What each option adds to the search network (parameters, multiply-accumulates): per
/// layer the op's 1x1 conv-BN and its `k x k` conv-BN (pools: the 1x1 conv-BN and 9 taps
/// per output), per skip one addition per output element; the fixed part is the stem, the
/// skip BNs, the factorized reductions and the classifier.
fn costs(p: &MacroSpaceParams, s: DataShape) -> (Vec<[Cost; 6]>, Vec<Cost>, Cost) {
    let c = p.channels;
    let pools = pool_layers(p.layers);
    let (mut h, mut w) = (s.height, s.width);
    let bn = 2 * c;
    let mut fixed = Cost {
        params: (9 * s.channels * c + bn) as f64,
        flops: (9 * s.channels * c * h * w) as f64,
        latency_ms: None,
    };
    let (mut ops, mut skips) = (Vec::new(), Vec::new());
    for l in 0..p.layers {
        let px = h * w;
        let inp = c * c + bn;
        let per_op = |k: usize, sep: bool| -> (usize, usize) {
            let conv = if sep {
                k * k * c + c * c
            } else {
                k * k * c * c
            };
            (inp + conv + bn, (c * c + conv) * px)
        };
        let mut row = [Cost::default(); 6];
        for (op, slot) in row.iter_mut().enumerate() {
            let (params, macs) = match op {
                0 => per_op(3, false),
                1 => per_op(3, true),
                2 => per_op(5, false),
                3 => per_op(5, true),
                _ => (inp, (c * c + 9 * c) * px),
            };
            *slot = Cost {
                params: params as f64,
                flops: macs as f64,
                latency_ms: None,
            };
        }
        ops.push(row);
        skips.push(Cost {
            params: 0.0,
            flops: (c * px) as f64,
            latency_ms: None,
        });
        if l > 0 {
            fixed.params += bn as f64;
        }
        if pools.contains(&l) {
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
            fixed.params += ((l + 2) * (c * c + bn)) as f64;
            fixed.flops += ((l + 2) * c * c * h * w) as f64;
        }
    }
    fixed.params += (c * s.num_classes) as f64;
    fixed.flops += (c * s.num_classes) as f64;
    (ops, skips, fixed)
}

impl SpaceRules for EnasMacroSpace {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    /// Argmax per decision (the space has no relaxation).
    fn derive(&self, weights: &MixingWeights, _mode: &str) -> Result<Architecture> {
        argmax_derive(&self.spec, weights)
    }

    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        let t = text.trim();
        let layers = self.params.layers;
        let arch = if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            if let Some(a) = v.get("fixed_arc").and_then(|a| a.as_str()) {
                Architecture::new(MACRO_SPACE, parse_macro_arc(a, layers)?)
            } else {
                serde_json::from_value(v.get("architecture").cloned().unwrap_or(v))
                    .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?
            }
        } else {
            Architecture::new(MACRO_SPACE, parse_macro_arc(t, layers)?)
        };
        self.spec.check(&arch)?;
        Ok(arch)
    }

    fn format_arch(&self, arch: &Architecture) -> String {
        format_macro_arc(&arch.choices, self.params.layers)
    }
}

impl SearchSpace for EnasMacroSpace {
    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn build_supernet(
        &self,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Supernet>> {
        Ok(Box::new(MacroSupernet::new(
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
        Ok(Box::new(self.network(arch, cfg, device, dtype, rng)?))
    }

    fn network_cost(&self, arch: &Architecture, cfg: &NetworkConfig) -> Result<Cost> {
        let net = self.network(
            arch,
            cfg,
            &Device::Cpu,
            DType::F32,
            nas_core::component_rng(0, "enas-macro.cost"),
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
            layers: self.params.layers,
            auxiliary: false,
        }
    }
}

impl EnasMacroSpace {
    /// The standalone network of `arch` (checked against the space and `cfg`).
    pub fn network(
        &self,
        arch: &Architecture,
        cfg: &NetworkConfig,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<MacroNetwork> {
        self.spec.check(arch)?;
        if cfg.channels == 0 || !cfg.channels.is_multiple_of(2) {
            return Err(NasError::Architecture(format!(
                "enas-macro networks need even channels > 0, got {}",
                cfg.channels
            )));
        }
        if cfg.layers != self.params.layers {
            return Err(NasError::Architecture(format!(
                "an enas-macro architecture fixes the layer count: the space has {} layers, \
                 `train.layers` is {}",
                self.params.layers, cfg.layers
            )));
        }
        if cfg.auxiliary {
            return Err(NasError::Architecture(
                "the enas-macro network has no auxiliary head (the reference's macro child \
                 builds none); set `train.auxiliary: false`"
                    .into(),
            ));
        }
        MacroNetwork::new(
            &arch.choices,
            self.shape,
            cfg.channels,
            self.params.retrain_sep_as_conv,
            device,
            dtype,
            rng,
        )
    }
}
