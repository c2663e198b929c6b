//! The latency losses (`mul#log`, `add#linear`: the shared cost term's `mul_log` and `add`
//! forms with a target) and the expected cost: gradients with respect to the logits against
//! central finite differences, and the reference formulas by hand.
use nas_core::cost_term::{CostForm, CostTerm};
use nas_strategy_proxylessnas::cost::CostTable;

/// The reference's `mul#log` (`alpha * CE * (log E / log REF)^beta`).
fn mul_log(alpha: f64, beta: f64, reference: f64, scale: f64) -> CostTerm {
    CostTerm {
        form: CostForm::MulLog,
        a: alpha,
        b: beta,
        target: Some(reference),
        scale,
        ..CostTerm::default()
    }
}

/// The reference's `add#linear` (`CE + lambda * (E - REF) / REF`).
fn add_linear(lambda: f64, reference: f64, scale: f64) -> CostTerm {
    CostTerm {
        form: CostForm::Add,
        weight: lambda,
        target: Some(reference),
        scale,
        ..CostTerm::default()
    }
}

fn table() -> CostTable {
    CostTable {
        options: vec![
            vec![1.2, 3.5, 0.4],
            vec![2.0, 0.7],
            vec![5.0, 1.0, 2.5, 0.1],
        ],
        fixed: 4.0,
    }
}

fn alphas() -> Vec<Vec<f64>> {
    vec![
        vec![0.2, -0.4, 0.9],
        vec![0.1, 0.3],
        vec![-0.5, 0.8, 0.0, 0.25],
    ]
}

/// The total loss as a function of the logits at a fixed cross-entropy.
fn total(loss: &CostTerm, ce: f64, a: &[Vec<f64>], idx: &[Vec<usize>]) -> f64 {
    let (e, _) = table().expected(a, idx);
    loss.combine(ce, e).unwrap().loss
}

fn check(loss: &CostTerm, idx: &[Vec<usize>]) {
    let ce = 0.9;
    let a = alphas();
    let (e, de) = table().expected(&a, idx);
    let parts = loss.combine(ce, e).unwrap();
    for d in 0..a.len() {
        for i in 0..a[d].len() {
            let h = 1e-6;
            let (mut ap, mut am) = (a.clone(), a.clone());
            ap[d][i] += h;
            am[d][i] -= h;
            let fd = (total(loss, ce, &ap, idx) - total(loss, ce, &am, idx)) / (2.0 * h);
            let an = parts.d_cost * de[d][i];
            assert!(
                (fd - an).abs() < 1e-8,
                "{loss:?} d={d} i={i}: fd {fd} vs {an}"
            );
            if !idx[d].contains(&i) {
                assert_eq!(de[d][i], 0.0);
            }
        }
    }
    // dLoss/dCE, the factor on the trainer's dCE/dgates.
    let h = 1e-6;
    let fd =
        (loss.combine(ce + h, e).unwrap().loss - loss.combine(ce - h, e).unwrap().loss) / (2.0 * h);
    assert!(
        (fd - parts.d_ce).abs() < 1e-8,
        "{loss:?}: {fd} vs {}",
        parts.d_ce
    );
}

#[test]
fn loss_gradients_match_central_differences() {
    let sampled = vec![vec![0, 2], vec![1, 0], vec![3, 1]];
    let full: Vec<Vec<usize>> = alphas().iter().map(|a| (0..a.len()).collect()).collect();
    for scale in [1.0, 1000.0] {
        for loss in [
            mul_log(0.2, 0.3, 9.0, scale),
            mul_log(1.0, 0.6, 9.0, scale),
            add_linear(0.1, 9.0, scale),
            add_linear(2.0, 9.0, scale),
        ] {
            for idx in [&sampled, &full] {
                check(&loss, idx);
            }
        }
    }
}

#[test]
fn reference_formulas_by_hand() {
    // mul#log: 0.2 * 0.9 * (ln 12 / ln 9)^0.3; add#linear: 0.9 + 0.1 * (12 - 9) / 9.
    let m = mul_log(0.2, 0.3, 9.0, 1.0).combine(0.9, 12.0).unwrap();
    let want = 0.2 * 0.9 * (12f64.ln() / 9f64.ln()).powf(0.3);
    assert!((m.loss - want).abs() < 1e-15);
    assert!((m.loss - 0.186_768_3).abs() < 1e-6, "{}", m.loss);
    let a = add_linear(0.1, 9.0, 1.0).combine(0.9, 12.0).unwrap();
    assert!((a.loss - (0.9 + 0.1 / 3.0)).abs() < 1e-15);
}

#[test]
fn expected_cost_by_hand() {
    // Uniform logits over the pair (0, 2) of decision 0: (1.2 + 0.4) / 2; decision 1
    // pair (0, 1): (2.0 + 0.7) / 2; decision 2 alone option 3: 0.1; fixed 4.0.
    let a = vec![vec![0.0; 3], vec![0.0; 2], vec![0.0; 4]];
    let (e, _) = table().expected(&a, &[vec![0, 2], vec![0, 1], vec![3]]);
    assert!((e - (4.0 + 0.8 + 1.35 + 0.1)).abs() < 1e-12, "{e}");
    assert!((table().min_total() - (4.0 + 0.4 + 0.7 + 0.1)).abs() < 1e-12);
    assert!((table().uniform_total() - (4.0 + 1.7 + 1.35 + 2.15)).abs() < 1e-12);
}
