//! `nas bench`: times one search step of a strategy (`darts`: architecture step + weight
//! step; `gdas`: a hard-sampled weight step + architecture step; `spos`: one single-path
//! weight step; `proxylessnas`: a weight step on one sampled path + a gated architecture
//! update; any registered trainer strategy) on the DARTS search network, or one retraining
//! step of the DARTS_V2 network (`retrain`), on synthetic data, and reports milliseconds per
//! step and peak memory.
use std::sync::Arc;
use std::time::Instant;

use candle_core::DType;
use nas_core::Result;
use nas_data::{Augment, Dataset};
use nas_model::DataShape;
use nas_trainer::{TrainerParams, TrainerSetup, WeightSharingTrainer};
use rand::Rng;
use serde::Serialize;

use crate::env::RunEnv;
use nas_registry::{BuildContext, Components};

/// What to time.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    /// Cells.
    pub layers: usize,
    /// Initial channels.
    pub channels: usize,
    /// Batch size.
    pub batch: usize,
    /// Image size (3 channels).
    pub size: usize,
    /// Timed steps.
    pub steps: usize,
    /// `first` or `second` (DARTS only).
    pub order: nas_core::OrderSetting,
    /// The strategy timed (`darts`, `gdas`, `spos`, ...), with its default params.
    pub strategy: String,
    /// Record the time of every kernel and trainer phase ([`nas_ops::profile`]) during the
    /// timed steps.
    pub profile: bool,
    /// Where the step runs (`cpu`, `cuda`, `cuda:N`, `auto`; docs/gpu.md).
    pub device: nas_config::DeviceSetting,
}

/// One row of the `--profile` table.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileRow {
    /// A kernel's candle op name (`nas-...`, its backward `...-bwd`) or `phase: ...`.
    pub name: String,
    /// Calls per timed step.
    pub calls_per_step: f64,
    /// Wall-clock ms per timed step, summed over the calls (and over threads, where calls
    /// run at once).
    pub ms_per_step: f64,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The configuration.
    pub config: BenchConfig,
    /// Mean milliseconds per search step (arch + weight step).
    pub ms_per_step: f64,
    /// Every timed step, ms.
    pub step_ms: Vec<f64>,
    /// Process CPU time (user + system, all threads) per timed step, ms, when the OS reports
    /// it (Linux `/proc/self/stat`, 10 ms resolution). Less sensitive than wall time to other
    /// processes on a shared machine; with several threads it includes their idle spinning.
    pub cpu_ms_per_step: Option<f64>,
    /// Peak resident memory of the process, MiB (VmHWM), when the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// On a GPU: the most device memory candle's buffers held at once, MiB
    /// ([`nas_ops::gpu::peak_memory_mib`]; PyTorch's reference reports
    /// `torch.cuda.max_memory_allocated` as `gpu_peak_mib` too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_peak_mib: Option<f64>,
    /// On a GPU: launches of nas-ops' own kernels per timed step
    /// ([`nas_ops::gpu::kernel_launches`]; candle's element-wise, matmul and copy kernels
    /// are not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_kernel_launches_per_step: Option<f64>,
    /// Rayon threads (`RAYON_NUM_THREADS` when set, else the available parallelism, as
    /// rayon's default pool).
    pub threads: usize,
    /// Parameters of the network timed (the supernet; for `retrain`, the DARTS_V2 network
    /// with its auxiliary head).
    pub supernet_params: usize,
    /// With `profile`: kernels and phases, most time first.
    pub profile: Option<Vec<ProfileRow>>,
}

/// CPU time of the whole process (user + system, all threads) in ms, from `/proc/self/stat`
/// (fields 14 and 15, in `USER_HZ` = 100 ticks per second on Linux).
fn process_cpu_ms() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after it follow its `)`.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs the benchmark.
pub fn bench_darts(cfg: &BenchConfig, comps: &Components) -> Result<BenchResult> {
    if cfg.strategy == "retrain" {
        return bench_retrain(cfg, comps);
    }
    let shape = DataShape {
        channels: 3,
        height: cfg.size,
        width: cfg.size,
        num_classes: 10,
    };
    let cx = BuildContext::new(comps).with_shape(shape);
    let sb = (comps.spaces.get("darts")?)(
        &serde_json::json!({"channels": cfg.channels, "layers": cfg.layers}),
        &cx,
    )?;
    let space = sb
        .tensor()
        .ok_or_else(|| nas_core::NasError::Other("the `darts` space has no supernet".into()))?;
    let n = cfg.batch * 4;
    let data = synthetic(n, cfg.size);
    let device = nas_registry::parse_device(cfg.device)?;
    let net = space.build_supernet(
        &device,
        DType::F32,
        nas_core::component_rng(0, "bench.init"),
    )?;
    let supernet_params = net.params().count();
    let optimizer = (comps.optimizers.get("sgd")?)(
        &serde_json::json!({"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4}),
        &cx,
    )?;
    let schedule = (comps.schedules.get("constant")?)(&serde_json::Value::Null, &cx)?;
    let half = n / 2;
    let mut trainer = WeightSharingTrainer::new(TrainerSetup {
        spec: space.spec().clone(),
        net,
        device: device.clone(),
        dtype: DType::F32,
        train_data: data.clone(),
        test_data: data,
        train_indices: (0..half).collect(),
        valid_indices: (half..n).collect(),
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        batch_size: cfg.batch,
        eval_batch_size: cfg.batch,
        augment: Augment::default(),
        optimizer,
        schedule,
        base_lr: 0.025,
        clip_grad_norm: Some(5.0),
        total_epochs: 1,
        params: TrainerParams::default(),
        seed: 0,
        steps_per_epoch: None,
    })?;
    let params = match cfg.strategy.as_str() {
        "darts" => serde_json::json!({"order": cfg.order}),
        // An architecture update (two ops per edge, binary gates) after every weight step,
        // so that each timed step is a full ProxylessNAS step (its default is every 5).
        "proxylessnas" => serde_json::json!({"arch_every": 1}),
        _ => serde_json::json!({}),
    };
    let mut strategy = (comps.strategies.get(&cfg.strategy)?)(&params, &cx)?;
    strategy.init(space.spec(), 0)?;
    nas_core::SupernetTrainer::begin_epoch(&mut trainer, 0)?;
    let timings = time_steps(cfg, &device, || {
        let mut env = RunEnv {
            space: &sb,
            trainer: Some(&mut trainer),
            estimator: None,
            network: None,
            epoch: 0,
            epochs: 1,
        };
        strategy.step(&mut env).map(|_| ())
    })?;
    Ok(bench_result(cfg, timings, supernet_params, &device))
}

/// The figures of timed steps on a network of `params` parameters on `device`.
fn bench_result(
    cfg: &BenchConfig,
    t: Timings,
    params: usize,
    device: &candle_core::Device,
) -> BenchResult {
    BenchResult {
        config: cfg.clone(),
        ms_per_step: t.times.iter().sum::<f64>() / t.times.len().max(1) as f64,
        step_ms: t.times,
        cpu_ms_per_step: t.cpu_ms_per_step,
        peak_rss_mib: peak_rss_mib(),
        gpu_peak_mib: nas_ops::gpu::peak_memory_mib(device),
        gpu_kernel_launches_per_step: t.launches_per_step,
        threads: rayon_threads(),
        supernet_params: params,
        profile: t.profile,
    }
}

/// What the timed steps measured.
struct Timings {
    /// Wall ms of each timed step.
    times: Vec<f64>,
    /// Process CPU ms per step, when the OS reports it.
    cpu_ms_per_step: Option<f64>,
    /// The profile, when asked.
    profile: Option<Vec<ProfileRow>>,
    /// On a GPU: nas-ops' kernel launches per step.
    launches_per_step: Option<f64>,
}

/// Runs `step` once untimed, then `cfg.steps` times timed (the device synchronised before
/// each clock stops), with the profile recording during the timed steps when asked.
fn time_steps(
    cfg: &BenchConfig,
    device: &candle_core::Device,
    mut step: impl FnMut() -> Result<()>,
) -> Result<Timings> {
    let mut times = Vec::new();
    let mut cpu_start = None;
    let mut launches_start = 0;
    for i in 0..=cfg.steps {
        if i == 1 {
            cpu_start = process_cpu_ms();
            launches_start = nas_ops::gpu::kernel_launches();
            nas_ops::profile::enable(cfg.profile);
            nas_ops::profile::take();
        }
        let t = Instant::now();
        step()?;
        // A GPU runs the step's kernels asynchronously: the step ends when they have.
        device
            .synchronize()
            .map_err(|e| nas_core::NasError::Other(format!("device synchronize: {e}")))?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    nas_ops::profile::enable(false);
    let steps = times.len().max(1) as f64;
    let profile = cfg.profile.then(|| {
        let mut rows: Vec<ProfileRow> = nas_ops::profile::take()
            .into_iter()
            .map(|(name, e)| ProfileRow {
                name: name.to_string(),
                calls_per_step: e.calls as f64 / steps,
                ms_per_step: e.seconds * 1e3 / steps,
            })
            .collect();
        rows.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
        rows
    });
    let cpu_ms_per_step = match (cpu_start, process_cpu_ms()) {
        (Some(a), Some(b)) if !times.is_empty() => Some((b - a) / times.len() as f64),
        _ => None,
    };
    let launches = nas_ops::gpu::kernel_launches() - launches_start;
    let launches_per_step =
        (device.is_cuda() && !times.is_empty()).then(|| launches as f64 / steps);
    Ok(Timings {
        times,
        cpu_ms_per_step,
        profile,
        launches_per_step,
    })
}

/// `n` random 3-channel `size x size` images in [0, 1) with random labels of 10 classes.
fn synthetic(n: usize, size: usize) -> Arc<Dataset> {
    let mut rng = nas_core::component_rng(0, "bench.data");
    let images: Vec<f32> = (0..n * 3 * size * size)
        .map(|_| rng.random::<f32>())
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    Arc::new(Dataset {
        name: "synthetic".into(),
        channels: 3,
        height: size,
        width: size,
        num_classes: 10,
        images,
        labels,
        files: None,
    })
}

/// The retraining step of DARTS' augment stage (`--strategy retrain`; Liu et al. 2019,
/// quark0/darts `train.py`): the published DARTS_V2 cell in a network of `cfg.layers` cells
/// of `cfg.channels` initial channels with the auxiliary head (weight 0.4) and drop path
/// (probability 0.2, the schedule's last value), SGD lr 0.025, momentum 0.9, weight decay
/// 3e-4, gradient norm clipped to 5, on synthetic batches of `cfg.batch` (drawn outside the
/// clock, without augmentation, as the PyTorch reference does). DARTS retrains with 20
/// cells, 36 channels and batch 96.
fn bench_retrain(cfg: &BenchConfig, comps: &Components) -> Result<BenchResult> {
    let shape = DataShape {
        channels: 3,
        height: cfg.size,
        width: cfg.size,
        num_classes: 10,
    };
    let cx = BuildContext::new(comps).with_shape(shape);
    let sb = (comps.spaces.get("darts")?)(&serde_json::json!({}), &cx)?;
    let space = sb
        .tensor()
        .ok_or_else(|| nas_core::NasError::Other("the `darts` space has no networks".into()))?;
    let arch = space.parse_arch(nas_space_darts::DARTS_V2)?;
    let device = nas_registry::parse_device(cfg.device)?;
    let net_cfg = nas_model::NetworkConfig {
        channels: cfg.channels,
        layers: cfg.layers,
        auxiliary: true,
    };
    let net = space.build_network(
        &arch,
        &net_cfg,
        &device,
        DType::F32,
        nas_core::component_rng(0, "bench.init"),
    )?;
    net.set_drop_path(0.2);
    net.reseed_drop_path(0);
    let params = net.param_count();
    let optimizer = (comps.optimizers.get("sgd")?)(
        &serde_json::json!({"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4}),
        &cx,
    )?;
    let schedule = (comps.schedules.get("constant")?)(&serde_json::Value::Null, &cx)?;
    let data = synthetic(cfg.batch * 2, cfg.size);
    let mut loader = nas_data::Loader::new(
        data.clone(),
        (0..cfg.batch * 2).collect(),
        cfg.batch,
        true,
        Augment::default(),
        vec![0.5; 3],
        vec![0.25; 3],
        0,
    )?;
    let mut r = nas_trainer::Retrainer {
        net,
        device: device.clone(),
        dtype: DType::F32,
        train: data.clone(),
        test: data,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        augment: Augment::default(),
        optimizer,
        schedule,
        settings: nas_trainer::RetrainSettings {
            epochs: 1,
            batch_size: cfg.batch,
            auxiliary_weight: 0.4,
            drop_path: 0.2,
            clip_grad_norm: Some(5.0),
            base_lr: 0.025,
            limit_batches: None,
            eval_every: 0,
            seed: 0,
        },
    };
    let mut batches = Vec::new();
    for _ in 0..=cfg.steps {
        if loader.batches_per_epoch() == 0 {
            break;
        }
        batches.push(loader.next_batch()?);
    }
    let mut next = batches.into_iter();
    let timings = time_steps(cfg, &device, || {
        let b = next
            .next()
            .ok_or_else(|| nas_core::NasError::Other("bench: no batch left".into()))?;
        r.train_step(&b, (3, cfg.size, cfg.size), 0.025, 0, 0)
            .map(|_| ())
    })?;
    Ok(bench_result(cfg, timings, params, &device))
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
