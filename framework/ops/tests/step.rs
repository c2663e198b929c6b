//! `nas_ops::optimizer_step` (the weight update a GPU runs in one launch) on the CPU: SGD
//! against `nas_optim::Sgd`, the optimizer of the CPU path (the same values to the last bit
//! over several steps, for `f32` and `f64` parameters, a parameter without a gradient, and
//! buffers that start at different steps); Adam, AdamW and RMSprop with the whole network's
//! state in one vector against the host build stepping each tensor on its own copy (itself
//! tested bit for bit against `nas_optim` in nas-kernels); and `nas_ops::sum_squares` against a
//! sum made here.
use candle_core::{DType, Device, Tensor, Var};
use nas_kernels::host;
use nas_ops::{optimizer_step, sum_squares, AdamRule, RmsPropRule, SgdRule, StepRule, TensorStep};
use nas_optim::{Optimizer, Sgd, SgdParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn steps_like_nas_optim(dtype: DType, params: SgdParams) {
    let shapes: [&[usize]; 3] = [&[4, 3], &[7], &[2, 2, 2]];
    let vars: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            let t = Tensor::from_vec(values(n, i as u64), *s, &Device::Cpu).unwrap();
            Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
        })
        .collect();
    // The reference: nas_optim on f64 copies, rounded to the parameters' dtype after each step
    // (what its in-place path does for f32 parameters).
    let mut reference: Vec<Vec<f64>> = vars.iter().map(|v| as_f64(v.as_tensor())).collect();
    let mut sgd = Sgd::new(params.clone()).unwrap();
    let lens: Vec<usize> = vars.iter().map(|v| v.elem_count()).collect();
    let offsets: Vec<usize> = lens
        .iter()
        .scan(0, |acc, &n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let total: usize = lens.iter().sum();
    let buffers = Tensor::zeros(total, DType::F64, &Device::Cpu).unwrap();
    let grad_scale = 0.8;
    for step in 0..3u64 {
        let lr = 0.1 / (step + 1) as f64;
        // Parameter 1 has no gradient at step 0 only; it is stepped with zeros then.
        let grads: Vec<Option<Tensor>> = vars
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (i != 1 || step > 0).then(|| {
                    Tensor::from_vec(
                        values(lens[i], 100 + 10 * step + i as u64),
                        v.dims(),
                        &Device::Cpu,
                    )
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
                })
            })
            .collect();
        let scaled: Vec<Vec<f64>> = grads
            .iter()
            .zip(&lens)
            .map(|(g, &n)| match g {
                Some(g) => as_f64(g).iter().map(|x| x * grad_scale).collect(),
                None => vec![0.0; n],
            })
            .collect();
        {
            let mut w: Vec<&mut [f64]> = reference.iter_mut().map(|v| v.as_mut_slice()).collect();
            let g: Vec<&[f64]> = scaled.iter().map(|v| v.as_slice()).collect();
            // Parameter 2 is left out of step 0: its buffer starts a step later.
            sgd.step_active(&mut w, &g, lr, &[true, true, step > 0])
                .unwrap();
        }
        if dtype == DType::F32 {
            reference
                .iter_mut()
                .flatten()
                .for_each(|x| *x = *x as f32 as f64);
        }
        let rule = SgdRule {
            lr,
            momentum: params.momentum,
            weight_decay: params.weight_decay,
            grad_scale,
            nesterov: params.nesterov.into(),
        };
        let chosen: Vec<usize> = (0..vars.len()).filter(|&i| i != 2 || step > 0).collect();
        let refs: Vec<&Var> = chosen.iter().map(|&i| &vars[i]).collect();
        let grad_refs: Vec<Option<&Tensor>> = chosen.iter().map(|&i| grads[i].as_ref()).collect();
        let tensors: Vec<TensorStep> = chosen
            .iter()
            .map(|&i| TensorStep {
                first: step == 0 || (i == 2 && step == 1),
                ..TensorStep::default()
            })
            .collect();
        let chosen_offsets: Vec<usize> = chosen.iter().map(|&i| offsets[i]).collect();
        let momentum = (params.momentum != 0.0).then_some((&buffers, chosen_offsets.as_slice()));
        let rule = StepRule::Sgd(rule);
        assert!(optimizer_step(&refs, &grad_refs, momentum, &tensors, &rule).unwrap());
        for (i, v) in vars.iter().enumerate() {
            assert_eq!(
                as_f64(v.as_tensor()),
                reference[i],
                "{dtype:?} {params:?} step {step} parameter {i}"
            );
            if params.momentum != 0.0 {
                let buf = as_f64(&buffers.narrow(0, offsets[i], lens[i]).unwrap());
                match sgd.momentum_buffer(i) {
                    Some(want) => assert_eq!(&buf[..], want, "buffer {i}"),
                    // Not started yet: left untouched.
                    None => assert!(buf.iter().all(|&b| b == 0.0), "buffer {i}"),
                }
            }
        }
    }
}

#[test]
fn sgd_steps_match_nas_optim_to_the_bit() {
    for dtype in [DType::F32, DType::F64] {
        steps_like_nas_optim(dtype, SgdParams::default());
        steps_like_nas_optim(
            dtype,
            SgdParams {
                nesterov: true,
                ..SgdParams::default()
            },
        );
        steps_like_nas_optim(
            dtype,
            SgdParams {
                momentum: 0.0,
                ..SgdParams::default()
            },
        );
    }
}

/// Steps four parameters (parameter 1 without a gradient, parameter 3 left out of the step)
/// with the whole state in one vector, and compares every parameter and its state with the host
/// build stepping a copy of each on its own.
fn one_vector_of_state_equals_tensor_by_tensor(dtype: DType, rule: StepRule) {
    let lens = [6usize, 5, 1, 4];
    let buffers = rule.buffers();
    let total: usize = lens.iter().sum();
    let offsets = [0usize, 6, 11, 12];
    let vars: Vec<Var> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let t = Tensor::from_vec(values(n, 40 + i as u64), n, &Device::Cpu).unwrap();
            Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
        })
        .collect();
    let state0: Vec<f64> = values(buffers * total, 50)
        .iter()
        .map(|v| v.abs())
        .collect();
    let state = Tensor::from_vec(state0.clone(), buffers * total, &Device::Cpu).unwrap();
    let grads: Vec<Tensor> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let t = Tensor::from_vec(values(n, 60 + i as u64), n, &Device::Cpu).unwrap();
            t.to_dtype(dtype).unwrap()
        })
        .collect();
    let tensor = |i: usize| TensorStep {
        first: i == 2,
        step_size: 0.01 * (i + 1) as f64,
        bc2_sqrt: 0.3 + 0.1 * i as f64,
    };
    // The reference: each stepped parameter on its own copy and its own contiguous state.
    let mut want_params: Vec<Vec<f64>> = vars.iter().map(|v| as_f64(v.as_tensor())).collect();
    let mut want_state = state0.clone();
    for i in 0..3 {
        let mut own: Vec<f64> = (0..buffers)
            .flat_map(|b| want_state[b * total + offsets[i]..][..lens[i]].to_vec())
            .collect();
        let g = (i != 1).then(|| as_f64(&grads[i]));
        if dtype == DType::F32 {
            let mut p: Vec<f32> = want_params[i].iter().map(|&x| x as f32).collect();
            let g: Option<Vec<f32>> = g.map(|g| g.iter().map(|&x| x as f32).collect());
            host::optimizer_step(&mut p, g.as_deref(), &mut own, tensor(i), &rule).unwrap();
            want_params[i] = p.iter().map(|&x| x as f64).collect();
        } else {
            host::optimizer_step(
                &mut want_params[i],
                g.as_deref(),
                &mut own,
                tensor(i),
                &rule,
            )
            .unwrap();
        }
        for b in 0..buffers {
            want_state[b * total + offsets[i]..][..lens[i]]
                .copy_from_slice(&own[b * lens[i]..][..lens[i]]);
        }
    }
    let refs: Vec<&Var> = vars[..3].iter().collect();
    let grad_refs = [Some(&grads[0]), None, Some(&grads[2])];
    let tensors: Vec<TensorStep> = (0..3).map(tensor).collect();
    let st = (buffers > 0).then_some((&state, &offsets[..3]));
    assert!(optimizer_step(&refs, &grad_refs, st, &tensors, &rule).unwrap());
    for (i, v) in vars.iter().enumerate() {
        assert_eq!(
            as_f64(v.as_tensor()),
            want_params[i],
            "{dtype:?} {rule:?} parameter {i}"
        );
    }
    assert_eq!(as_f64(&state), want_state, "{dtype:?} {rule:?}: state");
}

#[test]
fn adam_and_rmsprop_steps_with_one_vector_of_state_match_the_host_build() {
    for dtype in [DType::F32, DType::F64] {
        for decoupled in [0, 1] {
            let rule = StepRule::Adam(AdamRule {
                lr: 0.02,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-2,
                grad_scale: 0.5,
                decoupled,
            });
            one_vector_of_state_equals_tensor_by_tensor(dtype, rule);
        }
        for (momentum, centered) in [(0.0, 0), (0.9, 1)] {
            let rule = StepRule::RmsProp(RmsPropRule {
                lr: 0.01,
                alpha: 0.99,
                eps: 1e-8,
                weight_decay: 1e-3,
                momentum,
                grad_scale: 0.9,
                centered,
            });
            one_vector_of_state_equals_tensor_by_tensor(dtype, rule);
        }
    }
}

/// SGD at lr 0.1 with momentum 0.9 and no weight decay.
fn momentum_sgd() -> StepRule {
    StepRule::Sgd(SgdRule {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        grad_scale: 1.0,
        nesterov: 0,
    })
}

#[test]
fn an_optimizer_step_refuses_inputs_that_do_not_fit() {
    let p = Var::from_tensor(&Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let sgd = momentum_sgd();
    let plain = StepRule::Sgd(SgdRule {
        momentum: 0.0,
        ..match sgd {
            StepRule::Sgd(r) => r,
            _ => unreachable!(),
        }
    });
    let adam = StepRule::Adam(AdamRule {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        grad_scale: 1.0,
        decoupled: 0,
    });
    let g64 = Tensor::ones(4, DType::F64, &Device::Cpu).unwrap();
    let short = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let fits = Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap();
    let odd = Tensor::zeros(7, DType::F64, &Device::Cpu).unwrap();
    type State<'a> = Option<(&'a Tensor, &'a [usize])>;
    let cases: Vec<(Option<&Tensor>, State<'_>, StepRule)> = vec![
        (None, None, sgd),                      // momentum without buffers
        (Some(&g64), Some((&fits, &[0])), sgd), // gradient of another dtype
        (None, Some((&short, &[0])), sgd),      // buffer too short
        (None, Some((&fits, &[0])), plain),     // state for a rule that keeps none
        (None, Some((&fits, &[0])), adam),      // Adam's two buffers of 2 cannot hold 4
        (None, Some((&odd, &[0])), adam),       // 7 values are not two buffers
    ];
    for (g, m, rule) in cases {
        let err = optimizer_step(&[&p], &[g], m, &[TensorStep::default()], &rule).unwrap_err();
        assert!(err.to_string().contains("optimizer_step"), "{err}");
        assert_eq!(as_f64(p.as_tensor()), vec![1.0; 4], "nothing changed");
    }
}

#[test]
fn an_optimizer_step_refuses_a_parameter_twice_or_shared_state() {
    let p = Var::from_tensor(&Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let q = Var::from_tensor(&Tensor::ones(3, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let sgd = momentum_sgd();
    let g = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
    let state = Tensor::zeros(8, DType::F64, &Device::Cpu).unwrap();
    let steps = [TensorStep::default(), TensorStep::default()];
    let gq = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let step = |params: &[&Var], grads: &[Option<&Tensor>], offsets: &[usize]| {
        optimizer_step(params, grads, Some((&state, offsets)), &steps, &sgd)
    };
    let twice = step(&[&p, &p], &[Some(&g), Some(&g)], &[0, 4]).unwrap_err();
    assert!(
        twice
            .to_string()
            .contains("parameters 0 and 1 are the same tensor"),
        "{twice}"
    );
    let shared = step(&[&p, &q], &[Some(&g), Some(&gq)], &[0, 3]).unwrap_err();
    assert!(
        shared
            .to_string()
            .contains("states of parameters 0 and 1 overlap"),
        "{shared}"
    );
    assert_eq!(as_f64(p.as_tensor()), vec![1.0; 4], "nothing changed");
    assert_eq!(as_f64(q.as_tensor()), vec![1.0; 3], "nothing changed");
    // Adjacent, not overlapping: stepped.
    step(&[&p, &q], &[Some(&g), Some(&gq)], &[0, 4]).unwrap();
    assert_eq!(as_f64(p.as_tensor()), vec![0.9f32 as f64; 4]);
}

#[test]
fn the_sum_of_squares_is_the_squared_norm() {
    let a = Tensor::from_vec(vec![3.0f32, -4.0], 2, &Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![0.5f32; 4], (2, 2), &Device::Cpu).unwrap();
    assert_eq!(sum_squares(&[&a, &b]).unwrap(), 25.0 + 1.0);
    assert_eq!(sum_squares(&[]).unwrap(), 0.0);
}
