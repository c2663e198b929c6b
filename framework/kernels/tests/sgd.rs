//! The optimizer steps' kernel bodies (`nas::sgd_elem`, `adam_elem`, `rmsprop_elem`: what a
//! GPU runs for the weight update) against `nas_optim`'s Sgd, Adam, AdamW and RmsProp, the
//! optimizers the CPU path steps with: the same values and state to the last bit, over
//! several steps (the state's first step and the later ones, step counts that differ between
//! tensors), with and without momentum, Nesterov, centering, weight decay coupled and
//! decoupled, clipping and a missing gradient.
use nas_kernels::host::{self, AdamRule, RmsPropRule, SgdRule, StepRule, TensorStep};
use nas_optim::{
    adam_bias_corrections, Adam, AdamParams, AdamW, AdamWParams, FlatState, Optimizer, RmsProp,
    RmsPropParams, Sgd, SgdParams,
};
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

/// The rule of `optimizer`'s kernel at learning rate `lr` and clipping factor `grad_scale`.
fn rule_of(optimizer: &Reference, lr: f64, grad_scale: f64) -> StepRule {
    match optimizer {
        Reference::Adam(p, decoupled) => StepRule::Adam(AdamRule {
            lr,
            beta1: p.betas[0],
            beta2: p.betas[1],
            eps: p.eps,
            weight_decay: p.weight_decay,
            grad_scale,
            decoupled: (*decoupled).into(),
        }),
        Reference::RmsProp(p) => StepRule::RmsProp(RmsPropRule {
            lr,
            alpha: p.alpha,
            eps: p.eps,
            weight_decay: p.weight_decay,
            momentum: p.momentum,
            grad_scale,
            centered: p.centered.into(),
        }),
    }
}

/// The optimizers with more state than SGD's, by their hyper-parameters.
#[derive(Debug, Clone)]
enum Reference {
    /// Adam (`false`) or AdamW (`true`) with these hyper-parameters.
    Adam(AdamParams, bool),
    RmsProp(RmsPropParams),
}

impl Reference {
    fn build(&self) -> Box<dyn FlatOptimizer> {
        match self {
            Reference::Adam(p, false) => Box::new(Adam::new(p.clone()).unwrap()),
            Reference::Adam(p, true) => Box::new(
                AdamW::new(AdamWParams {
                    lr: p.lr,
                    betas: p.betas,
                    eps: p.eps,
                    weight_decay: p.weight_decay,
                })
                .unwrap(),
            ),
            Reference::RmsProp(p) => Box::new(RmsProp::new(p.clone()).unwrap()),
        }
    }
}

/// An optimizer with its flat state.
trait FlatOptimizer: Optimizer + FlatState {}
impl<T: Optimizer + FlatState> FlatOptimizer for T {}

/// Steps two tensors (the second without a gradient, and only from the second step on: its
/// step count lags) four times both ways, in f64 and f32, and compares the parameters and every
/// state buffer to the bit.
fn stateful_agree_with_nas_optim(reference: Reference, grad_scale: f64) {
    for f32_params in [false, true] {
        let round = |v: Vec<f64>| -> Vec<f64> {
            if f32_params {
                v.into_iter().map(|x| x as f32 as f64).collect()
            } else {
                v
            }
        };
        let mut host_opt = reference.build();
        let buffers = host_opt.buffer_names().len();
        let mut want = [round(values(37, 1)), round(values(5, 2))];
        let mut k64 = want.clone();
        let mut k32: [Vec<f32>; 2] = [
            want[0].iter().map(|&v| v as f32).collect(),
            want[1].iter().map(|&v| v as f32).collect(),
        ];
        let mut state = [vec![0.0; buffers * 37], vec![0.0; buffers * 5]];
        let mut steps = [0u64; 2];
        for step in 0..4u64 {
            let lr = 0.05 / (step + 1) as f64;
            let ga = round(values(37, 10 + step));
            let zeros = vec![0.0; 5];
            let scaled: Vec<f64> = ga.iter().map(|g| g * grad_scale).collect();
            let active = [true, step > 0];
            {
                let [a, b] = &mut want;
                host_opt
                    .step_active(
                        &mut [&mut a[..], &mut b[..]],
                        &[&scaled, &zeros],
                        lr,
                        &active,
                    )
                    .unwrap();
            }
            for v in want.iter_mut() {
                *v = round(std::mem::take(v));
            }
            let rule = rule_of(&reference, lr, grad_scale);
            for t in 0..2 {
                if !active[t] {
                    continue;
                }
                steps[t] += 1;
                let tensor = match &reference {
                    Reference::Adam(p, _) => {
                        let (step_size, bc2_sqrt) = adam_bias_corrections(lr, p.betas, steps[t]);
                        TensorStep {
                            first: false,
                            step_size,
                            bc2_sqrt,
                        }
                    }
                    Reference::RmsProp(_) => TensorStep::default(),
                };
                let g32: Vec<f32> = ga.iter().map(|&g| g as f32).collect();
                if f32_params {
                    let grad = (t == 0).then_some(&g32[..]);
                    host::optimizer_step(&mut k32[t], grad, &mut state[t], tensor, &rule).unwrap();
                } else {
                    let grad = (t == 0).then_some(&ga[..]);
                    host::optimizer_step(&mut k64[t], grad, &mut state[t], tensor, &rule).unwrap();
                }
            }
            let got: Vec<Vec<f64>> = if f32_params {
                k32.iter()
                    .map(|v| v.iter().map(|&x| x as f64).collect())
                    .collect()
            } else {
                k64.to_vec()
            };
            for t in 0..2 {
                let what = format!(
                    "{reference:?} scale {grad_scale} f32 {f32_params} step {step} tensor {t}"
                );
                assert_eq!(got[t], want[t], "{what}: parameters");
                let slot = host_opt.flat_slot(t);
                assert_eq!(
                    slot.as_ref().map_or(0, |s| s.step),
                    steps[t],
                    "{what}: step count"
                );
                let n = want[t].len();
                let host_state: Vec<f64> =
                    slot.map_or(vec![0.0; buffers * n], |s| s.buffers.concat());
                assert_eq!(state[t], host_state, "{what}: state");
            }
        }
    }
}

#[test]
fn the_adam_and_rmsprop_bodies_step_exactly_as_nas_optim() {
    let darts_alphas = AdamParams {
        lr: 3e-4,
        betas: [0.5, 0.999],
        eps: 1e-8,
        weight_decay: 1e-3,
    };
    stateful_agree_with_nas_optim(Reference::Adam(darts_alphas.clone(), false), 1.0);
    stateful_agree_with_nas_optim(Reference::Adam(darts_alphas.clone(), true), 0.6);
    stateful_agree_with_nas_optim(Reference::Adam(AdamParams::default(), false), 0.3);
    for (momentum, centered) in [(0.0, false), (0.9, false), (0.0, true), (0.5, true)] {
        let p = RmsPropParams {
            momentum,
            centered,
            weight_decay: 1e-4,
            ..RmsPropParams::default()
        };
        stateful_agree_with_nas_optim(Reference::RmsProp(p), 0.7);
    }
}

#[test]
fn a_step_refuses_state_of_the_wrong_length() {
    let rule = StepRule::Adam(AdamRule {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        grad_scale: 1.0,
        decoupled: 0,
    });
    let mut p = vec![1.0f64; 3];
    let t = TensorStep::default();
    assert!(host::optimizer_step(&mut p, None, &mut [0.0; 3], t, &rule).is_err());
    assert!(host::optimizer_step(&mut p, None, &mut [0.0; 7], t, &rule).is_err());
    assert_eq!(p, [1.0; 3], "nothing changed on error");
    assert!(host::optimizer_step(&mut p, None, &mut [0.0; 6], t, &rule).is_ok());
}
