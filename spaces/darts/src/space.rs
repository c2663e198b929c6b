//! [`DartsSpace`]: the DARTS space as a [`SearchSpace`].
use candle_core::{DType, Device};
use nas_core::{
    decode_params, Architecture, ComponentInfo, ComponentKind, Cost, Decision, MixingWeights,
    NasError, OptionSpec, ParamDoc, Result, SpaceRules, SpaceSpec,
};
use nas_model::{DataShape, Network, NetworkConfig, ParamStore, SearchSpace, Supernet};
use rand_chacha::ChaCha8Rng;

use crate::genotype::{Gene, Genotype};
use crate::layout::{cell_plan, DartsSpaceParams, Layout, CELL_TYPES};
use crate::network::{CellSpec, DartsNetwork};
use crate::ops::{op_param_count, out_size, KNOWN_OPS};
use crate::supernet::DartsSupernet;

/// The DARTS cell space.
pub struct DartsSpace {
    params: DartsSpaceParams,
    shape: DataShape,
    layout: Layout,
    spec: SpaceSpec,
    none: Option<usize>,
}

/// Registry information for `nas list` / `nas describe`.
pub fn space_info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Space,
        name: "darts".into(),
        summary: "DARTS cell space (Liu et al. 2019): 8 ops, 4 nodes, shared normal/reduce alphas"
            .into(),
        defaults: serde_json::to_value(DartsSpaceParams::default()).unwrap_or_default(),
        params: vec![
            ParamDoc::new(
                "channels",
                "initial channels of the search network (DARTS: 16)",
            ),
            ParamDoc::new(
                "layers",
                "cells of the search network (DARTS: 8); reductions at layers/3 and 2*layers/3",
            ),
            ParamDoc::new("nodes", "intermediate nodes per cell (DARTS: 4)"),
            ParamDoc::new(
                "multiplier",
                "last nodes concatenated into the cell output (DARTS: 4)",
            ),
            ParamDoc::new(
                "stem_multiplier",
                "stem channels = stem_multiplier * channels (DARTS: 3)",
            ),
            ParamDoc::new(
                "ops",
                "candidate operations; `none` first as in the reference PRIMITIVES",
            ),
            ParamDoc::new(
                "retrain_channels",
                "channels of the standalone network (DARTS CIFAR-10: 36)",
            ),
            ParamDoc::new(
                "retrain_layers",
                "cells of the standalone network (DARTS CIFAR-10: 20)",
            ),
            ParamDoc::new(
                "retrain_auxiliary",
                "build the auxiliary head for retraining (DARTS: yes, weight 0.4)",
            ),
            ParamDoc::new(
                "head_anchors",
                "search network only: 0 = plain classifier; K >= 2 = DARTS-CC lambda-conditioned head (K anchors interpolated by t)",
            ),
        ],
        origin: "built-in".into(),
    }
}

impl DartsSpace {
    /// The space for `params` (the untyped `space.params` block) on data of `shape`.
    pub fn from_params(params: &serde_json::Value, shape: DataShape) -> Result<Self> {
        let p: DartsSpaceParams = decode_params("space darts", params)?;
        Self::new(p, shape)
    }

    /// The space for typed params.
    pub fn new(params: DartsSpaceParams, shape: DataShape) -> Result<Self> {
        let bad = |path: &str, m: &str| NasError::InvalidParams {
            component: "space darts".into(),
            path: path.into(),
            message: m.into(),
        };
        if params.channels == 0 || params.layers == 0 || params.nodes == 0 {
            return Err(bad(
                "channels",
                "channels, layers and nodes must be at least 1",
            ));
        }
        if params.multiplier == 0 || params.multiplier > params.nodes {
            return Err(bad("multiplier", "must be between 1 and nodes"));
        }
        if params.head_anchors == 1 {
            return Err(bad(
                "head_anchors",
                "0 (a plain classifier) or at least 2 anchors",
            ));
        }
        if params.ops.is_empty() {
            return Err(bad("ops", "needs at least one operation"));
        }
        for (i, op) in params.ops.iter().enumerate() {
            if !KNOWN_OPS.contains(&op.as_str()) {
                return Err(bad(
                    &format!("ops[{i}]"),
                    &format!("unknown operation `{op}`; known: {}", KNOWN_OPS.join(", ")),
                ));
            }
            if params.ops[..i].contains(op) {
                return Err(bad(&format!("ops[{i}]"), &format!("`{op}` listed twice")));
            }
        }
        let layout = Layout {
            nodes: params.nodes,
        };
        let spec = build_spec(&params, &layout, shape);
        Ok(DartsSpace {
            none: params.ops.iter().position(|o| o == "none"),
            params,
            shape,
            layout,
            spec,
        })
    }

    /// The space's params.
    pub fn params(&self) -> &DartsSpaceParams {
        &self.params
    }

    /// The genotype of an architecture.
    pub fn to_genotype(&self, arch: &Architecture) -> Result<Genotype> {
        self.spec.check(arch)?;
        let cell = |t: usize| -> Vec<Vec<Gene>> {
            (0..self.layout.nodes)
                .map(|i| {
                    (0..i + 2)
                        .filter_map(|j| {
                            let k = arch.choices[self.layout.decision(t, i, j)];
                            (Some(k) != self.none).then(|| (self.params.ops[k].clone(), j))
                        })
                        .collect()
                })
                .collect()
        };
        let concat: Vec<usize> =
            (2 + self.params.nodes - self.params.multiplier..2 + self.params.nodes).collect();
        Ok(Genotype {
            normal: cell(0),
            reduce: cell(1),
            normal_concat: concat.clone(),
            reduce_concat: concat,
        })
    }

    /// The architecture of a genotype. Edges the genotype does not name are `none`
    /// (which must then be in the op list, as it is in DARTS).
    pub fn from_genotype(&self, g: &Genotype) -> Result<Architecture> {
        let err = |m: String| NasError::Architecture(m);
        let concat: Vec<usize> =
            (2 + self.params.nodes - self.params.multiplier..2 + self.params.nodes).collect();
        let mut choices = vec![usize::MAX; self.layout.decisions()];
        for (t, (nodes, cc)) in [(&g.normal, &g.normal_concat), (&g.reduce, &g.reduce_concat)]
            .into_iter()
            .enumerate()
        {
            let name = CELL_TYPES[t];
            if nodes.len() != self.params.nodes {
                return Err(err(format!(
                    "the {name} cell has {} nodes, this space has {}",
                    nodes.len(),
                    self.params.nodes
                )));
            }
            if *cc != concat {
                return Err(err(format!(
                    "the {name} cell concatenates {cc:?}, this space concatenates {concat:?}"
                )));
            }
            for (i, genes) in nodes.iter().enumerate() {
                for (op, j) in genes {
                    if *j >= i + 2 {
                        return Err(err(format!(
                            "{name} node {} takes input {j}, but only 0..={} exist",
                            i + 2,
                            i + 1
                        )));
                    }
                    let k = self
                        .params
                        .ops
                        .iter()
                        .position(|o| o == op)
                        .ok_or_else(|| {
                            err(format!(
                                "operation `{op}` is not in this space's op list ({})",
                                self.params.ops.join(", ")
                            ))
                        })?;
                    let d = self.layout.decision(t, i, *j);
                    if choices[d] != usize::MAX {
                        return Err(err(format!(
                            "{name} node {} uses input {j} twice; one op per edge in this space",
                            i + 2
                        )));
                    }
                    choices[d] = k;
                }
            }
        }
        if choices.contains(&usize::MAX) {
            let none = self.none.ok_or_else(|| {
                err("the genotype leaves edges unused, but `none` is not in the op list".into())
            })?;
            for c in choices.iter_mut().filter(|c| **c == usize::MAX) {
                *c = none;
            }
        }
        Ok(Architecture::new("darts", choices))
    }

    /// Number of incoming non-none edges per node, per cell type.
    pub fn edge_counts(&self, arch: &Architecture) -> Vec<Vec<usize>> {
        (0..2)
            .map(|t| {
                (0..self.layout.nodes)
                    .map(|i| {
                        (0..i + 2)
                            .filter(|&j| {
                                Some(arch.choices[self.layout.decision(t, i, j)]) != self.none
                            })
                            .count()
                    })
                    .collect()
            })
            .collect()
    }

    fn derive_darts(&self, w: &MixingWeights) -> Architecture {
        let none = self.none;
        let mut choices = vec![none.unwrap_or(0); self.layout.decisions()];
        for t in 0..2 {
            for i in 0..self.layout.nodes {
                // Strength of an edge: its largest non-none weight (model_search.py `_parse`).
                let mut edges: Vec<(usize, usize, f32)> = (0..i + 2)
                    .map(|j| {
                        let d = self.layout.decision(t, i, j);
                        let (k, v) = best_option(&w.0[d], none);
                        (j, k, v)
                    })
                    .collect();
                // Stable sort by decreasing strength: ties keep the lower input first.
                edges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
                for &(j, k, _) in edges.iter().take(2) {
                    choices[self.layout.decision(t, i, j)] = k;
                }
            }
        }
        Architecture::new("darts", choices)
    }

    fn derive_simple(&self, w: &MixingWeights) -> Architecture {
        let choices = w.0.iter().map(|ws| best_option(ws, None).0).collect();
        Architecture::new("darts", choices)
    }
}

/// The best option of one edge, skipping `skip`; ties keep the first.
fn best_option(ws: &[f32], skip: Option<usize>) -> (usize, f32) {
    let mut best = (usize::MAX, f32::NEG_INFINITY);
    for (k, &v) in ws.iter().enumerate() {
        if Some(k) == skip {
            continue;
        }
        if v > best.1 || best.0 == usize::MAX {
            best = (k, v);
        }
    }
    best
}

fn build_spec(params: &DartsSpaceParams, layout: &Layout, shape: DataShape) -> SpaceSpec {
    let plan = cell_plan(
        params.channels,
        params.layers,
        params.multiplier,
        params.stem_multiplier,
    );
    // Per cell: input resolution.
    let mut res = Vec::with_capacity(plan.len());
    let mut h = shape.height;
    for p in &plan {
        res.push(h);
        if p.3 {
            h = h.div_ceil(2);
        }
    }
    let mut decisions = Vec::with_capacity(layout.decisions());
    for (t, tname) in CELL_TYPES.iter().enumerate() {
        for i in 0..params.nodes {
            for j in 0..i + 2 {
                let options = params
                    .ops
                    .iter()
                    .map(|op| {
                        let mut cost = Cost::default();
                        for (ci, &(_, _, c, red, _)) in plan.iter().enumerate() {
                            if usize::from(red) != t {
                                continue;
                            }
                            let stride = if red && j < 2 { 2 } else { 1 };
                            cost.params += op_param_count(op, c, stride, false) as f64;
                            let hin = if red && j >= 2 {
                                res[ci].div_ceil(2)
                            } else {
                                res[ci]
                            };
                            cost.flops += op_flops(op, c, hin, stride);
                        }
                        OptionSpec {
                            name: op.clone(),
                            cost,
                        }
                    })
                    .collect();
                decisions.push(Decision {
                    key: format!("{tname}.{}<-{j}", i + 2),
                    group: tname.to_string(),
                    node: Some(t * params.nodes + i),
                    options,
                });
            }
        }
    }
    // Fixed cost: stem (conv + affine BN), preprocessing, classifier.
    let c_stem = params.stem_multiplier * params.channels;
    let mut fixed = Cost {
        params: (shape.channels * c_stem * 9 + 2 * c_stem) as f64,
        flops: (shape.channels * c_stem * 9 * shape.height * shape.width) as f64,
        latency_ms: None,
    };
    for (ci, &(cpp, cp, c, _, red_prev)) in plan.iter().enumerate() {
        let p0 = if red_prev { 2 * (c / 2) * cpp } else { cpp * c };
        fixed.params += (p0 + cp * c) as f64;
        let hw = (res[ci] * res[ci]) as f64;
        fixed.flops += (p0 as f64) * hw + (cp * c) as f64 * hw;
    }
    let c_last = plan
        .last()
        .map(|p| params.multiplier * p.2)
        .unwrap_or(c_stem);
    fixed.params += (c_last * shape.num_classes + shape.num_classes) as f64;
    fixed.flops += (c_last * shape.num_classes) as f64;
    SpaceSpec {
        space: "darts".into(),
        decisions,
        fixed_cost: fixed,
    }
}

/// MACs of one op at `c` channels on an `h x h` input with `stride`.
fn op_flops(op: &str, c: usize, h: usize, stride: usize) -> f64 {
    let f = |x: usize| x as f64;
    let o = |k: usize, p: usize, d: usize| out_size(h, k, stride, p, d);
    match op {
        "none" => 0.0,
        "max_pool_3x3" | "avg_pool_3x3" => f(c * 9 * o(3, 1, 1).pow(2)),
        "skip_connect" if stride == 1 => 0.0,
        "skip_connect" => f(c * c * o(1, 0, 1).pow(2)),
        "sep_conv_3x3" | "sep_conv_5x5" | "sep_conv_7x7" => {
            let k = op.as_bytes()[9] as usize - b'0' as usize;
            let h1 = o(k, k / 2, 1);
            2.0 * f((c * k * k + c * c) * h1 * h1)
        }
        "dil_conv_3x3" | "dil_conv_5x5" => {
            let k = op.as_bytes()[9] as usize - b'0' as usize;
            let h1 = o(k, k - 1, 2);
            f((c * k * k + c * c) * h1 * h1)
        }
        "conv_7x1_1x7" => {
            let ho = h.div_ceil(stride);
            f(c * c * 7 * h * ho + c * c * 7 * ho * ho)
        }
        _ => 0.0,
    }
}

impl SpaceRules for DartsSpace {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        weights.check_shape(&self.spec)?;
        match mode {
            "default" | "darts" if self.none.is_none() => Err(NasError::Architecture(format!(
                "the DARTS derivation keeps the 2 strongest incoming edges of each node and \
                 drops the others by setting them to `none`, but space.params.ops ({}) has no \
                 `none`; add `none` to the op list (the reference PRIMITIVES start with it), \
                 or derive with mode `simple` to keep every edge",
                self.params.ops.join(", ")
            ))),
            "default" | "darts" => Ok(self.derive_darts(weights)),
            "simple" => Ok(self.derive_simple(weights)),
            m => Err(NasError::Architecture(format!(
                "unknown derivation mode `{m}` for the DARTS space; known: darts (top-2 non-none edges per node, the default), simple (argmax over all ops including none)"
            ))),
        }
    }

    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        let t = text.trim();
        if t.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            // Accept `architecture.json` (with a genotype string) or a bare Architecture.
            if let Some(g) = v.get("genotype").and_then(|g| g.as_str()) {
                return self.from_genotype(&Genotype::parse(g)?);
            }
            let a: Architecture =
                serde_json::from_value(v.get("architecture").cloned().unwrap_or(v))
                    .map_err(|e| NasError::Architecture(format!("architecture JSON: {e}")))?;
            self.spec.check(&a)?;
            return Ok(a);
        }
        if t.starts_with('|') {
            return Err(NasError::Architecture(
                "this looks like a NAS-Bench-201 arch string; the DARTS space needs a `Genotype(...)` or an architecture JSON of space `darts`".into(),
            ));
        }
        self.from_genotype(&Genotype::parse(t)?)
    }

    fn format_arch(&self, arch: &Architecture) -> String {
        match self.to_genotype(arch) {
            Ok(g) => g.format(),
            Err(e) => format!("<invalid: {e}>"),
        }
    }

    /// `genotype`: the notation as DARTS' `genotypes.py` writes it.
    fn architecture_fields(
        &self,
        arch: &Architecture,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("genotype".into(), self.format_arch(arch).into());
        m
    }

    fn cell_diagrams(&self, arch: &Architecture) -> Vec<nas_core::CellDiagram> {
        self.to_genotype(arch)
            .map(|g| crate::diagram::genotype_diagrams(&g))
            .unwrap_or_default()
    }
}

impl SearchSpace for DartsSpace {
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
        Ok(Box::new(DartsSupernet::new(
            &self.params,
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
        let g = self.to_genotype(arch)?;
        let mut rng = rng;
        let drop_rng = nas_core::rng::component_rng(rand::Rng::random(&mut rng), "drop_path");
        let store = ParamStore::new(device.clone(), dtype, rng);
        Ok(Box::new(DartsNetwork::new(
            CellSpec {
                nodes: &g.normal,
                concat: &g.normal_concat,
            },
            CellSpec {
                nodes: &g.reduce,
                concat: &g.reduce_concat,
            },
            cfg.channels,
            cfg.layers,
            cfg.auxiliary,
            self.shape,
            store,
            drop_rng,
        )?))
    }

    fn network_cost(&self, arch: &Architecture, cfg: &NetworkConfig) -> Result<Cost> {
        let net = self.build_network(
            arch,
            &NetworkConfig {
                auxiliary: false,
                ..*cfg
            },
            &Device::Cpu,
            DType::F32,
            nas_core::rng::component_rng(0, "cost"),
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
            auxiliary: self.params.retrain_auxiliary,
        }
    }
}
