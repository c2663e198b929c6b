//! The SPOS layout and its params.
use nas_core::params::ensure;
use nas_core::{decode_params, ComponentInfo, ComponentKind, ParamDoc, Result};
use nas_model::DataShape;
use nas_space_chain::{
    Act, ChainLayout, ChainSpace, LatencyTable, LayerPlan, OptionPlan, Shape, Step, Variant,
};
use serde::{Deserialize, Serialize};

/// Registered name.
pub const NAME: &str = "spos";
const COMPONENT: &str = "space spos";

/// The four choice blocks, in the reference's `blocks_keys` order.
pub const OPS: [&str; 4] = [
    "shufflenet_3x3",
    "shufflenet_5x5",
    "shufflenet_7x7",
    "xception_3x3",
];

/// `space.params` of `spos`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SposParams {
    /// `imagenet` (the reference strides) or `cifar` (stride 1 in the stem and the first
    /// block; the default).
    pub variant: Variant,
    /// Stem output channels (reference: 16).
    pub stem_channels: usize,
    /// Output channels of each stage (reference: 64, 160, 320, 640); even, and each larger
    /// than the stage's input.
    pub stage_channels: Vec<usize>,
    /// Blocks per stage (reference: 4, 4, 8, 4).
    pub stage_repeats: Vec<usize>,
    /// Channels of the last 1x1 convolution (reference: 1024).
    pub last_channels: usize,
    /// Channel scale of each block's middle width (the SPOS channel search); empty: 1.0.
    pub mid_channel_scales: Vec<f64>,
    /// A latency table (JSON, see `nas_space_chain::LatencyTable`) to load into the costs.
    pub latency_table: Option<String>,
    /// Affine batch norms in the supernet. The reference supernet has none
    /// (megvii-model/SinglePathOneShot `src/Supernet/blocks.py` and `network.py`:
    /// `BatchNorm2d(..., affine=False)` everywhere); its standalone networks (`Evaluation/`)
    /// and ours are affine, whatever this says. Default `false`, the reference.
    pub supernet_bn_affine: bool,
}

impl Default for SposParams {
    fn default() -> Self {
        SposParams {
            variant: Variant::Cifar,
            stem_channels: 16,
            stage_channels: vec![64, 160, 320, 640],
            stage_repeats: vec![4, 4, 8, 4],
            last_channels: 1024,
            mid_channel_scales: vec![],
            latency_table: None,
            supernet_bn_affine: false,
        }
    }
}

/// Registry information for `nas list` / `nas describe`.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: NAME.into(),
        summary:
            "SPOS space (Guo et al. 2020): 20 ShuffleNetV2 choice blocks, 3x3/5x5/7x7/Xception"
                .into(),
        defaults: serde_json::to_value(SposParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "variant",
                "imagenet (reference strides) | cifar (stride 1 in the stem and first block)",
            ),
            ParamDoc::new("stem_channels", "stem output channels (reference: 16)"),
            ParamDoc::new(
                "stage_channels",
                "output channels per stage (reference: 64, 160, 320, 640)",
            ),
            ParamDoc::new("stage_repeats", "blocks per stage (reference: 4, 4, 8, 4)"),
            ParamDoc::new(
                "last_channels",
                "channels of the last 1x1 conv (reference: 1024)",
            ),
            ParamDoc::new(
                "mid_channel_scales",
                "per-block scale of the middle width (SPOS channel search); empty: 1.0",
            ),
            ParamDoc::new(
                "latency_table",
                "latency table JSON to load into the option costs",
            ),
            ParamDoc::new(
                "supernet_bn_affine",
                "affine batch norms in the supernet (reference: false; standalone networks are always affine)",
            ),
        ],
        origin: "built-in".into(),
    }
}

/// The SPOS space.
pub type SposSpace = ChainSpace<SposLayout>;

/// The SPOS layout.
pub struct SposLayout {
    input: Shape,
    classes: usize,
    stem: usize,
    stem_stride: usize,
    last: usize,
    layers: Vec<LayerPlan>,
    bn_affine: bool,
}

/// The options of one block: `inp` input channels, `oup` output channels, middle width
/// `mid`, stride, and whether it is the stage's first (projection) block.
fn block_options(
    inp: usize,
    oup: usize,
    mid: usize,
    stride: usize,
    project: bool,
) -> Vec<(String, OptionPlan)> {
    let in_main = if project { inp } else { inp / 2 };
    let outputs = oup - if project { inp } else { inp / 2 };
    let proj = |k: usize| {
        project.then(|| {
            vec![
                Step::dw(inp, k, stride, Act::None),
                Step::pw(inp, Act::Relu),
            ]
        })
    };
    let mut v: Vec<(String, OptionPlan)> = [3, 5, 7]
        .iter()
        .zip(&OPS)
        .map(|(&k, name)| {
            (
                name.to_string(),
                OptionPlan::ShuffleUnit {
                    proj: proj(k),
                    main: vec![
                        Step::pw(mid, Act::Relu),
                        Step::dw(mid, k, stride, Act::None),
                        Step::pw(outputs, Act::Relu),
                    ],
                },
            )
        })
        .collect();
    v.push((
        OPS[3].to_string(),
        OptionPlan::ShuffleUnit {
            proj: proj(3),
            main: vec![
                Step::dw(in_main, 3, stride, Act::None),
                Step::pw(mid, Act::Relu),
                Step::dw(mid, 3, 1, Act::None),
                Step::pw(mid, Act::Relu),
                Step::dw(mid, 3, 1, Act::None),
                Step::pw(outputs, Act::Relu),
            ],
        },
    ));
    v
}

impl SposLayout {
    /// The layout of `p` for data of `shape` (checks the params).
    pub fn new(p: &SposParams, shape: DataShape) -> Result<Self> {
        let n: usize = p.stage_repeats.iter().sum();
        ensure(
            !p.stage_channels.is_empty(),
            COMPONENT,
            "stage_channels",
            "needs at least one stage",
        )?;
        ensure(
            p.stage_channels.len() == p.stage_repeats.len(),
            COMPONENT,
            "stage_repeats",
            format!(
                "{} stages of channels but {} repeat counts",
                p.stage_channels.len(),
                p.stage_repeats.len()
            ),
        )?;
        ensure(
            p.stage_repeats.iter().all(|&r| r >= 1),
            COMPONENT,
            "stage_repeats",
            "every stage needs at least one block",
        )?;
        ensure(
            p.stem_channels >= 1 && p.last_channels >= 1,
            COMPONENT,
            "stem_channels",
            "stem and last channels must be >= 1",
        )?;
        ensure(
            p.mid_channel_scales.is_empty() || p.mid_channel_scales.len() == n,
            COMPONENT,
            "mid_channel_scales",
            format!("needs one scale per block ({n}) or none"),
        )?;
        ensure(
            p.mid_channel_scales
                .iter()
                .all(|s| s.is_finite() && *s > 0.0),
            COMPONENT,
            "mid_channel_scales",
            "scales must be positive",
        )?;
        let (stem_stride, first_stride) = match p.variant {
            Variant::Imagenet => (2, 2),
            Variant::Cifar => (1, 1),
        };
        let input = Shape::new(shape.channels, shape.height, shape.width);
        let mut s = input.conv(p.stem_channels, 3, stem_stride);
        let mut layers = Vec::with_capacity(n);
        let mut idx = 0;
        for (i, (&oup, &rep)) in p.stage_channels.iter().zip(&p.stage_repeats).enumerate() {
            ensure(
                oup.is_multiple_of(2),
                COMPONENT,
                &format!("stage_channels[{i}]"),
                "must be even (channel split)",
            )?;
            ensure(
                oup > s.c,
                COMPONENT,
                &format!("stage_channels[{i}]"),
                format!(
                    "must exceed the stage's {} input channels (the projection branch keeps them)",
                    s.c
                ),
            )?;
            let stage_stride = if i == 0 { first_stride } else { 2 };
            for j in 0..rep {
                let project = j == 0;
                let stride = if project { stage_stride } else { 1 };
                let scale = p.mid_channel_scales.get(idx).copied().unwrap_or(1.0);
                // As the reference: int(base_mid_channels * scale), in double precision.
                let mid = ((oup / 2) as f64 * scale) as usize;
                ensure(
                    mid >= 1,
                    COMPONENT,
                    "mid_channel_scales",
                    format!("block {idx} would have no middle channels"),
                )?;
                layers.push(LayerPlan {
                    key: format!("stage{}.block{j}", i + 1),
                    group: format!("stage{}", i + 1),
                    input: s,
                    options: block_options(s.c, oup, mid, stride, project),
                });
                s = s.conv(oup, 3, stride);
                idx += 1;
            }
        }
        Ok(SposLayout {
            input,
            classes: shape.num_classes,
            stem: p.stem_channels,
            stem_stride,
            last: p.last_channels,
            layers,
            bn_affine: p.supernet_bn_affine,
        })
    }
}

impl ChainLayout for SposLayout {
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
        false
    }
    fn supernet_bn_affine(&self) -> bool {
        self.bn_affine
    }
}

/// The space for the untyped `space.params` block on data of `shape`.
pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<SposSpace> {
    let p: SposParams = decode_params(COMPONENT, params)?;
    new_space(&p, shape)
}

/// The space for typed params.
pub fn new_space(p: &SposParams, shape: DataShape) -> Result<SposSpace> {
    let space = ChainSpace::new(SposLayout::new(p, shape)?, shape)?;
    match &p.latency_table {
        Some(path) => space.with_latency_table(&LatencyTable::load(std::path::Path::new(path))?),
        None => Ok(space),
    }
}
