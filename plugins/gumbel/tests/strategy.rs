//! The Gumbel strategies against a fake trainer whose loss is a known function of the
//! mixing weights: the drives they send, and FBNet's loss gradient against central
//! differences.
use nas_core::cost_term::{CostForm, CostMetric, CostTerm};
use nas_core::math::softmax;
use nas_core::{
    ArchGradient, Architecture, Cost, Decision, Drive, DriveKind, Estimator, EvalStats, GradOrder,
    MixingWeights, OptionSpec, Result, SearchEnv, SpaceSpec, Split, StepStats, SupernetTrainer,
};
use nas_strategy_gumbel::loss::arch_loss;
use nas_strategy_gumbel::sample::sample_with;

/// Two decisions of 3 and 2 options, with FLOPs and latencies.
fn spec() -> SpaceSpec {
    let opt = |name: &str, flops: f64, ms: f64| OptionSpec {
        name: name.into(),
        cost: Cost {
            params: flops / 10.0,
            flops,
            latency_ms: Some(ms),
        },
    };
    SpaceSpec {
        space: "toy".into(),
        decisions: vec![
            Decision {
                key: "a".into(),
                group: "g".into(),
                node: None,
                options: vec![
                    opt("x", 100.0, 2.0),
                    opt("y", 400.0, 5.0),
                    opt("z", 900.0, 9.0),
                ],
            },
            Decision {
                key: "b".into(),
                group: "g".into(),
                node: None,
                options: vec![opt("x", 50.0, 1.5), opt("y", 300.0, 4.0)],
            },
        ],
        fixed_cost: Cost::default(),
    }
}

/// `CE(w) = 2 + sum t . w` (mean over examples for a per-example drive): its gradient with
/// respect to each set of weights is `t` (`t / n` per example). For a `SelectedOnly` drive
/// the options with weight 0 are "not computed": their gradient is 0, as the supernets
/// return it.
struct Fake {
    spec: SpaceSpec,
    t: Vec<Vec<f32>>,
    drives: Vec<(&'static str, Drive)>,
}

impl Fake {
    fn grads(&self, drive: &Drive) -> (f64, Vec<MixingWeights>) {
        let ce_of = |w: &MixingWeights| -> f64 {
            2.0 + w
                .0
                .iter()
                .zip(&self.t)
                .map(|(w, t)| w.iter().zip(t).map(|(w, t)| (w * t) as f64).sum::<f64>())
                .sum::<f64>()
        };
        match &drive.kind {
            DriveKind::Mixed { weights } => (ce_of(weights), vec![MixingWeights(self.t.clone())]),
            DriveKind::SelectedOnly { weights } => {
                let g = weights
                    .0
                    .iter()
                    .zip(&self.t)
                    .map(|(w, t)| {
                        w.iter()
                            .zip(t)
                            .map(|(&w, &t)| if w == 0.0 { 0.0 } else { t })
                            .collect()
                    })
                    .collect();
                (ce_of(weights), vec![MixingWeights(g)])
            }
            DriveKind::MixedPerSample { weights } => {
                let n = weights.len() as f32;
                let ce = weights.iter().map(ce_of).sum::<f64>() / n as f64;
                let g = MixingWeights(
                    self.t
                        .iter()
                        .map(|t| t.iter().map(|v| v / n).collect())
                        .collect(),
                );
                (ce, vec![g; weights.len()])
            }
            DriveKind::SelectedPerSample { weights } => {
                let n = weights.len() as f32;
                let ce = weights.iter().map(ce_of).sum::<f64>() / n as f64;
                let g = weights
                    .iter()
                    .map(|w| {
                        MixingWeights(
                            w.0.iter()
                                .zip(&self.t)
                                .map(|(w, t)| {
                                    w.iter()
                                        .zip(t)
                                        .map(|(&w, &t)| if w == 0.0 { 0.0 } else { t / n })
                                        .collect()
                                })
                                .collect(),
                        )
                    })
                    .collect();
                (ce, g)
            }
            DriveKind::Paths { .. } => panic!("a Gumbel strategy never sends paths"),
            DriveKind::Gated { .. } => panic!("a Gumbel strategy never sends gates"),
        }
    }
}

impl SupernetTrainer for Fake {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        1
    }
    fn batch_size(&self) -> usize {
        3
    }
    fn begin_epoch(&mut self, _: usize) -> Result<()> {
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.1
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        self.drives.push(("train", drive.clone()));
        Ok(StepStats::default())
    }
    fn arch_gradient(&mut self, drive: &Drive, _: GradOrder) -> Result<ArchGradient> {
        self.drives.push(("arch", drive.clone()));
        let (loss, grads) = self.grads(drive);
        Ok(ArchGradient {
            loss,
            accuracy: 0.5,
            grads,
            condition_grad: None,
        })
    }
    fn evaluate(&mut self, drive: &Drive, _: Split, _: Option<usize>) -> Result<EvalStats> {
        self.drives.push(("eval", drive.clone()));
        Ok(EvalStats::default())
    }
}

struct Env<'a> {
    t: &'a mut Fake,
    epoch: usize,
}

impl SearchEnv for Env<'_> {
    fn spec(&self) -> &SpaceSpec {
        &self.t.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(&mut *self.t)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, w: &MixingWeights, _: &str) -> Result<Architecture> {
        nas_core::argmax_derive(&self.t.spec, w)
    }
    fn cost(&self, a: &Architecture) -> Result<Cost> {
        self.t.spec.cost_of(a)
    }
    fn describe(&self, a: &Architecture) -> String {
        format!("{:?}", a.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (self.epoch, 4)
    }
}

fn fake() -> Fake {
    Fake {
        spec: spec(),
        t: vec![vec![0.3, -0.7, 0.2], vec![1.1, -0.4]],
        drives: vec![],
    }
}

#[test]
fn gdas_sends_one_hot_selected_only_drives_with_weight_one() {
    let mut t = fake();
    let mut s = nas_strategy_gumbel::build("gdas", &serde_json::json!({})).unwrap();
    s.init(&spec(), 3).unwrap();
    for epoch in 0..2 {
        let mut env = Env { t: &mut t, epoch };
        s.step(&mut env).unwrap();
        s.end_epoch(&mut env).unwrap();
    }
    let kinds: Vec<&str> = t.drives.iter().map(|d| d.0).collect();
    // weights first, then the architecture (GDAS reference order), then the evaluation.
    assert_eq!(kinds, ["train", "arch", "eval", "train", "arch", "eval"]);
    for (_, d) in &t.drives {
        let DriveKind::SelectedOnly { weights } = &d.kind else {
            panic!("gdas sent {:?}", d.kind)
        };
        for w in &weights.0 {
            assert_eq!(w.iter().filter(|&&v| v == 1.0).count(), 1, "{w:?}");
            assert_eq!(
                w.iter().filter(|&&v| v == 0.0).count(),
                w.len() - 1,
                "{w:?}"
            );
        }
    }
}

#[test]
fn gdas_per_example_sends_one_one_hot_set_per_example() {
    let mut t = fake();
    let mut s =
        nas_strategy_gumbel::build("gdas", &serde_json::json!({"samples": "example"})).unwrap();
    s.init(&spec(), 3).unwrap();
    let before = s.save_state().unwrap();
    for epoch in 0..4 {
        let mut env = Env { t: &mut t, epoch };
        s.step(&mut env).unwrap();
    }
    assert_ne!(
        s.save_state().unwrap(),
        before,
        "the architecture step moved nothing"
    );
    let mut differing = 0;
    for (kind, d) in &t.drives {
        if *kind == "eval" {
            continue;
        }
        let DriveKind::SelectedPerSample { weights } = &d.kind else {
            panic!("gdas per example sent {:?}", d.kind)
        };
        assert_eq!(weights.len(), 3, "one set per example of the batch");
        for set in weights {
            for w in &set.0 {
                assert_eq!(w.iter().filter(|&&v| v == 1.0).count(), 1, "{w:?}");
                assert_eq!(w.iter().filter(|&&v| v == 0.0).count(), w.len() - 1);
            }
        }
        differing += usize::from(weights.iter().any(|w| w != &weights[0]));
    }
    assert!(differing > 0, "the examples never got different samples");
}

#[test]
fn soft_strategies_send_mixed_or_per_example_weights_and_fbnet_warms_up() {
    let mut t = fake();
    let mut s =
        nas_strategy_gumbel::build("snas", &serde_json::json!({"samples": "example"})).unwrap();
    s.init(&spec(), 3).unwrap();
    s.step(&mut Env {
        t: &mut t,
        epoch: 0,
    })
    .unwrap();
    let DriveKind::MixedPerSample { weights } = &t.drives[1].1.kind else {
        panic!("{:?}", t.drives[1].1.kind)
    };
    assert_eq!(weights.len(), 3);
    for w in weights {
        for d in &w.0 {
            assert!((d.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
    // FBNet: weights only during the warm-up epochs.
    let mut t = fake();
    let mut s =
        nas_strategy_gumbel::build("fbnet", &serde_json::json!({"warmup_epochs": 1})).unwrap();
    s.init(&spec(), 3).unwrap();
    s.step(&mut Env {
        t: &mut t,
        epoch: 0,
    })
    .unwrap();
    s.step(&mut Env {
        t: &mut t,
        epoch: 1,
    })
    .unwrap();
    let kinds: Vec<&str> = t.drives.iter().map(|d| d.0).collect();
    assert_eq!(kinds, ["train", "train", "arch"]);
    assert!(matches!(t.drives[0].1.kind, DriveKind::Mixed { .. }));
}

#[test]
fn fbnet_without_a_latency_table_says_how_to_get_one() {
    let mut sp = spec();
    sp.decisions[1].options[0].cost.latency_ms = None;
    let mut s = nas_strategy_gumbel::build("fbnet", &serde_json::json!({})).unwrap();
    let e = s.init(&sp, 0).unwrap_err().to_string();
    assert!(
        e.contains("latency_table") && e.contains("metric: flops"),
        "{e}"
    );
}

/// FBNet's loss `L(alpha) = CE(y(alpha)) * a * ln(LAT(softmax alpha))^b` at fixed Gumbel
/// noise, with `CE` the fake's linear function: the strategy's exact gradient against
/// central differences of an independent implementation of `L`, per batch and per example,
/// in the multiplicative and the additive form.
#[test]
fn fbnet_loss_gradient_matches_central_differences() {
    let f = fake();
    let costs: Vec<Vec<f64>> = vec![vec![2.0, 5.0, 9.0], vec![1.5, 4.0]];
    let alphas = vec![vec![0.2, -0.5, 0.4], vec![0.1, -0.3]];
    let noise = [
        vec![vec![0.3, 1.2, -0.1], vec![0.9, 0.2]],
        vec![vec![-0.4, 0.1, 0.8], vec![0.0, 1.3]],
    ];
    let tau = 0.8;
    let t: Vec<Vec<f64>> =
        f.t.iter()
            .map(|v| v.iter().map(|&x| x as f64).collect())
            .collect();
    for term in [
        CostTerm::default(),
        CostTerm {
            metric: CostMetric::Latency,
            form: CostForm::Add,
            weight: 0.05,
            target: Some(8.0),
            ..CostTerm::default()
        },
    ] {
        for n in [1usize, 2] {
            // Independent L(alpha): soft samples by hand, CE = 2 + mean_i t . y_i.
            let loss = |a: &[Vec<f64>]| -> f64 {
                let mut ce = 2.0;
                for g in &noise[..n] {
                    for d in 0..2 {
                        let e: Vec<f64> = a[d]
                            .iter()
                            .zip(&g[d])
                            .map(|(a, g)| ((a + g) / tau).exp())
                            .collect();
                        let z: f64 = e.iter().sum();
                        ce += e.iter().zip(&t[d]).map(|(e, t)| e / z * t).sum::<f64>() / n as f64;
                    }
                }
                let lat: f64 = (0..2)
                    .map(|d| {
                        softmax(&a[d])
                            .iter()
                            .zip(&costs[d])
                            .map(|(p, c)| p * c)
                            .sum::<f64>()
                    })
                    .sum();
                match term.form {
                    CostForm::MulLog => ce * 0.2 * lat.ln().powf(0.6),
                    CostForm::Add => ce + 0.05 * (lat / 8.0 - 1.0),
                }
            };
            let samples: Vec<_> = noise[..n]
                .iter()
                .map(|g| {
                    (0..2)
                        .map(|d| sample_with(&alphas[d], &g[d], tau))
                        .collect::<Vec<_>>()
                })
                .collect();
            let weights: Vec<MixingWeights> = samples
                .iter()
                .map(|s| {
                    MixingWeights(
                        s.iter()
                            .map(|s| s.soft.iter().map(|&v| v as f32).collect())
                            .collect(),
                    )
                })
                .collect();
            let drive = Drive {
                kind: if n == 1 {
                    DriveKind::Mixed {
                        weights: weights[0].clone(),
                    }
                } else {
                    DriveKind::MixedPerSample { weights }
                },
                condition: None,
            };
            let (ce, grads) = f.grads(&drive);
            let l = arch_loss(&alphas, &samples, &grads, ce, tau, Some((&term, &costs))).unwrap();
            assert!(
                (l.loss - loss(&alphas)).abs() < 1e-6,
                "{} vs {}",
                l.loss,
                loss(&alphas)
            );
            for d in 0..2 {
                for k in 0..alphas[d].len() {
                    let h = 1e-5;
                    let (mut ap, mut am) = (alphas.clone(), alphas.clone());
                    ap[d][k] += h;
                    am[d][k] -= h;
                    let fd = (loss(&ap) - loss(&am)) / (2.0 * h);
                    assert!(
                        (fd - l.grad[d][k]).abs() < 1e-5 * (1.0 + fd.abs()),
                        "{:?} n={n} d{d} k{k}: fd {fd} vs {}",
                        term.form,
                        l.grad[d][k]
                    );
                }
            }
        }
    }
}
