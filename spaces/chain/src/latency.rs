//! A latency lookup table (FBNet section 3.3; ProxylessNAS section 3.3): every candidate
//! block is timed on the current device with its own input shape, the table is written to
//! a JSON file and reused, and the latency of an architecture is the sum over its layers
//! plus the fixed part (stem, tail, classifier).
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use nas_core::{NasError, Result, SpaceSpec};
use serde::{Deserialize, Serialize};

use crate::ChainNet;

/// Measured latencies of every option of every layer of one space configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// The space.
    pub space: String,
    /// Where it was measured (`cpu`, ...).
    pub device: String,
    /// Examples per timed forward pass.
    pub batch: usize,
    /// Timed passes per entry (the median is kept).
    pub repeats: usize,
    /// The decision keys, in order (checked when the table is applied).
    pub keys: Vec<String>,
    /// The op names of each decision (checked when the table is applied).
    pub ops: Vec<Vec<String>>,
    /// Median milliseconds of one forward pass (inference mode) of each option.
    pub latency_ms: Vec<Vec<f64>>,
    /// Median milliseconds of the fixed part (stem, tail, pooling and classifier).
    pub fixed_ms: f64,
}

fn median_ms(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let mut v = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}

fn terr(e: candle_core::Error) -> NasError {
    NasError::Tensor(e.to_string())
}

impl LatencyTable {
    /// Times every option of every layer of `net` (a supernet of `spec`, built on
    /// `device`) on random inputs of `batch` examples, `repeats` times each (after one
    /// warm-up pass), and the fixed part by running the stem, the tail and the classifier.
    pub fn measure(
        net: &ChainNet,
        spec: &SpaceSpec,
        input: crate::Shape,
        device: &Device,
        dtype: DType,
        batch: usize,
        repeats: usize,
    ) -> Result<Self> {
        let parts = net.parts();
        if parts.layers.len() != spec.decisions.len() {
            return Err(NasError::Other(format!(
                "the network has {} layers, the space {} decisions",
                parts.layers.len(),
                spec.decisions.len()
            )));
        }
        let rand = |s: crate::Shape| -> Result<Tensor> {
            Tensor::randn(0f32, 1.0, (batch.max(1), s.c, s.h, s.w), device)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(terr)
        };
        let mut latency_ms = Vec::with_capacity(parts.layers.len());
        for (d, opts) in parts.layers.iter().enumerate() {
            let x = rand(parts.layer_inputs[d])?;
            let mut row = Vec::with_capacity(opts.len());
            for k in 0..opts.len() {
                row.push(median_ms(repeats, || {
                    net.option_forward(d, k, &x, false)
                        .and_then(|y| y.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>())
                        .map(|_| ())
                        .map_err(terr)
                })?);
            }
            latency_ms.push(row);
        }
        // Fixed part: stem on the input, tail + pool + classifier on the last layer's output.
        let x = rand(input)?;
        let stem_ms = median_ms(repeats, || {
            let mut y = x.clone();
            for s in &parts.stem {
                y = s.forward(&y, false).map_err(terr)?;
            }
            Ok(())
        })?;
        let last = parts.layers.len().checked_sub(1);
        let tail_in = match last {
            Some(d) => {
                let y = net.option_forward(d, 0, &rand(parts.layer_inputs[d])?, false);
                y.map_err(terr)?
            }
            None => x.clone(),
        };
        let tail_ms = median_ms(repeats, || {
            let mut y = tail_in.clone();
            for t in &parts.tail {
                y = t.forward(&y, false).map_err(terr)?;
            }
            let p = nas_ops::global_avg_pool(&y).map_err(terr)?;
            parts.classifier.forward(&p).map_err(terr)?;
            Ok(())
        })?;
        Ok(LatencyTable {
            space: spec.space.clone(),
            device: format!("{device:?}"),
            batch: batch.max(1),
            repeats: repeats.max(1),
            keys: spec.decisions.iter().map(|d| d.key.clone()).collect(),
            ops: spec
                .decisions
                .iter()
                .map(|d| d.options.iter().map(|o| o.name.clone()).collect())
                .collect(),
            latency_ms,
            fixed_ms: stem_ms + tail_ms,
        })
    }

    /// Writes the table as JSON (atomically: write, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| NasError::Other(format!("latency table: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| NasError::io(dir, e))?;
        }
        // Atomic: a temporary file beside the target, then a rename.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| NasError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| NasError::io(path, e))
    }

    /// Reads a table written by [`LatencyTable::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| NasError::data(path, format!("not a latency table: {e}")))
    }

    /// Fills `latency_ms` of every option and of the fixed cost of `spec`. The table must
    /// have been measured for the same space, decisions and op names.
    pub fn apply(&self, spec: &mut SpaceSpec) -> Result<()> {
        let keys: Vec<&String> = spec.decisions.iter().map(|d| &d.key).collect();
        let ops: Vec<Vec<&String>> = spec
            .decisions
            .iter()
            .map(|d| d.options.iter().map(|o| &o.name).collect())
            .collect();
        let same_ops = self.ops.len() == ops.len()
            && self
                .ops
                .iter()
                .zip(&ops)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == *y));
        let same_keys =
            self.keys.len() == keys.len() && self.keys.iter().zip(&keys).all(|(a, b)| a == *b);
        let shaped = self.latency_ms.len() == ops.len()
            && self
                .latency_ms
                .iter()
                .zip(&ops)
                .all(|(l, o)| l.len() == o.len());
        if self.space != spec.space || !same_ops || !same_keys || !shaped {
            return Err(NasError::Other(format!(
                "the latency table was measured for space `{}` with other layers or ops than this `{}` space; measure it again",
                self.space, spec.space
            )));
        }
        for (d, row) in spec.decisions.iter_mut().zip(&self.latency_ms) {
            for (o, &ms) in d.options.iter_mut().zip(row) {
                o.cost.latency_ms = Some(ms);
            }
        }
        spec.fixed_cost.latency_ms = Some(self.fixed_ms);
        Ok(())
    }
}
