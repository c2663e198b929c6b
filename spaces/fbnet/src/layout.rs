//! The FBNet layout and its params.
use nas_core::params::ensure;
use nas_core::{decode_params, ComponentInfo, ComponentKind, ParamDoc, Result};
use nas_model::DataShape;
use nas_space_chain::{
    Act, ChainLayout, ChainSpace, LatencyTable, LayerPlan, OptionPlan, Shape, Step, Variant,
};
use serde::{Deserialize, Serialize};

/// Registered name.
pub const NAME: &str = "fbnet";
const COMPONENT: &str = "space fbnet";

/// The nine candidates, in the paper's Table 2 order.
pub const OPS: [&str; 9] = [
    "k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip",
];

/// `space.params` of `fbnet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FbnetParams {
    /// `imagenet` or `cifar` (default; stride 1 in the stem and the 24-channel stage).
    pub variant: Variant,
    /// Stem channels (16).
    pub stem_channels: usize,
    /// Output channels per stage (16, 24, 32, 64, 112, 184, 352).
    pub stage_channels: Vec<usize>,
    /// Layers per stage (1, 4, 4, 4, 4, 4, 1).
    pub stage_depths: Vec<usize>,
    /// Stride of each stage's first layer (1, 2, 2, 2, 1, 2, 1).
    pub stage_strides: Vec<usize>,
    /// Channels of the last 1x1 convolution (1984; FBNet-A: 1504).
    pub last_channels: usize,
    /// A latency table (JSON) to load into the option costs.
    pub latency_table: Option<String>,
}

impl Default for FbnetParams {
    fn default() -> Self {
        FbnetParams {
            variant: Variant::Cifar,
            stem_channels: 16,
            stage_channels: vec![16, 24, 32, 64, 112, 184, 352],
            stage_depths: vec![1, 4, 4, 4, 4, 4, 1],
            stage_strides: vec![1, 2, 2, 2, 1, 2, 1],
            last_channels: 1984,
            latency_table: None,
        }
    }
}

/// Registry information.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: NAME.into(),
        summary: "FBNet space (Wu et al. 2019): 22 layers x 9 candidates (k3/k5, e1/e3/e6, g2 + shuffle, skip)".into(),
        defaults: serde_json::to_value(FbnetParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new("variant", "imagenet (paper strides) | cifar (stride 1 in the stem and the 24-channel stage)"),
            ParamDoc::new("stem_channels", "stem channels (16)"),
            ParamDoc::new("stage_channels", "channels per stage (16, 24, 32, 64, 112, 184, 352)"),
            ParamDoc::new("stage_depths", "layers per stage (1, 4, 4, 4, 4, 4, 1)"),
            ParamDoc::new("stage_strides", "first-layer stride per stage (1, 2, 2, 2, 1, 2, 1)"),
            ParamDoc::new("last_channels", "last 1x1 conv channels (1984; FBNet-A: 1504)"),
            ParamDoc::new("latency_table", "latency table JSON to load into the option costs"),
        ],
        origin: "built-in".into(),
    }
}

/// The FBNet space.
pub type FbnetSpace = ChainSpace<FbnetLayout>;

/// The FBNet layout.
pub struct FbnetLayout {
    input: Shape,
    classes: usize,
    stem: usize,
    stem_stride: usize,
    last: usize,
    layers: Vec<LayerPlan>,
}

/// The plan of candidate `name` from `c_in` to `c_out` channels with `stride`.
pub fn candidate(name: &str, c_in: usize, c_out: usize, stride: usize) -> OptionPlan {
    let shortcut = stride == 1 && c_in == c_out;
    if name == "skip" {
        return if shortcut {
            OptionPlan::identity()
        } else {
            OptionPlan::Residual {
                steps: vec![Step::Conv {
                    c_out,
                    k: 1,
                    stride,
                    groups: 1,
                    act: Act::Relu,
                }],
                shortcut: false,
            }
        };
    }
    let b = name.as_bytes();
    let k = (b[1] - b'0') as usize;
    let e = (b[4] - b'0') as usize;
    let g = if name.ends_with("_g2") { 2 } else { 1 };
    let mid = c_in * e;
    let mut steps = vec![Step::gpw(mid, g, Act::Relu)];
    if g > 1 {
        steps.push(Step::Shuffle(g));
    }
    steps.push(Step::dw(mid, k, stride, Act::Relu));
    steps.push(Step::gpw(c_out, g, Act::None));
    OptionPlan::Residual { steps, shortcut }
}

impl FbnetLayout {
    /// The layout of `p` on data of `shape` (checks the params).
    pub fn new(p: &FbnetParams, shape: DataShape) -> Result<Self> {
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
            "every stage needs a layer",
        )?;
        ensure(
            p.stage_strides.iter().all(|&s| s == 1 || s == 2),
            COMPONENT,
            "stage_strides",
            "strides are 1 or 2",
        )?;
        ensure(
            p.stem_channels.is_multiple_of(2)
                && p.stage_channels
                    .iter()
                    .all(|&c| c >= 2 && c.is_multiple_of(2)),
            COMPONENT,
            "stage_channels",
            "channels must be even (the g2 candidates use 2 groups)",
        )?;
        ensure(
            p.last_channels >= 1,
            COMPONENT,
            "last_channels",
            "must be >= 1",
        )?;
        let (stem_stride, cifar) = match p.variant {
            Variant::Imagenet => (2, false),
            Variant::Cifar => (1, true),
        };
        let input = Shape::new(shape.channels, shape.height, shape.width);
        let mut s = input.conv(p.stem_channels, 3, stem_stride);
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
                layers.push(LayerPlan {
                    key: format!("stage{}.layer{j}", i + 1),
                    group: format!("stage{}", i + 1),
                    input: s,
                    options: OPS
                        .iter()
                        .map(|o| (o.to_string(), candidate(o, s.c, c, stride)))
                        .collect(),
                });
                s = s.conv(c, 3, stride);
            }
        }
        Ok(FbnetLayout {
            input,
            classes: shape.num_classes,
            stem: p.stem_channels,
            stem_stride,
            last: p.last_channels,
            layers,
        })
    }
}

impl ChainLayout for FbnetLayout {
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
        vec![Step::conv(self.stem, 3, self.stem_stride, Act::Relu)]
    }
    fn layers(&self) -> &[LayerPlan] {
        &self.layers
    }
    fn tail(&self) -> Vec<Step> {
        vec![Step::pw(self.last, Act::Relu)]
    }
    fn classifier_bias(&self) -> bool {
        true
    }
}

/// The space for the untyped `space.params` block on data of `shape`.
pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<FbnetSpace> {
    new_space(&decode_params(COMPONENT, params)?, shape)
}

/// The space for typed params.
pub fn new_space(p: &FbnetParams, shape: DataShape) -> Result<FbnetSpace> {
    let space = ChainSpace::new(FbnetLayout::new(p, shape)?, shape)?;
    match &p.latency_table {
        Some(path) => space.with_latency_table(&LatencyTable::load(std::path::Path::new(path))?),
        None => Ok(space),
    }
}
