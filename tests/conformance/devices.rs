//! Every space's supernet and derived network compute on a CUDA device what they compute on
//! the CPU: logits and the gradient of every weight, in f64 (docs/gpu.md). Needs a binary with
//! the `cuda` feature and a GPU; anywhere else the test says it was skipped and passes (CI
//! has no GPU).
use candle_core::{DType, Device, Tensor, Var};
use nas_config::DeviceSetting;
use nas_model::{NetworkConfig, TensorDrive};
use rand::{Rng, SeedableRng};

use super::{builtins, every_space};

/// A drive built for tensors on the given device.
type DriveOn<'a> = dyn Fn(&Device) -> TensorDrive + 'a;

/// The first GPU, or `None` after saying why the test is skipped.
fn gpu() -> Option<Device> {
    let device = nas_registry::parse_device(DeviceSetting::Auto).ok()?;
    if device.is_cuda() {
        Some(device)
    } else {
        eprintln!(
            "skipped: no CUDA device (this binary {} the `cuda` feature)",
            if cfg!(feature = "cuda") {
                "has"
            } else {
                "lacks"
            }
        );
        None
    }
}

/// Mixing weights drawn uniformly in [0, 1) for decisions of `shape` options.
fn random_weights(shape: Vec<usize>, rng: &mut impl Rng) -> nas_core::MixingWeights {
    nas_core::MixingWeights(
        shape
            .into_iter()
            .map(|k| (0..k).map(|_| rng.random::<f32>()).collect())
            .collect(),
    )
}

/// Largest `|a - b| / max(|b|, 1)` over the elements.
fn relative_gap(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// The logits and weight gradients of `loss = sum(logits * r)`, on the host.
fn logits_and_grads(
    logits: Tensor,
    r: &Tensor,
    named: &[(String, Var)],
) -> (Tensor, Vec<(String, Tensor)>) {
    let loss = (&logits * r.to_device(logits.device()).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let grads = named
        .iter()
        .filter_map(|(n, v)| {
            grads
                .get(v.as_tensor())
                .map(|g| (n.clone(), g.to_device(&Device::Cpu).unwrap()))
        })
        .collect();
    (logits.to_device(&Device::Cpu).unwrap(), grads)
}

fn assert_same(
    what: &str,
    cpu: (Tensor, Vec<(String, Tensor)>),
    gpu: (Tensor, Vec<(String, Tensor)>),
) {
    let gap = relative_gap(&gpu.0, &cpu.0);
    assert!(gap < 1e-9, "{what}: logits differ by {gap:e}");
    assert_eq!(cpu.1.len(), gpu.1.len(), "{what}: weights with a gradient");
    for ((name, c), (_, g)) in cpu.1.iter().zip(&gpu.1) {
        let gap = relative_gap(g, c);
        assert!(gap < 1e-9, "{what}: gradient of {name} differs by {gap:e}");
    }
}

#[test]
fn every_supernet_and_network_computes_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let comps = builtins();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (name, space) in every_space(&comps) {
        let Some(ts) = space.tensor() else { continue };
        let spec = space.rules().spec();
        let shape = ts.data_shape();
        let x = Tensor::randn(
            0f64,
            1.0,
            (2, shape.channels, shape.height, shape.width),
            &Device::Cpu,
        )
        .unwrap();
        let choices: Vec<usize> = spec
            .shape()
            .iter()
            .map(|&k| rng.random_range(0..k))
            .collect();
        let mixing = random_weights(spec.shape(), &mut rng);
        // One discrete path (every space), and the weighted sum of every option (DARTS and
        // the other spaces whose supernet takes it; skipped where the CPU refuses it).
        let path = |_: &Device| TensorDrive::Path {
            choices: choices.clone(),
        };
        let mixed = |device: &Device| TensorDrive::Mixed {
            weights: mixing
                .0
                .iter()
                .map(|w| {
                    Tensor::new(w.as_slice(), device)
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                })
                .collect(),
            skip_zero: false,
            values: Some(mixing.clone()),
        };
        let drives: [(&str, &DriveOn); 2] = [("path", &path), ("mixed", &mixed)];
        for (drive_name, drive) in drives {
            let run_supernet = |device: &Device| {
                let net = ts
                    .build_supernet(device, DType::F64, nas_core::component_rng(3, "devices"))
                    .unwrap_or_else(|e| panic!("{name}: supernet on {device:?}: {e}"));
                let logits = net.forward(&x.to_device(device).unwrap(), &drive(device), None, true);
                (logits, net)
            };
            let (logits_cpu, net_cpu) = run_supernet(&Device::Cpu);
            let Ok(logits_cpu) = logits_cpu else {
                assert_eq!(
                    drive_name, "mixed",
                    "{name}: a path forward on the CPU failed"
                );
                continue;
            };
            let r = Tensor::randn(0f64, 1.0, logits_cpu.shape(), &Device::Cpu).unwrap();
            let cpu = logits_and_grads(logits_cpu, &r, net_cpu.params().named());
            let (logits_gpu, net_gpu) = run_supernet(&gpu);
            let logits_gpu = logits_gpu.unwrap_or_else(|e| {
                panic!("{name}: supernet forward ({drive_name}) on the GPU: {e}")
            });
            let on_gpu = logits_and_grads(logits_gpu, &r, net_gpu.params().named());
            assert_same(&format!("{name} supernet, {drive_name} drive"), cpu, on_gpu);
        }

        let arch = space
            .rules()
            .derive(&random_weights(spec.shape(), &mut rng), "default")
            .unwrap();
        // At most 3 layers where the space lets the layer count change (ENAS' macro space
        // fixes it: its architecture has one decision per layer).
        let small = NetworkConfig {
            layers: ts.default_network_config().layers.min(3),
            ..ts.default_network_config()
        };
        let fits = ts
            .build_network(
                &arch,
                &small,
                &Device::Cpu,
                DType::F64,
                nas_core::component_rng(4, "devices"),
            )
            .is_ok();
        let cfg = if fits {
            small
        } else {
            ts.default_network_config()
        };
        let run_network = |device: &Device| {
            let net = ts
                .build_network(
                    &arch,
                    &cfg,
                    device,
                    DType::F64,
                    nas_core::component_rng(4, "devices"),
                )
                .unwrap_or_else(|e| panic!("{name}: network on {device:?}: {e}"));
            let (logits, _) = net
                .forward(&x.to_device(device).unwrap(), true)
                .unwrap_or_else(|e| panic!("{name}: network forward on {device:?}: {e}"));
            (logits, net)
        };
        let (logits_cpu, net_cpu) = run_network(&Device::Cpu);
        let r = Tensor::randn(0f64, 1.0, logits_cpu.shape(), &Device::Cpu).unwrap();
        let cpu = logits_and_grads(logits_cpu, &r, net_cpu.params().named());
        let (logits_gpu, net_gpu) = run_network(&gpu);
        let on_gpu = logits_and_grads(logits_gpu, &r, net_gpu.params().named());
        assert_same(&format!("{name} network"), cpu, on_gpu);
    }
}

/// Three DARTS weight steps (SGD with momentum, clipping; and the same with Adam and with
/// centered RMSprop with momentum) and a second-order architecture gradient by the supernet
/// trainer on a GPU leave the weights, the optimizer state and the gradient the CPU's do: the
/// GPU path's weight step runs on the device (`DeviceOptimizer`, the optimizer's state in
/// device memory, the norm by one launch), its state copied back for the checkpoint and the
/// second-order virtual step. In f64; the device may fuse multiply-adds and sum in another
/// order, hence a tolerance.
#[test]
fn the_trainer_steps_on_the_gpu_as_on_the_cpu() {
    use nas_core::{Drive, GradOrder, SupernetTrainer};
    let Some(gpu) = gpu() else { return };
    let comps = builtins();
    let cx = nas_registry::BuildContext::new(&comps);
    let params = serde_json::json!({"channels": 2, "layers": 3, "nodes": 2, "multiplier": 2});
    let space = (comps.spaces.get("darts").unwrap())(&params, &cx).unwrap();
    let ts = space.tensor().expect("the DARTS space builds tensors");
    let spec = space.rules().spec().clone();
    let shape = ts.data_shape();
    let batch = 4;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let per_image = shape.channels * shape.height * shape.width;
    let data = std::sync::Arc::new(nas_data::Dataset {
        name: "random".into(),
        channels: shape.channels,
        height: shape.height,
        width: shape.width,
        num_classes: shape.num_classes,
        images: (0..2 * batch * per_image)
            .map(|_| rng.random::<f32>())
            .collect(),
        labels: (0..2 * batch)
            .map(|i| (i % shape.num_classes) as u32)
            .collect(),
        files: None,
    });
    let mixing = random_weights(spec.shape(), &mut rng);
    let optimizers = [
        (
            "sgd",
            serde_json::json!({"lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4}),
        ),
        (
            "adam",
            serde_json::json!({"lr": 0.01, "betas": [0.5, 0.999], "weight_decay": 1e-3}),
        ),
        (
            "rmsprop",
            serde_json::json!({"lr": 0.01, "momentum": 0.9, "centered": true}),
        ),
    ];
    for (name, opt) in optimizers {
        let run = |device: &Device| {
            let net = ts
                .build_supernet(device, DType::F64, nas_core::component_rng(3, "devices"))
                .unwrap();
            let mut t = nas_trainer::WeightSharingTrainer::new(nas_trainer::TrainerSetup {
                spec: spec.clone(),
                net,
                device: device.clone(),
                dtype: DType::F64,
                train_data: data.clone(),
                test_data: data.clone(),
                train_indices: (0..batch).collect(),
                valid_indices: (batch..2 * batch).collect(),
                mean: vec![0.5; shape.channels],
                std: vec![0.25; shape.channels],
                batch_size: batch,
                eval_batch_size: batch,
                augment: nas_data::Augment::default(),
                optimizer: nas_optim::build_optimizer(name, &opt).unwrap(),
                schedule: nas_optim::build_schedule("constant", &serde_json::Value::Null).unwrap(),
                base_lr: 0.1,
                clip_grad_norm: Some(1.0),
                total_epochs: 1,
                params: nas_trainer::TrainerParams::default(),
                seed: 3,
                steps_per_epoch: None,
            })
            .unwrap();
            t.begin_epoch(0).unwrap();
            let drive = Drive::mixed(mixing.clone());
            let norms: Vec<f64> = (0..3)
                .map(|_| t.train_weights(&drive).unwrap().grad_norm)
                .collect();
            let grad = t
                .arch_gradient(&drive, GradOrder::Second { xi: None })
                .unwrap();
            let state = t.optimizer().save_state();
            (norms, t.weight_values().unwrap(), state, grad)
        };
        let (norms_cpu, w_cpu, state_cpu, grad_cpu) = run(&Device::Cpu);
        let (norms_gpu, w_gpu, state_gpu, grad_gpu) = run(&gpu);
        let close = |a: f64, b: f64, what: &str| {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{name}: {what}: {a} on the GPU, {b} on the CPU"
            );
        };
        for (a, b) in norms_gpu.iter().zip(&norms_cpu) {
            close(*a, *b, "gradient norm");
        }
        assert!(norms_cpu.iter().any(|&n| n > 1.0), "clipping not exercised");
        assert_eq!(w_gpu.len(), w_cpu.len());
        for (a, b) in w_gpu.iter().flatten().zip(w_cpu.iter().flatten()) {
            close(*a, *b, "weight after three steps");
        }
        // The checkpoint state (buffers and step counts), copied back from the device.
        let (b_gpu, b_cpu) = (numbers(&state_gpu["slots"]), numbers(&state_cpu["slots"]));
        assert_eq!(b_gpu.len(), b_cpu.len());
        assert!(!b_cpu.is_empty());
        for (a, b) in b_gpu.iter().zip(&b_cpu) {
            close(*a, *b, "optimizer state");
        }
        for (ga, gb) in grad_gpu.grads.iter().zip(&grad_cpu.grads) {
            for (a, b) in ga.0.iter().flatten().zip(gb.0.iter().flatten()) {
                close(*a as f64, *b as f64, "second-order architecture gradient");
            }
        }
    }
}

/// Every number in `v`, depth first.
fn numbers(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().into_iter().collect(),
        serde_json::Value::Array(a) => a.iter().flat_map(numbers).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(numbers).collect(),
        _ => Vec::new(),
    }
}
