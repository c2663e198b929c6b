//! The SGD step's kernel body (`nas::sgd_elem`, what a GPU runs for the weight update)
//! against `nas_optim::Sgd`, the optimizer the CPU path steps with: the same values to the
//! last bit, over several steps (the momentum buffer's first step and the later ones), with
//! and without momentum, Nesterov, weight decay, clipping and a missing gradient.
use nas_kernels::host::{self, SgdRule};
use nas_optim::{Optimizer, Sgd, SgdParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Steps two tensors (the second without a gradient) three times both ways and compares.
fn agree_with_nas_optim(params: SgdParams, grad_scale: f64) {
    let mut sgd = Sgd::new(params.clone()).unwrap();
    let rule = SgdRule {
        lr: 0.0,
        momentum: params.momentum,
        weight_decay: params.weight_decay,
        grad_scale,
        nesterov: params.nesterov.into(),
    };
    let (mut ref_a, mut ref_b) = (values(37, 1), values(5, 2));
    let (mut a32, mut b32): (Vec<f32>, Vec<f32>) = (
        ref_a.iter().map(|&v| v as f32).collect(),
        ref_b.iter().map(|&v| v as f32).collect(),
    );
    let (mut ka, mut kb) = (ref_a.clone(), ref_b.clone());
    let mut ref32 = Sgd::new(params.clone()).unwrap();
    let (mut r32a, mut r32b): (Vec<f64>, Vec<f64>) = (
        a32.iter().map(|&v| v as f64).collect(),
        b32.iter().map(|&v| v as f64).collect(),
    );
    let with_momentum = params.momentum != 0.0;
    let (mut buf_a, mut buf_b) = (vec![0.0; 37], vec![0.0; 5]);
    let (mut buf32_a, mut buf32_b) = (vec![0.0; 37], vec![0.0; 5]);
    for step in 0..3 {
        let lr = 0.1 / (step + 1) as f64;
        let rule = SgdRule { lr, ..rule };
        let ga = values(37, 10 + step);
        let zeros = vec![0.0; 5];
        // nas_optim on f64 copies, the gradient scaled first as the trainer's copying path does.
        let scaled: Vec<f64> = ga.iter().map(|g| g * grad_scale).collect();
        sgd.step(&mut [&mut ref_a, &mut ref_b], &[&scaled, &zeros], lr)
            .unwrap();
        let first = step == 0;
        let (ba, bb) = if with_momentum {
            (Some(&mut buf_a[..]), Some(&mut buf_b[..]))
        } else {
            (None, None)
        };
        host::sgd_step(&mut ka, Some(&ga), ba, first, &rule).unwrap();
        host::sgd_step(&mut kb, None, bb, first, &rule).unwrap();
        assert_eq!(
            ka, ref_a,
            "{params:?} scale {grad_scale} step {step}: with a gradient"
        );
        assert_eq!(kb, ref_b, "{params:?} step {step}: without one");
        if with_momentum {
            assert_eq!(Some(&buf_a[..]), sgd.momentum_buffer(0));
            assert_eq!(Some(&buf_b[..]), sgd.momentum_buffer(1));
        }
        // f32 parameters: stepped in f64 and rounded, as nas_optim's in-place f32 path does.
        let g32: Vec<f32> = ga.iter().map(|&g| g as f32).collect();
        let scaled32: Vec<f64> = g32.iter().map(|&g| g as f64 * grad_scale).collect();
        ref32
            .step(&mut [&mut r32a, &mut r32b], &[&scaled32, &zeros], lr)
            .unwrap();
        r32a.iter_mut().for_each(|v| *v = *v as f32 as f64);
        r32b.iter_mut().for_each(|v| *v = *v as f32 as f64);
        let (ba, bb) = if with_momentum {
            (Some(&mut buf32_a[..]), Some(&mut buf32_b[..]))
        } else {
            (None, None)
        };
        host::sgd_step(&mut a32, Some(&g32), ba, first, &rule).unwrap();
        host::sgd_step(&mut b32, None, bb, first, &rule).unwrap();
        let widen = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
        assert_eq!(widen(&a32), r32a, "{params:?} f32 step {step}");
        assert_eq!(widen(&b32), r32b, "{params:?} f32 step {step}");
    }
}

#[test]
fn the_sgd_body_steps_exactly_as_nas_optim() {
    let darts = SgdParams::default();
    agree_with_nas_optim(darts.clone(), 1.0);
    agree_with_nas_optim(darts.clone(), 0.37);
    agree_with_nas_optim(
        SgdParams {
            nesterov: true,
            ..darts.clone()
        },
        1.0,
    );
    agree_with_nas_optim(
        SgdParams {
            momentum: 0.0,
            ..darts.clone()
        },
        0.5,
    );
    agree_with_nas_optim(
        SgdParams {
            weight_decay: 0.0,
            ..darts
        },
        1.0,
    );
}

#[test]
fn an_sgd_step_checks_its_buffers() {
    let rule = SgdRule {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        grad_scale: 1.0,
        nesterov: 0,
    };
    let mut p = vec![1.0f64; 3];
    assert!(host::sgd_step(&mut p, Some(&[1.0; 2]), Some(&mut [0.0; 3]), true, &rule).is_err());
    assert!(host::sgd_step(&mut p, None, Some(&mut [0.0; 2]), true, &rule).is_err());
    assert!(host::sgd_step(&mut p, None, None, true, &rule).is_err());
    assert_eq!(p, [1.0; 3], "nothing changed on error");
}
