//! `nas_ops::sgd_step` (the weight update a GPU runs in one launch) on the CPU against
//! `nas_optim::Sgd`, the optimizer of the CPU path: the same values to the last bit over
//! several steps, for `f32` and `f64` parameters, a parameter without a gradient, and buffers
//! that start at different steps; and `nas_ops::sum_squares` against a sum made here.
use candle_core::{DType, Device, Tensor, Var};
use nas_ops::{sgd_step, sum_squares, SgdRule};
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
        let first: Vec<bool> = chosen
            .iter()
            .map(|&i| step == 0 || (i == 2 && step == 1))
            .collect();
        let chosen_offsets: Vec<usize> = chosen.iter().map(|&i| offsets[i]).collect();
        let momentum = (params.momentum != 0.0).then_some((&buffers, chosen_offsets.as_slice()));
        assert!(sgd_step(&refs, &grad_refs, momentum, &first, &rule).unwrap());
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

#[test]
fn sgd_step_refuses_inputs_that_do_not_fit() {
    let p = Var::from_tensor(&Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let rule = SgdRule {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        grad_scale: 1.0,
        nesterov: 0,
    };
    let g64 = Tensor::ones(4, DType::F64, &Device::Cpu).unwrap();
    let short = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
    let fits = Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap();
    type Buffers<'a> = Option<(&'a Tensor, &'a [usize])>;
    let cases: Vec<(Option<&Tensor>, Buffers<'_>)> = vec![
        (None, None),                      // momentum without buffers
        (Some(&g64), Some((&fits, &[0]))), // gradient of another dtype
        (None, Some((&short, &[0]))),      // buffer too short
    ];
    for (g, m) in cases {
        let err = sgd_step(&[&p], &[g], m, &[true], &rule).unwrap_err();
        assert!(err.to_string().contains("sgd_step"), "{err}");
        assert_eq!(as_f64(p.as_tensor()), vec![1.0; 4], "nothing changed");
    }
}

#[test]
fn the_sum_of_squares_is_the_squared_norm() {
    let a = Tensor::from_vec(vec![3.0f32, -4.0], 2, &Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![0.5f32; 4], (2, 2), &Device::Cpu).unwrap();
    assert_eq!(sum_squares(&[&a, &b]).unwrap(), 25.0 + 1.0);
    assert_eq!(sum_squares(&[]).unwrap(), 0.0);
}
