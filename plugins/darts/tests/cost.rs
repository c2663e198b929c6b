//! DARTS with the shared cost term: the gradient of `combine(CE(p), C(p))`, `p =
//! softmax(alpha)`, against central differences, for a linear stand-in `CE(p) = 1 + g . p`
//! whose `dCE/dp = g` plays the trainer's answer.
use nas_core::cost_term::CostTerm;
use nas_core::MixingWeights;
use nas_strategy_darts::Darts;

#[test]
fn darts_cost_gradient_matches_central_differences() {
    let costs = vec![vec![0.0, 30.0, 80.0], vec![10.0, 50.0]];
    let g = [vec![0.4f32, -0.1, 0.3], vec![-0.6f32, 0.2]];
    let alphas = vec![vec![0.1, 0.5, -0.2], vec![0.3, -0.4]];
    for cost in [
        serde_json::json!({"metric": "flops", "form": "add", "weight": 0.2, "target": 60.0}),
        serde_json::json!({"metric": "params", "form": "mul_log", "a": 0.2, "b": 0.6}),
    ] {
        let mut d = Darts::new(&serde_json::json!({ "cost": cost })).unwrap();
        let term: CostTerm = serde_json::from_value(cost.clone()).unwrap();
        let loss = |a: &[Vec<f64>]| -> f64 {
            let p: Vec<Vec<f64>> = a.iter().map(|v| nas_core::math::softmax(v)).collect();
            let ce = 1.0
                + p.iter()
                    .zip(&g)
                    .map(|(p, g)| p.iter().zip(g).map(|(p, &g)| p * g as f64).sum::<f64>())
                    .sum::<f64>();
            let c: f64 = p
                .iter()
                .zip(&costs)
                .map(|(p, c)| p.iter().zip(c).map(|(p, c)| p * c).sum::<f64>())
                .sum();
            match cost["form"].as_str() {
                Some("add") => ce + 0.2 * (c / 60.0 - 1.0),
                _ => ce * 0.2 * c.ln().powf(0.6),
            }
        };
        d.set_alphas(alphas.clone());
        let p: Vec<Vec<f64>> = alphas.iter().map(|v| nas_core::math::softmax(v)).collect();
        let ce = 1.0
            + p.iter()
                .zip(&g)
                .map(|(p, g)| p.iter().zip(g).map(|(p, &g)| p * g as f64).sum::<f64>())
                .sum::<f64>();
        let (grad, l) = d
            .cost_gradient(&term, &costs, ce, &MixingWeights(g.to_vec()))
            .unwrap();
        assert!((l - loss(&alphas)).abs() < 1e-12);
        for i in 0..2 {
            for k in 0..alphas[i].len() {
                let h = 1e-6;
                let (mut ap, mut am) = (alphas.clone(), alphas.clone());
                ap[i][k] += h;
                am[i][k] -= h;
                let fd = (loss(&ap) - loss(&am)) / (2.0 * h);
                assert!(
                    (fd - grad[i][k]).abs() < 1e-7,
                    "{cost}: fd {fd} vs {}",
                    grad[i][k]
                );
            }
        }
    }
}
