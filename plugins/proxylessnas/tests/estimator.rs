//! The path-level (BinaryConnect) estimate of ProxylessNAS' `two` mode against exact
//! expectations computed here by enumeration and central finite differences, and against
//! a hand-worked example.
use nas_core::math::softmax;
use nas_strategy_proxylessnas::estimator::{
    binary_connect_grad, restricted_softmax, sample_two, Involved,
};
use rand::SeedableRng;

/// A loss of the gates: the decision's output is `y = sum_j g_j v_j` (each option's
/// output a scalar `v_j`), and `L = f(y)`. Returns `L` and `dL/dg`.
fn loss_and_gate_grad(f: &dyn Fn(f64) -> (f64, f64), v: &[f64], g: &[f64]) -> (f64, Vec<f64>) {
    let y: f64 = g.iter().zip(v).map(|(g, v)| g * v).sum();
    let (l, dl) = f(y);
    (l, v.iter().map(|v| dl * v).collect())
}

fn one_hot(k: usize, n: usize) -> Vec<f64> {
    let mut g = vec![0.0; n];
    g[k] = 1.0;
    g
}

/// Every (first, second) draw of the sampler with its probability: two draws without
/// replacement from `p` (`p_a * p_b / (1 - p_a)`), then the active one from `q` over them.
fn enumerate(alpha: &[f64]) -> Vec<(f64, Involved)> {
    let p = softmax(alpha);
    let n = alpha.len();
    let mut out = Vec::new();
    for a in 0..n {
        for b in 0..n {
            if a == b {
                continue;
            }
            let pair_p = p[a] * p[b] / (1.0 - p[a]);
            let q = restricted_softmax(alpha, &[a, b]);
            out.push((
                pair_p * q[0],
                Involved {
                    active: a,
                    other: Some(b),
                },
            ));
            out.push((
                pair_p * q[1],
                Involved {
                    active: b,
                    other: Some(a),
                },
            ));
        }
    }
    out
}

/// The estimator's exact expectation over the sampling.
fn expected_estimate(alpha: &[f64], v: &[f64], f: &dyn Fn(f64) -> (f64, f64)) -> Vec<f64> {
    let mut e = vec![0.0; alpha.len()];
    for (w, inv) in enumerate(alpha) {
        let (_, dg) = loss_and_gate_grad(f, v, &one_hot(inv.active, alpha.len()));
        let g = binary_connect_grad(alpha, &inv.indices(), &dg);
        for (e, g) in e.iter_mut().zip(g) {
            *e += w * g;
        }
    }
    e
}

#[test]
fn the_sampler_enumeration_is_a_distribution() {
    let alpha = [0.3, -0.5, 1.0, 0.1];
    let total: f64 = enumerate(&alpha).iter().map(|(w, _)| w).sum();
    assert!((total - 1.0).abs() < 1e-12, "{total}");
}

/// For a loss linear in the gates (the case where BinaryConnect is exact), the
/// estimator's expectation over the two-path sampling equals the gradient of the expected
/// loss of the restricted problem, `sum_{pairs} P(pair) sum_{c in pair} q_c(alpha) L(e_c)`,
/// with the pair probabilities held at the current alphas (the paper samples the pair,
/// then applies eq. 4 to the two): checked by central differences of that expectation.
#[test]
fn two_path_estimate_equals_the_exact_expectation_for_a_gate_linear_loss() {
    let alpha = vec![0.3, -0.5, 1.0, 0.1, -1.2];
    let v = vec![1.5, -0.7, 0.2, 2.0, -1.1];
    let f = |y: f64| (3.0 * y - 0.5, 3.0);
    let est = expected_estimate(&alpha, &v, &f);
    let pairs = enumerate(&alpha);
    // P(unordered pair) fixed at alpha; the restricted expected loss as a function of the
    // logits.
    let objective = |a: &[f64]| -> f64 {
        let mut tot = 0.0;
        for (w, inv) in &pairs {
            // w = P(pair) * q_active(alpha); divide q out to keep the pair probability fixed.
            let idx = inv.indices();
            let q0 = restricted_softmax(&alpha, &idx)[0];
            let pair_p = w / q0;
            let q = restricted_softmax(a, &idx);
            let l = |k: usize| loss_and_gate_grad(&f, &v, &one_hot(k, a.len())).0;
            // Each ordered (active, other) entry carries the pair once per active choice;
            // summing q over both entries of a pair counts the pair's expectation once.
            tot += pair_p * q[0] * l(idx[0]);
        }
        tot
    };
    for i in 0..alpha.len() {
        let h = 1e-6;
        let (mut ap, mut am) = (alpha.clone(), alpha.clone());
        ap[i] += h;
        am[i] -= h;
        let fd = (objective(&ap) - objective(&am)) / (2.0 * h);
        assert!(
            (fd - est[i]).abs() < 1e-8,
            "i={i}: fd {fd} vs estimate {}",
            est[i]
        );
    }
    // And it descends the full expected loss: positive alignment with the exact gradient
    // p_i (c_i - sum_j p_j c_j) of E_p[L] (c_j = L(e_j)).
    let p = softmax(&alpha);
    let c: Vec<f64> = (0..alpha.len())
        .map(|k| loss_and_gate_grad(&f, &v, &one_hot(k, alpha.len())).0)
        .collect();
    let mean: f64 = p.iter().zip(&c).map(|(p, c)| p * c).sum();
    let exact: Vec<f64> = p.iter().zip(&c).map(|(p, c)| p * (c - mean)).collect();
    let dot: f64 = exact.iter().zip(&est).map(|(a, b)| a * b).sum();
    assert!(dot > 0.0, "{exact:?} vs {est:?}");
}

/// The hand-worked example of the docs: two options (the pair is both), alpha = (0, ln 3)
/// so q = (1/4, 3/4), option outputs v = (1, 2), L = y^2 / 2.
/// Active 0 (prob 1/4): y = 1, dL/dg = (1, 2), estimate_0 = 1*(1/4)(3/4) - 2*(3/4)(1/4)
/// = -3/16. Active 1 (prob 3/4): y = 2, dL/dg = (2, 4), estimate_0 = -6/16.
/// Expectation: -(1/4)(3/16) - (3/4)(6/16) = -21/64 (and +21/64 for option 1). The exact
/// gradient of E[L] = (1/4)(1/2) + (3/4)(2) = 13/8 is q_0 (L_0 - E) = (1/4)(1/2 - 13/8)
/// = -9/32: the same sign, larger in size (BinaryConnect linearises L in the gates).
#[test]
fn hand_worked_two_option_example() {
    let alpha = [0.0, 3f64.ln()];
    let f = |y: f64| (0.5 * y * y, y);
    let est = expected_estimate(&alpha, &[1.0, 2.0], &f);
    assert!((est[0] + 21.0 / 64.0).abs() < 1e-12, "{est:?}");
    assert!((est[1] - 21.0 / 64.0).abs() < 1e-12, "{est:?}");
    let exact0: f64 = -9.0 / 32.0;
    assert!(est[0].signum() == exact0.signum());
}

/// The sampler the strategy uses draws pairs and active options with the enumerated
/// probabilities: the Monte Carlo mean of the estimate agrees with the exact expectation
/// within 4 standard errors.
#[test]
fn monte_carlo_of_the_sampler_agrees_with_the_exact_expectation() {
    let alpha = vec![0.8, -0.3, 0.0, 0.5];
    let v = vec![1.0, -2.0, 0.5, 1.5];
    let f = |y: f64| ((y - 0.3).powi(2), 2.0 * (y - 0.3));
    let exact = expected_estimate(&alpha, &v, &f);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let n = 40_000;
    let (mut sum, mut sq) = ([0.0; 4], [0.0; 4]);
    let mut counts = [0usize; 4];
    for _ in 0..n {
        let inv = sample_two(&alpha, &mut rng);
        counts[inv.active] += 1;
        let (_, dg) = loss_and_gate_grad(&f, &v, &one_hot(inv.active, 4));
        let g = binary_connect_grad(&alpha, &inv.indices(), &dg);
        for i in 0..4 {
            sum[i] += g[i];
            sq[i] += g[i] * g[i];
        }
    }
    for i in 0..4 {
        let mean = sum[i] / n as f64;
        let se = ((sq[i] / n as f64 - mean * mean) / n as f64).sqrt();
        assert!(
            (mean - exact[i]).abs() < 4.0 * se + 1e-12,
            "i={i}: {mean} vs {} (se {se})",
            exact[i]
        );
    }
    // The active option is marginally distributed as sum over pairs of P(pair) q.
    let mut marg = [0.0; 4];
    for (w, inv) in enumerate(&alpha) {
        marg[inv.active] += w;
    }
    for i in 0..4 {
        let f = counts[i] as f64 / n as f64;
        let se = (marg[i] * (1.0 - marg[i]) / n as f64).sqrt();
        assert!(
            (f - marg[i]).abs() < 4.0 * se,
            "active {i}: {f} vs {}",
            marg[i]
        );
    }
}
