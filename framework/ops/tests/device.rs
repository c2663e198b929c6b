//! Device-generic checks (docs/gpu.md): every op's forward and backward on a CUDA device equals
//! the CPU's, in f64, and running statistics move the same. Needs the `cuda` feature and a
//! GPU; anywhere else each test says it was skipped and passes (CI has no GPU). Without the
//! feature, asking for a GPU is the error that names the feature.
use candle_core::{DType, Device, Tensor, Var};
use nas_ops::gpu::{self, GpuError};
use nas_ops::BatchNorm2d;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The first GPU, or `None` after saying why the test is skipped.
fn gpu_or_skip(test: &str) -> Option<Device> {
    let device = gpu::first_available();
    if device.is_none() {
        eprintln!(
            "{test}: skipped, no CUDA device (this build {} the `cuda` feature)",
            if gpu::CUDA_BUILT { "has" } else { "lacks" }
        );
    }
    device
}

/// Seeded inputs of `shape` on the host.
fn input(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest `|a - b| / max(|b|, 1)`.
fn relative_gap(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Runs `op` on `inputs` on the CPU and on `gpu`; checks the output and the gradient of
/// `sum(out * r)` with respect to every input.
fn same_on_both(what: &str, gpu: &Device, inputs: &[Tensor], op: &dyn Fn(&[Tensor]) -> Tensor) {
    same_on_both_within(what, gpu, inputs, op, 1e-12)
}

/// [`same_on_both`] with the largest relative gap allowed.
fn same_on_both_within(
    what: &str,
    gpu: &Device,
    inputs: &[Tensor],
    op: &dyn Fn(&[Tensor]) -> Tensor,
    tolerance: f64,
) {
    let run = |device: &Device| {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = op(&ts);
        let r = input(y.dims(), 99).to_device(device).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        // None: the output does not depend on that input (e.g. it was detached).
        let gs: Vec<Option<Tensor>> = vars
            .iter()
            .map(|v| {
                grads
                    .get(v.as_tensor())
                    .map(|g| g.to_device(&Device::Cpu).unwrap())
            })
            .collect();
        (y.to_device(&Device::Cpu).unwrap(), gs)
    };
    let (y_cpu, g_cpu) = run(&Device::Cpu);
    let (y_gpu, g_gpu) = run(gpu);
    let gap = relative_gap(&y_gpu, &y_cpu);
    assert!(gap < tolerance, "{what}: outputs differ by {gap:e}");
    for (i, (g, c)) in g_gpu.iter().zip(&g_cpu).enumerate() {
        let (g, c) = match (g, c) {
            (Some(g), Some(c)) => (g, c),
            (None, None) => continue,
            _ => panic!("{what}: input {i} has a gradient on one device only"),
        };
        let gap = relative_gap(g, c);
        assert!(
            gap < tolerance,
            "{what}: gradient of input {i} differs by {gap:e}"
        );
    }
}

#[test]
fn a_gpu_is_refused_by_name_without_the_cuda_feature() {
    if gpu::CUDA_BUILT {
        eprintln!("skipped: this build has the `cuda` feature");
        return;
    }
    assert!(gpu::first_available().is_none());
    let e = gpu::open_cuda(0).unwrap_err();
    assert!(matches!(e, GpuError::NotBuilt));
    assert!(e.to_string().contains("`cuda` cargo feature"), "{e}");
}

#[test]
fn every_op_computes_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) = gpu_or_skip("every_op_computes_on_the_gpu_as_on_the_cpu") else {
        return;
    };
    let x = input(&[2, 4, 7, 7], 1);
    for (stride, padding) in [(1, 1), (2, 1), (2, 0)] {
        same_on_both(
            &format!("conv2d s{stride} p{padding}"),
            &gpu,
            &[x.clone(), input(&[6, 4, 3, 3], 2)],
            &|t| nas_ops::conv2d(&t[0], &t[1], stride, padding).unwrap(),
        );
        same_on_both(
            &format!("grouped_conv2d s{stride}"),
            &gpu,
            &[x.clone(), input(&[4, 2, 3, 3], 3)],
            &|t| nas_ops::grouped_conv2d(&t[0], &t[1], stride, padding, 2).unwrap(),
        );
        for dilation in [1, 2] {
            same_on_both(
                &format!("depthwise_conv2d s{stride} d{dilation}"),
                &gpu,
                &[x.clone(), input(&[4, 1, 3, 3], 4)],
                &|t| {
                    nas_ops::depthwise_conv2d(&t[0], &t[1], stride, padding * dilation, dilation)
                        .unwrap()
                },
            );
            same_on_both(
                &format!("relu_depthwise_conv2d s{stride} d{dilation}"),
                &gpu,
                &[x.clone(), input(&[4, 1, 5, 5], 5)],
                &|t| {
                    nas_ops::relu_depthwise_conv2d(&t[0], &t[1], stride, 2 * dilation, dilation)
                        .unwrap()
                },
            );
        }
        same_on_both(
            &format!("max_pool2d s{stride} p{padding}"),
            &gpu,
            std::slice::from_ref(&x),
            &|t| nas_ops::max_pool2d(&t[0], 3, stride, padding).unwrap(),
        );
        for include in [false, true] {
            same_on_both(
                &format!("avg_pool2d s{stride} p{padding} include_pad {include}"),
                &gpu,
                std::slice::from_ref(&x),
                &|t| nas_ops::avg_pool2d(&t[0], 3, stride, padding, include).unwrap(),
            );
        }
    }
    for stride in [1, 2] {
        same_on_both(
            &format!("conv2d 1x1 s{stride}"),
            &gpu,
            &[x.clone(), input(&[5, 4, 1, 1], 6)],
            &|t| nas_ops::conv2d(&t[0], &t[1], stride, 0).unwrap(),
        );
    }
    same_on_both("relu", &gpu, std::slice::from_ref(&x), &|t| {
        nas_ops::relu(&t[0]).unwrap()
    });
    same_on_both("global_avg_pool", &gpu, std::slice::from_ref(&x), &|t| {
        nas_ops::global_avg_pool(&t[0]).unwrap()
    });
    same_on_both(
        "weighted_sum",
        &gpu,
        &[x.clone(), input(&[2, 4, 7, 7], 7), input(&[2], 8)],
        &|t| nas_ops::weighted_sum(&t[..2], &t[2]).unwrap(),
    );
    // The fused kernels at DARTS' eight options over several chunks of the weight-gradient
    // reduction (9,000 elements): one weight exactly 0 (skipped forward, its gradient still
    // computed), one operand without a gradient (detached); and per-example weights (the
    // element-wise path).
    let mut operands: Vec<Tensor> = (0..8).map(|k| input(&[2, 9, 10, 50], 20 + k)).collect();
    let mut w = input(&[8], 30).to_vec1::<f64>().unwrap();
    w[3] = 0.0;
    operands.push(Tensor::new(w, &Device::Cpu).unwrap());
    same_on_both("weighted_sum of 8", &gpu, &operands, &|t| {
        let mut ys = t[..8].to_vec();
        ys[5] = ys[5].detach();
        nas_ops::weighted_sum(&ys, &t[8]).unwrap()
    });
    operands[8] = input(&[2, 8], 31);
    same_on_both("weighted_sum per example", &gpu, &operands, &|t| {
        nas_ops::weighted_sum(&t[..8], &t[8]).unwrap()
    });
    // Weight gradients over several chunks of output positions (4 x 48 x 48 = 9,216: two
    // chunks of the block reduction, added by the launch's last block).
    let big = input(&[4, 2, 48, 48], 40);
    same_on_both(
        "relu_depthwise_conv2d over two chunks",
        &gpu,
        &[big.clone(), input(&[2, 1, 3, 3], 41)],
        &|t| nas_ops::relu_depthwise_conv2d(&t[0], &t[1], 1, 1, 1).unwrap(),
    );
    same_on_both(
        "conv2d 1x1 over two chunks",
        &gpu,
        &[big, input(&[3, 2, 1, 1], 42)],
        &|t| nas_ops::conv2d(&t[0], &t[1], 1, 0).unwrap(),
    );
    // The fused separable unit (the CPU's fused kernel against the GPU's fused op).
    let bn = BatchNorm2d::new(6, None, 1e-5, Some(0.1));
    same_on_both(
        "relu_dw_pw_bn",
        &gpu,
        &[x.clone(), input(&[4, 1, 3, 3], 9), input(&[6, 4, 1, 1], 10)],
        &|t| nas_ops::relu_dw_pw_bn(&t[0], &t[1], &t[2], &bn, 1, 1, 1, true).unwrap(),
    );
}

/// An op under test, on its input tensors.
type OpOnTensors = dyn Fn(&[Tensor]) -> Tensor;

/// The f32 entry points of the device kernels (the supernets train in f32): a realistic size,
/// a tolerance for f32 sums in a different order.
#[test]
fn the_f32_kernels_compute_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) = gpu_or_skip("the_f32_kernels_compute_on_the_gpu_as_on_the_cpu") else {
        return;
    };
    let in_f32 = |op: &dyn Fn(&[Tensor]) -> Tensor, t: &[Tensor]| -> Tensor {
        let t32: Vec<Tensor> = t.iter().map(|v| v.to_dtype(DType::F32).unwrap()).collect();
        op(&t32).to_dtype(DType::F64).unwrap()
    };
    let x = input(&[8, 16, 16, 16], 11);
    let cases: Vec<(&str, Vec<Tensor>, Box<OpOnTensors>)> = vec![
        (
            "relu_depthwise_conv2d k5 d2",
            vec![x.clone(), input(&[16, 1, 5, 5], 12)],
            Box::new(|t| nas_ops::relu_depthwise_conv2d(&t[0], &t[1], 1, 4, 2).unwrap()),
        ),
        (
            "conv2d 1x1 s2",
            vec![x.clone(), input(&[24, 16, 1, 1], 13)],
            Box::new(|t| nas_ops::conv2d(&t[0], &t[1], 2, 0).unwrap()),
        ),
        (
            "max_pool2d",
            vec![x.clone()],
            Box::new(|t| nas_ops::max_pool2d(&t[0], 3, 1, 1).unwrap()),
        ),
        (
            "avg_pool2d",
            vec![x.clone()],
            Box::new(|t| nas_ops::avg_pool2d(&t[0], 3, 2, 1, false).unwrap()),
        ),
        (
            "relu",
            vec![x.clone()],
            Box::new(|t| nas_ops::relu(&t[0]).unwrap()),
        ),
    ];
    for (what, inputs, op) in &cases {
        same_on_both_within(what, &gpu, inputs, &|t| in_f32(op.as_ref(), t), 1e-4);
    }
}

#[test]
fn batch_norm_computes_and_tracks_statistics_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) =
        gpu_or_skip("batch_norm_computes_and_tracks_statistics_on_the_gpu_as_on_the_cpu")
    else {
        return;
    };
    // One block per channel (75 values each), and over several blocks per channel (4 x 80 x
    // 80 = 25,600 values each: four chunks, the statistics and the gradient sums added by the
    // launches' last blocks, then one thread per value).
    for x in [input(&[3, 4, 5, 5], 11), input(&[4, 4, 80, 80], 14)] {
        batch_norm_case(&gpu, &x);
    }
}

/// [`batch_norm_computes_and_tracks_statistics_on_the_gpu_as_on_the_cpu`] for one input of
/// four channels.
fn batch_norm_case(gpu: &Device, x: &Tensor) {
    for (affine, momentum) in [(false, Some(0.1)), (true, Some(0.1)), (true, None)] {
        let make = |device: &Device| {
            let ab = affine.then(|| {
                (
                    Var::from_tensor(&input(&[4], 12).to_device(device).unwrap()).unwrap(),
                    Var::from_tensor(&input(&[4], 13).to_device(device).unwrap()).unwrap(),
                )
            });
            BatchNorm2d::new(4, ab, 1e-5, momentum)
        };
        let (bn_cpu, bn_gpu) = (make(&Device::Cpu), make(gpu));
        // Each device's batch norm sees the input once per step: two training forwards (the
        // running statistics stay on the GPU and are folded there), an evaluation (they come
        // back to the host), one more training forward (they go to the GPU again).
        for train in [true, true, false, true] {
            same_on_both(
                &format!("batch norm affine {affine} momentum {momentum:?} train {train}"),
                gpu,
                std::slice::from_ref(x),
                &|t| {
                    let bn = if t[0].device().is_cuda() {
                        &bn_gpu
                    } else {
                        &bn_cpu
                    };
                    bn.forward(&t[0], train).unwrap()
                },
            );
        }
        let (m_cpu, v_cpu) = bn_cpu.running_stats();
        let (m_gpu, v_gpu) = bn_gpu.running_stats();
        for (a, b) in m_gpu.iter().chain(&v_gpu).zip(m_cpu.iter().chain(&v_cpu)) {
            assert!((a - b).abs() < 1e-12, "running statistics: {a} vs {b}");
        }
        assert_eq!(bn_gpu.num_batches_tracked(), 3);
    }
}

/// The fused separable unit (ReLU, depthwise, pointwise, batch norm: one op on a GPU in
/// training) against the CPU's: outputs and the gradients of the input and both weights, for
/// DARTS' SepConv unit (k3) and a strided dilated DilConv (k5 d2 s2), and the running
/// statistics it folds on the device (momentum and cumulative) across training forwards and
/// an evaluation in between (which runs the separate ops with the statistics brought back).
#[test]
fn the_fused_unit_computes_and_tracks_statistics_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) =
        gpu_or_skip("the_fused_unit_computes_and_tracks_statistics_on_the_gpu_as_on_the_cpu")
    else {
        return;
    };
    let x = input(&[3, 4, 9, 9], 21);
    for (k, stride, padding, dilation) in [(3, 1, 1, 1), (5, 2, 4, 2)] {
        for momentum in [Some(0.1), None] {
            let (bn_cpu, bn_gpu) = (
                BatchNorm2d::new(6, None, 1e-5, momentum),
                BatchNorm2d::new(6, None, 1e-5, momentum),
            );
            let inputs = [
                x.clone(),
                input(&[4, 1, k, k], 22),
                input(&[6, 4, 1, 1], 23),
            ];
            for train in [true, true, false, true] {
                same_on_both(
                    &format!(
                        "fused unit k{k} s{stride} d{dilation} momentum {momentum:?} train {train}"
                    ),
                    &gpu,
                    &inputs,
                    &|t| {
                        let bn = if t[0].device().is_cuda() {
                            &bn_gpu
                        } else {
                            &bn_cpu
                        };
                        nas_ops::relu_dw_pw_bn(
                            &t[0], &t[1], &t[2], bn, stride, padding, dilation, train,
                        )
                        .unwrap()
                    },
                );
            }
            let (m_cpu, v_cpu) = bn_cpu.running_stats();
            let (m_gpu, v_gpu) = bn_gpu.running_stats();
            for (a, b) in m_gpu.iter().chain(&v_gpu).zip(m_cpu.iter().chain(&v_cpu)) {
                assert!((a - b).abs() < 1e-12, "running statistics: {a} vs {b}");
            }
            assert_eq!(bn_gpu.num_batches_tracked(), 3);
        }
        // Under frozen weights (an architecture step): the input's gradient as on the CPU,
        // none for the weights.
        let frozen = |device: &Device| -> (Tensor, usize) {
            let vars: Vec<Var> = [
                x.clone(),
                input(&[4, 1, k, k], 22),
                input(&[6, 4, 1, 1], 23),
            ]
            .iter()
            .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
            .collect();
            let bn = BatchNorm2d::new(6, None, 1e-5, Some(0.1));
            let y = nas_ops::with_frozen_weights(|| {
                nas_ops::relu_dw_pw_bn(
                    vars[0].as_tensor(),
                    vars[1].as_tensor(),
                    vars[2].as_tensor(),
                    &bn,
                    stride,
                    padding,
                    dilation,
                    true,
                )
                .unwrap()
            });
            let r = input(y.dims(), 24).to_device(device).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let weight_grads = vars[1..]
                .iter()
                .filter(|v| grads.get(v.as_tensor()).is_some())
                .count();
            let gx = grads.get(vars[0].as_tensor()).unwrap();
            (gx.to_device(&Device::Cpu).unwrap(), weight_grads)
        };
        let ((gx_cpu, nw_cpu), (gx_gpu, nw_gpu)) = (frozen(&Device::Cpu), frozen(&gpu));
        assert_eq!((nw_cpu, nw_gpu), (0, 0), "frozen weights got gradients");
        let gap = relative_gap(&gx_gpu, &gx_cpu);
        assert!(gap <= 1e-12, "frozen unit k{k}: input gradient {gap:e}");
    }
}

/// The fused unit with an affine batch norm (the retraining network's SepConv and DilConv
/// units), the fused 1x1 `ReLUConvBN` (`relu_conv1x1_bn`: every cell's preprocessing) and the
/// fused `FactorizedReduce` with its batch norm (`factorized_reduce_bn`: the preprocessing
/// after a reduction cell), affine or not, one op each on a GPU in training, against the
/// CPU's: the outputs and the gradients of the input, the convolution weights and the batch
/// norm's weight and bias over training forwards with an evaluation in between (the separate
/// ops there), the running statistics, and under frozen weights (the input's gradient alone).
#[test]
fn the_fused_units_and_factorized_reduce_compute_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) =
        gpu_or_skip("the_fused_units_and_factorized_reduce_compute_on_the_gpu_as_on_the_cpu")
    else {
        return;
    };
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Unit,
        ReluConvBn,
        Reduce,
    }
    type Run = (Vec<Tensor>, Vec<Option<Tensor>>, (Vec<f64>, Vec<f64>));
    let cases = [
        (Kind::Unit, true),
        (Kind::ReluConvBn, false),
        (Kind::ReluConvBn, true),
        (Kind::Reduce, false),
        (Kind::Reduce, true),
    ];
    for (kind, affine) in cases {
        // x, the first weight (depthwise, or FactorizedReduce's w_a), the second (pointwise,
        // or w_b), the batch norm's weight and bias.
        let shapes: [&[usize]; 5] = match kind {
            Kind::Reduce => [&[3, 4, 8, 8], &[3, 4, 1, 1], &[3, 4, 1, 1], &[6], &[6]],
            _ => [&[3, 4, 9, 9], &[4, 1, 3, 3], &[6, 4, 1, 1], &[6], &[6]],
        };
        let run = |device: &Device, steps: &[bool], frozen: bool| -> Run {
            let vars: Vec<Var> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let t = input(s, 31 + i as u64).to_device(device).unwrap();
                    Var::from_tensor(&t).unwrap()
                })
                .collect();
            let ab = affine.then(|| (vars[3].clone(), vars[4].clone()));
            let bn = BatchNorm2d::new(6, ab, 1e-5, Some(0.1));
            let (mut outs, mut grads) = (Vec::new(), Vec::new());
            for (step, &train) in steps.iter().enumerate() {
                let (x, w1, w2) = (
                    vars[0].as_tensor(),
                    vars[1].as_tensor(),
                    vars[2].as_tensor(),
                );
                let forward = || {
                    match kind {
                        Kind::Unit => nas_ops::relu_dw_pw_bn(x, w1, w2, &bn, 1, 1, 1, train),
                        Kind::ReluConvBn => nas_ops::relu_conv1x1_bn(x, w2, &bn, train),
                        Kind::Reduce => nas_ops::factorized_reduce_bn(x, w1, w2, &bn, train),
                    }
                    .unwrap()
                };
                let y = match frozen {
                    true => nas_ops::with_frozen_weights(forward),
                    false => forward(),
                };
                let r = input(y.dims(), 40 + step as u64).to_device(device).unwrap();
                let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                outs.push(y.to_device(&Device::Cpu).unwrap());
                grads.extend(vars.iter().map(|v| {
                    g.get(v.as_tensor())
                        .map(|t| t.to_device(&Device::Cpu).unwrap())
                }));
            }
            (outs, grads, bn.running_stats())
        };
        let what = format!("{kind:?} affine {affine}");
        for (steps, frozen) in [(&[true, true, false, true][..], false), (&[true][..], true)] {
            let ((y_cpu, g_cpu, s_cpu), (y_gpu, g_gpu, s_gpu)) =
                (run(&Device::Cpu, steps, frozen), run(&gpu, steps, frozen));
            for (i, (a, b)) in y_gpu.iter().zip(&y_cpu).enumerate() {
                let gap = relative_gap(a, b);
                assert!(
                    gap <= 1e-12,
                    "{what} frozen {frozen}: output {i} differs by {gap:e}"
                );
            }
            for (i, (a, b)) in g_gpu.iter().zip(&g_cpu).enumerate() {
                let (step, input) = (i / 5, i % 5);
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let gap = relative_gap(a, b);
                        assert!(
                            gap <= 1e-12,
                            "{what} frozen {frozen}: step {step}, gradient of input {input}: {gap:e}"
                        );
                    }
                    (None, None) => {}
                    _ => panic!(
                        "{what} frozen {frozen}: step {step}, input {input} has a gradient on the GPU {} / CPU {}",
                        a.is_some(),
                        b.is_some()
                    ),
                }
                let wanted = match input {
                    0 => true,
                    1 => kind != Kind::ReluConvBn && !frozen,
                    2 => !frozen,
                    _ => affine && !frozen,
                };
                assert_eq!(b.is_some(), wanted, "{what} frozen {frozen}: input {input}");
            }
            let ((ma, va), (mb, vb)) = (s_gpu, s_cpu);
            for (a, b) in ma.iter().chain(&va).zip(mb.iter().chain(&vb)) {
                assert!(
                    (a - b).abs() < 1e-12,
                    "{what}: running statistics {a} vs {b}"
                );
            }
        }
    }
}

/// The fused mixed edge (`mixed_edge`: one op for a DARTS edge's options, their weighted sum
/// and its backward) on the GPU against the CPU's, itself tested against the separate ops:
/// the output, the gradients of the input, the mixing weights and every unit and
/// `FactorizedReduce` weight, and the running statistics of every batch norm; the pools, a
/// SepConv and a DilConv at stride 1 with the identity and at stride 2 with
/// `FactorizedReduce` (DARTS' `skip_connect` at either stride), three training steps in a
/// row; and under frozen
/// weights (an architecture step: the input's and the mixing weights' gradients, none for the
/// unit weights).
#[test]
fn the_fused_mixed_edge_computes_on_the_gpu_as_on_the_cpu() {
    use nas_ops::{fusable, mixed_edge, EdgeOption, UnitSpec};
    let Some(gpu) = gpu_or_skip("the_fused_mixed_edge_computes_on_the_gpu_as_on_the_cpu") else {
        return;
    };
    let c = 4;
    let new_bns = || -> Vec<BatchNorm2d> {
        (0..6)
            .map(|_| BatchNorm2d::new(c, None, 1e-5, Some(0.1)))
            .collect()
    };
    for stride in [1, 2] {
        let (bns_cpu, bns_gpu) = (new_bns(), new_bns());
        let inputs = [
            input(&[2, c, 8, 8], 60),
            input(&[5], 61),
            input(&[c, 1, 3, 3], 62),
            input(&[c, c, 1, 1], 63),
            input(&[c, 1, 3, 3], 64),
            input(&[c, c, 1, 1], 65),
            input(&[c, 1, 3, 3], 66),
            input(&[c, c, 1, 1], 67),
            input(&[c / 2, c, 1, 1], 68),
            input(&[c / 2, c, 1, 1], 69),
        ];
        let edge = |t: &[Tensor], bns: &[BatchNorm2d]| -> Tensor {
            let unit =
                |i: usize, bn: usize, stride: usize, padding: usize, dilation: usize| UnitSpec {
                    w_dw: &t[i],
                    w_pw: &t[i + 1],
                    bn: &bns[bn],
                    stride,
                    padding,
                    dilation,
                };
            let mut opts = vec![
                EdgeOption::MaxPoolBn {
                    kernel: 3,
                    stride,
                    padding: 1,
                    bn: &bns[0],
                },
                EdgeOption::AvgPoolBn {
                    kernel: 3,
                    stride,
                    padding: 1,
                    bn: &bns[1],
                },
            ];
            opts.push(if stride == 1 {
                EdgeOption::Identity
            } else {
                EdgeOption::FactorizedReduce {
                    w_a: &t[8],
                    w_b: &t[9],
                    bn: &bns[5],
                }
            });
            opts.push(EdgeOption::Units(vec![
                unit(2, 2, stride, 1, 1),
                unit(4, 3, 1, 1, 1),
            ]));
            opts.push(EdgeOption::Units(vec![unit(6, 4, stride, 2, 2)]));
            assert!(
                fusable(&t[0], &opts, true),
                "the fused form on {:?}",
                t[0].device()
            );
            mixed_edge(&t[0], &t[1], &opts, true).unwrap()
        };
        for step in 0..3 {
            same_on_both(
                &format!("fused edge stride {stride} step {step}"),
                &gpu,
                &inputs,
                &|t| {
                    let bns = if t[0].device().is_cuda() {
                        &bns_gpu
                    } else {
                        &bns_cpu
                    };
                    edge(t, bns)
                },
            );
        }
        for (i, (a, b)) in bns_gpu.iter().zip(&bns_cpu).enumerate() {
            let ((ma, va), (mb, vb)) = (a.running_stats(), b.running_stats());
            for (x, y) in ma.iter().chain(&va).zip(mb.iter().chain(&vb)) {
                assert!((x - y).abs() < 1e-12, "batch norm {i}: running {x} vs {y}");
            }
            // The fifth batch norm is `FactorizedReduce`'s, which only stride 2 uses.
            let steps = if i == 5 && stride == 1 { 0 } else { 3 };
            assert_eq!(
                a.num_batches_tracked(),
                steps,
                "batch norm {i} at stride {stride}"
            );
            assert_eq!(
                b.num_batches_tracked(),
                steps,
                "batch norm {i} at stride {stride}"
            );
        }
        let frozen = |device: &Device| -> (Vec<Option<Tensor>>, Tensor) {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
                .collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let bns = new_bns();
            let y = nas_ops::with_frozen_weights(|| edge(&ts, &bns));
            let r = input(y.dims(), 68).to_device(device).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = vars
                .iter()
                .map(|v| {
                    grads
                        .get(v.as_tensor())
                        .map(|g| g.to_device(&Device::Cpu).unwrap())
                })
                .collect();
            (gs, y.to_device(&Device::Cpu).unwrap())
        };
        let ((g_cpu, y_cpu), (g_gpu, y_gpu)) = (frozen(&Device::Cpu), frozen(&gpu));
        assert!(relative_gap(&y_gpu, &y_cpu) <= 1e-12, "frozen edge: output");
        for (i, (g, c)) in g_gpu.iter().zip(&g_cpu).enumerate() {
            match (g, c) {
                (Some(g), Some(c)) if i < 2 => {
                    let gap = relative_gap(g, c);
                    assert!(gap <= 1e-12, "frozen edge: gradient of input {i}: {gap:e}");
                }
                (None, None) if i >= 2 => {}
                _ => panic!(
                    "frozen edge: input {i} gradient on the GPU {} / CPU {}",
                    g.is_some(),
                    c.is_some()
                ),
            }
        }
    }
}

/// Many tensors as one flat f64 tensor and back (the optimizer step's single copies to and
/// from the host): the device gather and scatter against the CPU's concatenation and
/// per-variable writes, for f32 and f64 tensors of several shapes, one transposed (not
/// contiguous) and one empty.
#[test]
fn the_gather_and_scatter_of_many_tensors_match_the_cpu() {
    let Some(gpu) = gpu_or_skip("the_gather_and_scatter_of_many_tensors_match_the_cpu") else {
        return;
    };
    for dtype in [DType::F32, DType::F64] {
        let on = |device: &Device| -> Vec<Tensor> {
            let mut ts: Vec<Tensor> = [vec![3, 4], vec![7], vec![0], vec![2, 3, 5, 5], vec![1]]
                .iter()
                .enumerate()
                .map(|(i, s)| input(s, 40 + i as u64))
                .collect();
            ts[0] = ts[0].t().unwrap();
            ts.iter()
                .map(|t| t.to_dtype(dtype).unwrap().to_device(device).unwrap())
                .collect()
        };
        let (cpu, dev) = (on(&Device::Cpu), on(&gpu));
        let want = nas_ops::concat_f64(&cpu.iter().collect::<Vec<_>>()).unwrap();
        let got = nas_ops::concat_f64(&dev.iter().collect::<Vec<_>>()).unwrap();
        assert!(got.device().is_cuda());
        assert_eq!(
            got.to_device(&Device::Cpu)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            want.to_vec1::<f64>().unwrap(),
            "{dtype:?}"
        );
        // And back: the flat values (scaled, so that something changes) into variables of
        // those shapes on each device, one scatter launch on the GPU.
        let scaled = (&want * 0.5).unwrap();
        let vars_on = |device: &Device| -> Vec<Var> {
            on(device)
                .iter()
                .map(|t| Var::from_tensor(&t.contiguous().unwrap()).unwrap())
                .collect()
        };
        let (vc, vg) = (vars_on(&Device::Cpu), vars_on(&gpu));
        nas_ops::assign_f64(&scaled, &vc.iter().collect::<Vec<_>>()).unwrap();
        let scaled_gpu = scaled.to_device(&gpu).unwrap();
        nas_ops::assign_f64(&scaled_gpu, &vg.iter().collect::<Vec<_>>()).unwrap();
        let flat = |t: &Tensor| -> Vec<f64> {
            let t = t.to_device(&Device::Cpu).unwrap().flatten_all().unwrap();
            t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
        };
        let all: Vec<f64> = vc.iter().flat_map(|v| flat(v.as_tensor())).collect();
        let rounded: Vec<f64> = scaled
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|&x| {
                if dtype == DType::F32 {
                    x as f32 as f64
                } else {
                    x
                }
            })
            .collect();
        assert_eq!(all, rounded, "{dtype:?} assign on the CPU");
        for (a, b) in vc.iter().zip(&vg) {
            assert_eq!(a.dims(), b.dims());
            assert_eq!(flat(a.as_tensor()), flat(b.as_tensor()), "{dtype:?} assign");
        }
    }
}

/// The weight update on the device (`optimizer_step`, one launch over every parameter, the
/// optimizer's state in device memory) and the squared gradient norm (`sum_squares`) against
/// the CPU, for f32 and f64 parameters (one larger than a grid-stride launch covers in one
/// pass, one without a gradient), for SGD with momentum, Nesterov momentum and none, Adam,
/// AdamW and centered RMSprop with momentum, over three steps in which one parameter starts a
/// step later than the others. The device may fuse multiply-adds, hence a tolerance of
/// rounding.
#[test]
fn the_optimizer_steps_and_the_gradient_norm_match_the_cpu() {
    let Some(gpu) = gpu_or_skip("the_optimizer_steps_and_the_gradient_norm_match_the_cpu") else {
        return;
    };
    let shapes: [&[usize]; 3] = [&[16, 3, 3, 3], &[600, 500], &[5]];
    let lens: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
    let total: usize = lens.iter().sum();
    let offsets = [0, lens[0], lens[0] + lens[1]];
    let sgd = |momentum: f64, nesterov: i32| {
        move |lr: f64, grad_scale: f64| {
            nas_ops::StepRule::Sgd(nas_ops::SgdRule {
                lr,
                momentum,
                weight_decay: 3e-4,
                grad_scale,
                nesterov,
            })
        }
    };
    let adam = |decoupled: i32| {
        move |lr: f64, grad_scale: f64| {
            nas_ops::StepRule::Adam(nas_ops::AdamRule {
                lr,
                beta1: 0.5,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-3,
                grad_scale,
                decoupled,
            })
        }
    };
    let rms = |lr: f64, grad_scale: f64| {
        nas_ops::StepRule::RmsProp(nas_ops::RmsPropRule {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 1e-4,
            momentum: 0.9,
            grad_scale,
            centered: 1,
        })
    };
    type Rule = Box<dyn Fn(f64, f64) -> nas_ops::StepRule>;
    let rules: Vec<Rule> = vec![
        Box::new(sgd(0.9, 0)),
        Box::new(sgd(0.9, 1)),
        Box::new(sgd(0.0, 0)),
        Box::new(adam(0)),
        Box::new(adam(1)),
        Box::new(rms),
    ];
    for make in &rules {
        for dtype in [DType::F32, DType::F64] {
            let tolerance = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
            let buffers = make(0.0, 1.0).buffers();
            let run = |device: &Device| -> (Vec<Tensor>, Tensor, f64) {
                let vars: Vec<Var> = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let t = input(s, 60 + i as u64).to_dtype(dtype).unwrap();
                        Var::from_tensor(&t.to_device(device).unwrap()).unwrap()
                    })
                    .collect();
                let state = Tensor::zeros(buffers * total, DType::F64, device).unwrap();
                let mut steps = [0u64; 3];
                let mut norm = 0.0;
                for step in 0..3u64 {
                    let grads: Vec<Option<Tensor>> = shapes
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            (i != 2).then(|| {
                                input(s, 70 + 10 * step + i as u64)
                                    .to_dtype(dtype)
                                    .unwrap()
                                    .to_device(device)
                                    .unwrap()
                            })
                        })
                        .collect();
                    let present: Vec<&Tensor> = grads.iter().flatten().collect();
                    norm = nas_ops::sum_squares(&present).unwrap().sqrt();
                    // The clipping factor from the norm on the CPU for both devices: the
                    // norms are compared below, and a last-bit difference in them (the
                    // device sums in another order) would otherwise reach the steps, where
                    // coupled weight decay cancelling the gradient amplifies it past
                    // rounding (found on the emulated GPU: 3e-12 in f64).
                    let cpu_grads: Vec<Tensor> = present
                        .iter()
                        .map(|g| g.to_device(&Device::Cpu).unwrap())
                        .collect();
                    let cpu_refs: Vec<&Tensor> = cpu_grads.iter().collect();
                    let clip_norm = nas_ops::sum_squares(&cpu_refs).unwrap().sqrt();
                    let lr = 0.05;
                    let rule = make(lr, (5.0 / clip_norm).min(1.0));
                    // Parameter 1 joins at step 1: its state starts then.
                    let chosen: Vec<usize> = (0..3).filter(|&i| i != 1 || step > 0).collect();
                    let refs: Vec<&Var> = chosen.iter().map(|&i| &vars[i]).collect();
                    let grad_refs: Vec<Option<&Tensor>> =
                        chosen.iter().map(|&i| grads[i].as_ref()).collect();
                    let tensors: Vec<nas_ops::TensorStep> = chosen
                        .iter()
                        .map(|&i| {
                            steps[i] += 1;
                            let (step_size, bc2_sqrt) =
                                nas_optim::adam_bias_corrections(lr, [0.5, 0.999], steps[i]);
                            nas_ops::TensorStep {
                                first: steps[i] == 1,
                                step_size,
                                bc2_sqrt,
                            }
                        })
                        .collect();
                    let at: Vec<usize> = chosen.iter().map(|&i| offsets[i]).collect();
                    let st = (buffers > 0).then_some((&state, at.as_slice()));
                    let served =
                        nas_ops::optimizer_step(&refs, &grad_refs, st, &tensors, &rule).unwrap();
                    assert!(served, "{dtype:?} on {device:?}");
                }
                let params = vars
                    .iter()
                    .map(|v| v.as_tensor().to_dtype(DType::F64).unwrap())
                    .collect();
                (params, state, norm)
            };
            let what = format!("{dtype:?} {:?}", make(0.05, 1.0));
            let (cpu_params, cpu_state, cpu_norm) = run(&Device::Cpu);
            let (gpu_params, gpu_state, gpu_norm) = run(&gpu);
            assert!(
                (gpu_norm - cpu_norm).abs() <= 1e-12 * cpu_norm,
                "{what}: norm {gpu_norm} vs {cpu_norm}"
            );
            for (i, (c, g)) in cpu_params.iter().zip(&gpu_params).enumerate() {
                let gap = relative_gap(&g.to_device(&Device::Cpu).unwrap(), c);
                assert!(gap <= tolerance, "{what}: parameter {i}: {gap:e}");
            }
            if buffers > 0 {
                let gap = relative_gap(&gpu_state.to_device(&Device::Cpu).unwrap(), &cpu_state);
                assert!(gap <= tolerance, "{what}: state: {gap:e}");
            }
        }
    }
}
