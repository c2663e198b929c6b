//! [`ChainSpace`]: any [`ChainLayout`] as a [`SearchSpace`].
use candle_core::{DType, Device};
use nas_core::{
    Architecture, Cost, Decision, MixingWeights, NasError, OptionSpec, Result, SpaceRules,
    SpaceSpec,
};
use nas_model::{DataShape, Network, NetworkConfig, ParamStore, SearchSpace, Supernet};
use rand_chacha::ChaCha8Rng;

use crate::net::ChainParts;
use crate::plan::ChainLayout;
use crate::seq::{Residual, Seq};
use crate::{notation, ChainNet, CostSum, LatencyTable, Linear, Shape};

/// A chain space: decisions, costs, supernet and standalone networks of a layout.
pub struct ChainSpace<L: ChainLayout> {
    layout: L,
    shape: DataShape,
    spec: SpaceSpec,
}

/// The cost of a layout's fixed part (stem, tail, classifier) and the tail's input shape.
fn fixed_cost<L: ChainLayout>(layout: &L) -> (CostSum, Shape) {
    let mut sum = CostSum::default();
    let s = Seq::cost(&mut sum, layout.input(), &layout.stem());
    let last = layout
        .layers()
        .last()
        .map(|l| {
            let mut scratch = CostSum::default();
            l.options[0].1.cost(&mut scratch, l.input)
        })
        .unwrap_or(s);
    let t = Seq::cost(&mut sum, last, &layout.tail());
    sum.linear(t.c, layout.num_classes(), layout.classifier_bias());
    (sum, last)
}

impl<L: ChainLayout> ChainSpace<L> {
    /// The space of `layout` for data of `shape`; checks that every option of a layer has
    /// the same output shape and that it is the next layer's input.
    pub fn new(layout: L, shape: DataShape) -> Result<Self> {
        let mut decisions = Vec::with_capacity(layout.layers().len());
        let mut expect = {
            let mut s = CostSum::default();
            Seq::cost(&mut s, layout.input(), &layout.stem())
        };
        for l in layout.layers() {
            if l.input != expect {
                return Err(NasError::Other(format!(
                    "space {}: layer `{}` takes {:?} but gets {:?}",
                    layout.space(),
                    l.key,
                    l.input,
                    expect
                )));
            }
            let mut out = None;
            let mut options = Vec::with_capacity(l.options.len());
            for (name, plan) in &l.options {
                let mut sum = CostSum::default();
                let o = plan.cost(&mut sum, l.input);
                if *out.get_or_insert(o) != o {
                    return Err(NasError::Other(format!(
                        "space {}: option `{name}` of layer `{}` gives {o:?}, the others {:?}",
                        layout.space(),
                        l.key,
                        out
                    )));
                }
                options.push(OptionSpec {
                    name: name.clone(),
                    cost: sum.to_cost(),
                });
            }
            expect = out.unwrap_or(l.input);
            decisions.push(Decision {
                key: l.key.clone(),
                group: l.group.clone(),
                node: None,
                options,
            });
        }
        let spec = SpaceSpec {
            space: layout.space().to_string(),
            decisions,
            fixed_cost: fixed_cost(&layout).0.to_cost(),
        };
        Ok(ChainSpace {
            layout,
            shape,
            spec,
        })
    }

    /// The layout.
    pub fn layout(&self) -> &L {
        &self.layout
    }

    /// Loads a latency table into the option costs.
    pub fn with_latency_table(mut self, table: &LatencyTable) -> Result<Self> {
        table.apply(&mut self.spec)?;
        Ok(self)
    }

    /// Builds the chain with all options (`choices == None`) or the chosen ones.
    pub fn build_chain(
        &self,
        choices: Option<&[usize]>,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<ChainNet> {
        let mut store = ParamStore::new(device.clone(), dtype, rng);
        let l = &self.layout;
        store.set_affine_bn(choices.is_some() || l.supernet_bn_affine());
        let mut cost = CostSum::default();
        let stem_steps = l.stem();
        let (stem, _) = Residual::build(&mut store, "stem", l.input(), &stem_steps, false)?;
        let mut layers = Vec::with_capacity(l.layers().len());
        let mut inputs = Vec::with_capacity(l.layers().len());
        for (d, lp) in l.layers().iter().enumerate() {
            let mut ops: Vec<Box<dyn crate::Candidate>> = Vec::new();
            for (k, (name, plan)) in lp.options.iter().enumerate() {
                if choices.is_some_and(|c| c[d] != k) {
                    continue;
                }
                ops.push(plan.build(&mut store, &format!("layers.{d}.{name}"), lp.input)?);
                plan.cost(&mut cost, lp.input);
            }
            layers.push(ops);
            inputs.push(lp.input);
        }
        let (fixed, tail_in) = fixed_cost(l);
        let tail_steps = l.tail();
        let (tail, t) = Residual::build(&mut store, "tail", tail_in, &tail_steps, false)?;
        let classifier = Linear::new(
            &mut store,
            "classifier",
            t.c,
            l.num_classes(),
            l.classifier_bias(),
        )?;
        cost.add(fixed);
        Ok(ChainNet::new(
            store,
            ChainParts {
                stem: vec![Box::new(stem)],
                layers,
                layer_inputs: inputs,
                tail: vec![Box::new(tail)],
                classifier,
                cost,
            },
        ))
    }

    /// Measures a latency table of this space on `device` (see [`LatencyTable::measure`]).
    pub fn measure_latency(
        &self,
        device: &Device,
        batch: usize,
        repeats: usize,
    ) -> Result<LatencyTable> {
        let net = self.build_chain(
            None,
            device,
            DType::F32,
            nas_core::component_rng(0, "latency"),
        )?;
        LatencyTable::measure(
            &net,
            &self.spec,
            self.layout.input(),
            device,
            DType::F32,
            batch,
            repeats,
        )
    }

    /// The table at `path` if it exists, else a new measurement saved there ("measured
    /// once, reused").
    pub fn load_or_measure_latency(
        &self,
        path: &std::path::Path,
        device: &Device,
        batch: usize,
        repeats: usize,
    ) -> Result<LatencyTable> {
        if path.exists() {
            return LatencyTable::load(path);
        }
        let t = self.measure_latency(device, batch, repeats)?;
        t.save(path)?;
        Ok(t)
    }
}

impl<L: ChainLayout> SpaceRules for ChainSpace<L> {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn derive(&self, weights: &MixingWeights, mode: &str) -> Result<Architecture> {
        notation::derive(&self.spec, weights, mode)
    }
    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        notation::parse_ops(&self.spec, text)
    }
    fn format_arch(&self, arch: &Architecture) -> String {
        notation::format_ops(&self.spec, arch)
    }
}

impl<L: ChainLayout> SearchSpace for ChainSpace<L> {
    fn measure_latency_table(
        &self,
        device: &Device,
        batch: usize,
        repeats: usize,
    ) -> Result<Option<serde_json::Value>> {
        let t = self.measure_latency(device, batch, repeats)?;
        serde_json::to_value(&t)
            .map(Some)
            .map_err(|e| NasError::Other(format!("latency table: {e}")))
    }

    fn data_shape(&self) -> DataShape {
        self.shape
    }

    fn build_supernet(
        &self,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Supernet>> {
        Ok(Box::new(self.build_chain(None, device, dtype, rng)?))
    }

    /// The standalone network of `arch`: the supernet's layout with the chosen option of
    /// every layer. Its widths are the space's (`space.params`); `cfg.channels` and
    /// `cfg.layers` are DARTS settings and are not used, and there is no auxiliary head.
    fn build_network(
        &self,
        arch: &Architecture,
        _cfg: &NetworkConfig,
        device: &Device,
        dtype: DType,
        rng: ChaCha8Rng,
    ) -> Result<Box<dyn Network>> {
        self.spec.check(arch)?;
        Ok(Box::new(self.build_chain(
            Some(&arch.choices),
            device,
            dtype,
            rng,
        )?))
    }

    /// Exactly the standalone network's parameters and MACs (the per-option costs are
    /// those of the blocks built for that option), plus the measured latency when a table
    /// is loaded.
    fn network_cost(&self, arch: &Architecture, _cfg: &NetworkConfig) -> Result<Cost> {
        self.spec.cost_of(arch)
    }

    fn default_network_config(&self) -> NetworkConfig {
        let stem_c = {
            let mut s = CostSum::default();
            Seq::cost(&mut s, self.layout.input(), &self.layout.stem()).c
        };
        NetworkConfig {
            channels: stem_c,
            layers: self.spec.decisions.len(),
            auxiliary: false,
        }
    }
}
