//! The temperature schedule, the tempered softmax and its chain rule, checked against
//! hand-worked values and central finite differences.
use nas_core::MixingWeights;

use crate::{TemperedDarts, TemperedParams};

fn strategy(alphas: Vec<Vec<f64>>, tau: f64) -> TemperedDarts {
    let mut s = TemperedDarts::new(TemperedParams::default()).unwrap();
    s.set_alphas(alphas);
    s.set_tau(tau);
    s
}

#[test]
fn the_schedule_is_linear_from_start_to_end() {
    let p = TemperedParams::default();
    // GDAS: 10 -> 0.1 over the epochs; with 3 epochs the middle one is (10 + 0.1) / 2.
    assert_eq!(p.tau(0, 3), 10.0);
    assert!((p.tau(1, 3) - 5.05).abs() < 1e-12);
    assert!((p.tau(2, 3) - 0.1).abs() < 1e-12);
    // One epoch: the start temperature; past the end: the end temperature.
    assert_eq!(p.tau(0, 1), 10.0);
    assert!((p.tau(7, 3) - 0.1).abs() < 1e-12);
}

#[test]
fn weights_are_the_softmax_of_alpha_over_tau() {
    // alpha = [0, ln(3) / 2] at tau = 1/2: softmax([0, ln 3]) = [1/4, 3/4].
    let s = strategy(vec![vec![0.0, 3f64.ln() / 2.0], vec![1.0, 1.0, 1.0]], 0.5);
    let w = s.weights();
    assert!(
        (w.0[0][0] - 0.25).abs() < 1e-7 && (w.0[0][1] - 0.75).abs() < 1e-7,
        "{w:?}"
    );
    assert!(w.0[1].iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-7), "{w:?}");
}

#[test]
fn the_alpha_gradient_matches_central_differences() {
    let alphas = vec![vec![0.3, -1.2, 2.0, 0.0], vec![0.5, -0.25]];
    // dL/dw, exactly representable in f32 so that the f32 boundary loses nothing.
    let g = [vec![1.5f32, -0.5, 0.25, 2.0], vec![-1.0, 0.75]];
    for tau in [0.1, 0.7, 1.0, 4.0] {
        let s = strategy(alphas.clone(), tau);
        let analytic = s.alpha_gradient(&MixingWeights(g.to_vec()));
        // L(alpha) = sum_d sum_k g_dk softmax(alpha_d / tau)_k, computed directly.
        let loss = |a: &[Vec<f64>]| -> f64 {
            a.iter()
                .zip(&g)
                .map(|(ad, gd)| {
                    let e: Vec<f64> = ad.iter().map(|v| (v / tau).exp()).collect();
                    let z: f64 = e.iter().sum();
                    e.iter()
                        .zip(gd)
                        .map(|(e, g)| e / z * *g as f64)
                        .sum::<f64>()
                })
                .sum()
        };
        for d in 0..alphas.len() {
            for k in 0..alphas[d].len() {
                let h = 1e-6;
                let (mut ap, mut am) = (alphas.clone(), alphas.clone());
                ap[d][k] += h;
                am[d][k] -= h;
                let fd = (loss(&ap) - loss(&am)) / (2.0 * h);
                assert!(
                    (fd - analytic[d][k]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "tau {tau}, d {d}, k {k}: fd {fd} vs {}",
                    analytic[d][k]
                );
            }
        }
    }
}

#[test]
fn bad_params_name_the_key() {
    for (params, key) in [
        (serde_json::json!({"tau_end": 0.0}), "tau_end"),
        (serde_json::json!({"tau_start": -1.0}), "tau_start"),
        (serde_json::json!({"order": "third"}), "order"),
        (serde_json::json!({"tau": 1.0}), "tau"),
    ] {
        let e = TemperedParams::from_json(&params).unwrap_err().to_string();
        assert!(e.contains(key), "{params}: {e}");
    }
    assert_eq!(
        TemperedParams::from_json(&serde_json::Value::Null).unwrap(),
        TemperedParams::default()
    );
}
