//! The `zero_cost` estimator: scores an architecture by a zero-cost proxy of its standalone
//! network, untrained (`nas_trainer::zero_cost`: NASWOT, synflow, grad_norm), so that
//! `random`, `rea` or `evolution` search without training anything:
//!
//! ```yaml
//! strategy: {name: rea, params: {population: 20, sample_size: 5}}
//! estimator: {name: zero_cost, params: {proxy: naswot, batch_size: 128}}
//! budget: {queries: 100}
//! ```
//!
//! Each query builds the network of the architecture at the space's network widths (NB201:
//! the benchmark's C = 16, N = 5), with weights drawn from the run's seed, and scores it on
//! the same minibatch: the first `batch_size` examples of a shuffle (by the seed) of the
//! training split, unaugmented (the NASWOT reference's batch of 128; zero-cost-nas scores
//! grad_norm on one batch too). synflow runs in f64 on an all-ones input.
//! `nas zero-cost CONFIG` scores a sample of architectures with all three proxies and
//! reports their rank correlation with the NB201 table's accuracy.
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use nas_config::Experiment;
use nas_core::{
    Architecture, ComponentInfo, ComponentKind, Estimator, NasError, ParamDoc, Result, Score,
    SpaceSpec,
};
use nas_data::{Augment, Loader};
use nas_model::{NetworkConfig, SearchSpace};
use nas_trainer::bridge::batch_tensors;
use nas_trainer::zero_cost;
use serde::{Deserialize, Serialize};

use nas_registry::{build_space, data_shape, load_data, parse_device};
use nas_registry::{Components, SpaceBox};

/// The estimator's registered name.
pub const NAME: &str = "zero_cost";

/// Which proxy scores an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    /// NASWOT (Mellor et al. 2021): `ln |det K_H|` of the ReLU codes.
    Naswot,
    /// synflow (Tanaka et al. 2020; Abdelfattah et al. 2021).
    Synflow,
    /// grad_norm (Abdelfattah et al. 2021).
    GradNorm,
}

impl Proxy {
    /// Every proxy.
    pub const ALL: [Proxy; 3] = [Proxy::Naswot, Proxy::Synflow, Proxy::GradNorm];

    /// Its name in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Naswot => "naswot",
            Proxy::Synflow => "synflow",
            Proxy::GradNorm => "grad_norm",
        }
    }
}

fn default_batch() -> usize {
    128
}

fn default_proxy() -> Proxy {
    Proxy::Naswot
}

/// Parameters of the `zero_cost` estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroCostParams {
    /// `naswot` (default), `synflow` or `grad_norm`.
    #[serde(default = "default_proxy")]
    pub proxy: Proxy,
    /// Examples of the scoring minibatch (NASWOT reference: 128).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// Registry entry (for `nas list` / `nas describe zero_cost`).
pub fn info() -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Estimator,
        name: NAME.into(),
        summary: "zero-cost proxy of the untrained network: naswot | synflow | grad_norm".into(),
        defaults: serde_json::json!({"proxy": "naswot", "batch_size": 128}),
        params: vec![
            ParamDoc::new("proxy", "naswot (Mellor et al. 2021) | synflow (Tanaka et al. 2020) | grad_norm (Abdelfattah et al. 2021)"),
            ParamDoc::new("batch_size", "examples of the scoring minibatch (NASWOT reference: 128)"),
        ],
        origin: "built-in".into(),
    }
}

/// What scores networks: the space, the minibatch, the device and the seed.
pub struct ProxyScorer {
    space: SpaceBox,
    cfg: NetworkConfig,
    x: Tensor,
    y: Tensor,
    input: (usize, usize, usize),
    device: Device,
    dtype: DType,
    seed: u64,
}

impl ProxyScorer {
    /// A scorer for the experiment `exp` (its space, data, device, dtype and seed).
    pub fn new(exp: &Experiment, comps: &Components, batch_size: usize) -> Result<Self> {
        if batch_size < 2 {
            return Err(params_error("`batch_size` must be at least 2".into()));
        }
        let data = load_data(exp, comps)?
            .ok_or_else(|| exp.error_at("data", "the zero_cost estimator needs a data block"))?;
        let shape = data_shape(Some(&data));
        let space = build_space(exp, comps, shape)?;
        let ts = space
            .tensor()
            .ok_or_else(|| exp.error_at("space.name", "this space builds no networks to score"))?;
        let cfg = ts.default_network_config();
        let device = parse_device(exp.device)?;
        let dtype = nas_registry::parse_dtype(exp.dtype)?;
        let train = Arc::new(data.train.clone());
        let n = train.labels.len();
        let mut l = Loader::new(
            train,
            (0..n).collect(),
            batch_size.min(n),
            true,
            Augment::default(),
            data.mean.clone(),
            data.std.clone(),
            nas_core::rng::component_seed(exp.seed, "zero_cost.batch"),
        )?;
        l.start_epoch(0);
        let b = l.next_batch()?;
        let input = (shape.channels, shape.height, shape.width);
        let (x, y) = batch_tensors(&b, input, &device, dtype)?;
        Ok(ProxyScorer {
            space,
            cfg,
            x,
            y,
            input,
            device,
            dtype,
            seed: exp.seed,
        })
    }

    fn tensor_space(&self) -> Result<&dyn SearchSpace> {
        self.space
            .tensor()
            .ok_or_else(|| NasError::Other("the space builds no networks".into()))
    }

    /// The space's plain description.
    pub fn spec(&self) -> &SpaceSpec {
        self.space.rules().spec()
    }

    /// `proxy`'s score of `arch`'s untrained network (weights from the seed).
    pub fn score(&self, arch: &Architecture, proxy: Proxy) -> Result<f64> {
        let ts = self.tensor_space()?;
        let dtype = if proxy == Proxy::Synflow {
            DType::F64
        } else {
            self.dtype
        };
        let net = ts.build_network(
            arch,
            &self.cfg,
            &self.device,
            dtype,
            nas_core::component_rng(self.seed, "zero_cost.init"),
        )?;
        match proxy {
            Proxy::Naswot => zero_cost::naswot(net.as_ref(), &self.x),
            Proxy::Synflow => zero_cost::synflow(net.as_ref(), self.input),
            Proxy::GradNorm => zero_cost::grad_norm(net.as_ref(), &self.x, &self.y),
        }
    }
}

fn params_error(message: String) -> NasError {
    NasError::InvalidParams {
        component: format!("estimator {NAME}"),
        path: ".".into(),
        message,
    }
}

/// The estimator.
pub struct ZeroCost {
    scorer: ProxyScorer,
    proxy: Proxy,
    queries: u64,
}

/// Builds the estimator for the experiment `exp`.
pub fn build(
    exp: &Experiment,
    comps: &Components,
    params: &serde_json::Value,
) -> Result<Box<dyn Estimator>> {
    let p: ZeroCostParams =
        serde_json::from_value(params.clone()).map_err(|e| params_error(e.to_string()))?;
    Ok(Box::new(ZeroCost {
        scorer: ProxyScorer::new(exp, comps, p.batch_size)?,
        proxy: p.proxy,
        queries: 0,
    }))
}

impl Estimator for ZeroCost {
    fn spec(&self) -> &SpaceSpec {
        self.scorer.spec()
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        let t0 = Instant::now();
        let s = self.scorer.score(arch, self.proxy)?;
        self.queries += 1;
        let fitness = if s.is_finite() { s } else { f64::MIN };
        let mut report = std::collections::BTreeMap::new();
        report.insert(self.proxy.name().to_string(), s);
        Ok(Score {
            fitness,
            report,
            cost_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    fn queries(&self) -> u64 {
        self.queries
    }
}

/// One sampled architecture's scores (and its table accuracy, when the space has a table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyRow {
    /// The architecture in the space's notation.
    pub arch: String,
    /// NASWOT, synflow and grad_norm scores, in [`Proxy::ALL`]'s order.
    pub scores: Vec<f64>,
    /// NAS-Bench-201's CIFAR-10 test accuracy after 200 epochs (NB201 space with a table).
    pub table_test_acc: Option<f64>,
}

/// `nas zero-cost`: `sample` architectures drawn uniformly (seeded), scored by every proxy;
/// where the space has a benchmark table ([`nas_core::SpaceRules::table_figures`], NB201),
/// also their benchmark accuracy.
pub fn proxy_study(
    exp: &Experiment,
    comps: &Components,
    sample: usize,
    batch_size: usize,
) -> Result<Vec<ProxyRow>> {
    use rand::Rng;
    let scorer = ProxyScorer::new(exp, comps, batch_size)?;
    let shape = scorer.spec().shape();
    let mut rng = nas_core::component_rng(exp.seed, "zero_cost.sample");
    let rules = scorer.space.rules();
    let mut rows = Vec::with_capacity(sample);
    for i in 0..sample {
        let choices: Vec<usize> = shape.iter().map(|&k| rng.random_range(0..k)).collect();
        let arch = Architecture::new(exp.space.name.clone(), choices);
        let scores = Proxy::ALL
            .iter()
            .map(|&p| scorer.score(&arch, p))
            .collect::<Result<Vec<_>>>()?;
        let table_test_acc = rules
            .table_figures(&arch)
            .and_then(|f| f.get("table_test_acc").copied());
        tracing::info!(
            "{}/{sample}: {} {:?}",
            i + 1,
            rules.format_arch(&arch),
            scores
        );
        rows.push(ProxyRow {
            arch: rules.format_arch(&arch),
            scores,
            table_test_acc,
        });
    }
    Ok(rows)
}

/// Spearman's rank correlation of `a` and `b` (ties get their mean rank; pairs with a
/// non-finite value are dropped). `None` with fewer than 3 pairs or a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| (x, y))
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let ranks = |v: Vec<f64>| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let mean = (i + j) as f64 / 2.0 + 1.0;
            for &k in &idx[i..=j] {
                r[k] = mean;
            }
            i = j + 1;
        }
        r
    };
    let ra = ranks(pairs.iter().map(|p| p.0).collect());
    let rb = ranks(pairs.iter().map(|p| p.1).collect());
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return None;
    }
    Some(cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_by_hand() {
        // Ranks (1, 2, 3, 4) vs (2, 1, 4, 3): d^2 = 4, rho = 1 - 6 * 4 / (4 * 15) = 0.6.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[20.0, 10.0, 40.0, 30.0]).unwrap();
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // Ties: (1, 1, 2) ranks (1.5, 1.5, 3).
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - 0.866_025_403_784_438_6).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }
}
