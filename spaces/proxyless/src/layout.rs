//! The ProxylessNAS layout and its params.
use nas_core::params::ensure;
use nas_core::{decode_params, ComponentInfo, ComponentKind, ParamDoc, Result};
use nas_model::DataShape;
use nas_space_chain::{
    Act, ChainLayout, ChainSpace, LatencyTable, LayerPlan, OptionPlan, Shape, Step, Variant,
};
use serde::{Deserialize, Serialize};

/// Registered name.
pub const NAME: &str = "proxyless";
const COMPONENT: &str = "space proxyless";

/// The MBConv candidates, in the reference order; blocks with a shortcut add `zero`.
pub const OPS: [&str; 6] = ["k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6"];

/// `space.params` of `proxyless`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxylessParams {
    /// `imagenet` or `cifar` (default; stride 1 in the stem and the first stage).
    pub variant: Variant,
    /// Stem channels (GPU model: 40).
    pub stem_channels: usize,
    /// Output channels of the fixed MBConv1 3x3 block (GPU model: 24).
    pub first_channels: usize,
    /// Output channels per stage (GPU model: 32, 56, 112, 128, 256, 432).
    pub stage_channels: Vec<usize>,
    /// Blocks per stage (4, 4, 4, 4, 4, 1).
    pub stage_depths: Vec<usize>,
    /// Stride of each stage's first block (2, 2, 2, 1, 2, 1).
    pub stage_strides: Vec<usize>,
    /// Channels of the feature-mix 1x1 convolution (GPU model: 1728).
    pub last_channels: usize,
    /// A latency table (JSON) to load into the option costs.
    pub latency_table: Option<String>,
}

impl Default for ProxylessParams {
    fn default() -> Self {
        ProxylessParams {
            variant: Variant::Cifar,
            stem_channels: 40,
            first_channels: 24,
            stage_channels: vec![32, 56, 112, 128, 256, 432],
            stage_depths: vec![4, 4, 4, 4, 4, 1],
            stage_strides: vec![2, 2, 2, 1, 2, 1],
            last_channels: 1728,
            latency_table: None,
        }
    }
}

/// Registry information.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: NAME.into(),
        summary: "ProxylessNAS space (Cai et al. 2019): MBConv k{3,5,7} x e{3,6}, zero on shortcut blocks".into(),
        defaults: serde_json::to_value(ProxylessParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("variant", "imagenet (paper strides) | cifar (stride 1 in the stem and first stage)"),
            ParamDoc::new("stem_channels", "stem channels (GPU model: 40)"),
            ParamDoc::new("first_channels", "fixed MBConv1 block's output (GPU model: 24)"),
            ParamDoc::new("stage_channels", "channels per stage (GPU model: 32, 56, 112, 128, 256, 432)"),
            ParamDoc::new("stage_depths", "blocks per stage (4, 4, 4, 4, 4, 1)"),
            ParamDoc::new("stage_strides", "first-block stride per stage (2, 2, 2, 1, 2, 1)"),
            ParamDoc::new("last_channels", "feature-mix channels (GPU model: 1728)"),
            ParamDoc::new("latency_table", "latency table JSON to load into the option costs"),
        ],
        origin: "built-in".into(),
    }
}

/// The ProxylessNAS space.
pub type ProxylessSpace = ChainSpace<ProxylessLayout>;

/// The ProxylessNAS layout.
pub struct ProxylessLayout {
    input: Shape,
    classes: usize,
    stem: Vec<Step>,
    last: usize,
    layers: Vec<LayerPlan>,
}

/// The MBConv steps `c_in -> c_out` with kernel `k`, expansion `e` and `stride` (no
/// expansion convolution when `e == 1`, as the reference).
pub fn mbconv(c_in: usize, c_out: usize, k: usize, e: usize, stride: usize) -> Vec<Step> {
    let mid = c_in * e;
    let mut v = Vec::with_capacity(3);
    if e > 1 {
        v.push(Step::pw(mid, Act::Relu6));
    }
    v.push(Step::dw(mid, k, stride, Act::Relu6));
    v.push(Step::pw(c_out, Act::None));
    v
}

impl ProxylessLayout {
    /// The layout of `p` on data of `shape` (checks the params).
    pub fn new(p: &ProxylessParams, shape: DataShape) -> Result<Self> {
        let n = p.stage_channels.len();
        ensure(
            n >= 1,
            COMPONENT,
            "stage_channels",
            "needs at least one stage",
        )?;
        ensure(
            p.stage_depths.len() == n && p.stage_strides.len() == n,
            COMPONENT,
            "stage_depths",
            format!(
                "stage_channels, stage_depths and stage_strides need one entry per stage ({n})"
            ),
        )?;
        ensure(
            p.stage_depths.iter().all(|&d| d >= 1),
            COMPONENT,
            "stage_depths",
            "every stage needs a block",
        )?;
        ensure(
            p.stage_strides.iter().all(|&s| s == 1 || s == 2),
            COMPONENT,
            "stage_strides",
            "strides are 1 or 2",
        )?;
        ensure(
            p.stem_channels >= 1
                && p.first_channels >= 1
                && p.last_channels >= 1
                && p.stage_channels.iter().all(|&c| c >= 1),
            COMPONENT,
            "stage_channels",
            "channels must be >= 1",
        )?;
        let (stem_stride, cifar) = match p.variant {
            Variant::Imagenet => (2, false),
            Variant::Cifar => (1, true),
        };
        let input = Shape::new(shape.channels, shape.height, shape.width);
        let mut stem = vec![Step::conv(p.stem_channels, 3, stem_stride, Act::Relu6)];
        stem.extend(mbconv(p.stem_channels, p.first_channels, 3, 1, 1));
        let mut s = input
            .conv(p.stem_channels, 3, stem_stride)
            .conv(p.first_channels, 3, 1);
        let mut layers = Vec::new();
        let mut first_strided = true;
        for (i, ((&c, &d), &st)) in p
            .stage_channels
            .iter()
            .zip(&p.stage_depths)
            .zip(&p.stage_strides)
            .enumerate()
        {
            let mut stride0 = st;
            if cifar && st == 2 && first_strided {
                stride0 = 1;
            }
            if st == 2 {
                first_strided = false;
            }
            for j in 0..d {
                let stride = if j == 0 { stride0 } else { 1 };
                let shortcut = stride == 1 && s.c == c;
                let mut options: Vec<(String, OptionPlan)> = OPS
                    .iter()
                    .map(|name| {
                        let k = (name.as_bytes()[1] - b'0') as usize;
                        let e = (name.as_bytes()[4] - b'0') as usize;
                        (
                            name.to_string(),
                            OptionPlan::Residual {
                                steps: mbconv(s.c, c, k, e, stride),
                                shortcut,
                            },
                        )
                    })
                    .collect();
                if shortcut {
                    options.push(("zero".into(), OptionPlan::identity()));
                }
                layers.push(LayerPlan {
                    key: format!("stage{}.block{j}", i + 1),
                    group: format!("stage{}", i + 1),
                    input: s,
                    options,
                });
                s = s.conv(c, 3, stride);
            }
        }
        Ok(ProxylessLayout {
            input,
            classes: shape.num_classes,
            stem,
            last: p.last_channels,
            layers,
        })
    }
}

impl ChainLayout for ProxylessLayout {
    fn space(&self) -> &str {
        NAME
    }
    fn input(&self) -> Shape {
        self.input
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn stem(&self) -> Vec<Step> {
        self.stem.clone()
    }
    fn layers(&self) -> &[LayerPlan] {
        &self.layers
    }
    fn tail(&self) -> Vec<Step> {
        vec![Step::pw(self.last, Act::Relu6)]
    }
    fn classifier_bias(&self) -> bool {
        true
    }
}

/// The space for the untyped `space.params` block on data of `shape`.
pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<ProxylessSpace> {
    new_space(&decode_params(COMPONENT, params)?, shape)
}

/// The space for typed params.
pub fn new_space(p: &ProxylessParams, shape: DataShape) -> Result<ProxylessSpace> {
    let space = ChainSpace::new(ProxylessLayout::new(p, shape)?, shape)?;
    match &p.latency_table {
        Some(path) => space.with_latency_table(&LatencyTable::load(std::path::Path::new(path))?),
        None => Ok(space),
    }
}
