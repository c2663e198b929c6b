//! The `proxylessnas` strategy against a fake trainer whose cross-entropy is linear in the
//! gates, so every architecture update can be predicted by hand.
use nas_core::math::softmax;
use nas_core::{
    argmax_derive, ArchGradient, Architecture, Cost, Decision, Drive, DriveKind, Estimator,
    EvalStats, GradOrder, MixingWeights, OptionSpec, Result, SearchEnv, SearchStrategy, SpaceSpec,
    Split, StepStats, SupernetTrainer,
};
use nas_strategy_proxylessnas::ProxylessNas;
use serde_json::json;

fn spec(latency: bool) -> SpaceSpec {
    let names = [
        vec!["a", "b", "c"],
        vec!["zero", "k3"],
        vec!["p", "q", "r", "s"],
    ];
    let lat = [
        vec![1.0, 2.0, 3.0],
        vec![0.5, 4.0],
        vec![2.0, 1.0, 0.5, 3.0],
    ];
    SpaceSpec {
        space: "toy".into(),
        decisions: names
            .iter()
            .enumerate()
            .map(|(d, ops)| Decision {
                key: format!("d{d}"),
                group: "g".into(),
                node: None,
                options: ops
                    .iter()
                    .enumerate()
                    .map(|(k, n)| OptionSpec {
                        name: n.to_string(),
                        cost: Cost {
                            params: 1.0,
                            flops: 10.0,
                            latency_ms: latency.then_some(lat[d][k]),
                        },
                    })
                    .collect(),
            })
            .collect(),
        fixed_cost: Cost {
            params: 0.0,
            flops: 0.0,
            latency_ms: latency.then_some(2.0),
        },
    }
}

/// `CE = sum_d sum_k g_dk * c_dk`.
fn coeffs() -> Vec<Vec<f64>> {
    // Exact in f32 (the trainer returns f32 gradients).
    vec![
        vec![0.5, -1.0, 2.0],
        vec![0.25, -0.125],
        vec![1.0, 0.0, -0.5, 0.75],
    ]
}

struct Fake {
    spec: SpaceSpec,
    drives: Vec<Drive>,
}

impl SupernetTrainer for Fake {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        4
    }
    fn batch_size(&self) -> usize {
        2
    }
    fn begin_epoch(&mut self, _: usize) -> Result<()> {
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.1
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        self.drives.push(drive.clone());
        Ok(StepStats::default())
    }
    fn arch_gradient(&mut self, drive: &Drive, _: GradOrder) -> Result<ArchGradient> {
        self.drives.push(drive.clone());
        let DriveKind::Gated { weights, active } = &drive.kind else {
            panic!("arch step with {drive:?}");
        };
        let c = coeffs();
        let mut ce = 0.0;
        let mut g = Vec::new();
        for d in 0..c.len() {
            let mut row = vec![0.0f32; c[d].len()];
            for &k in &active[d] {
                ce += weights.0[d][k] as f64 * c[d][k];
                row[k] = c[d][k] as f32;
            }
            g.push(row);
        }
        Ok(ArchGradient {
            loss: ce,
            accuracy: 0.5,
            grads: vec![MixingWeights(g)],
            condition_grad: None,
        })
    }
    fn evaluate(&mut self, _: &Drive, _: Split, _: Option<usize>) -> Result<EvalStats> {
        Ok(EvalStats {
            loss: 1.0,
            accuracy: 0.25,
            samples: 2,
        })
    }
}

struct Env {
    t: Fake,
    epoch: usize,
}

impl SearchEnv for Env {
    fn spec(&self) -> &SpaceSpec {
        &self.t.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(&mut self.t)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, w: &MixingWeights, _: &str) -> Result<Architecture> {
        argmax_derive(&self.t.spec, w)
    }
    fn cost(&self, a: &Architecture) -> Result<Cost> {
        self.t.spec.cost_of(a)
    }
    fn describe(&self, a: &Architecture) -> String {
        format!("{:?}", a.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (self.epoch, 3)
    }
}

fn env(latency: bool) -> Env {
    Env {
        t: Fake {
            spec: spec(latency),
            drives: vec![],
        },
        epoch: 0,
    }
}

fn sgd(lr: f64) -> serde_json::Value {
    json!({"name": "sgd", "params": {"lr": lr, "momentum": 0.0, "weight_decay": 0.0}})
}

#[test]
fn an_update_moves_the_pair_by_the_hand_computed_gradient_and_keeps_the_others() {
    let lr = 0.5;
    let (lambda, r) = (0.1, 8.0);
    let mut s = ProxylessNas::new(&json!({
        "arch_optimizer": sgd(lr),
        "cost": {"form": "add", "weight": lambda, "target": r, "fixed": false},
    }))
    .unwrap();
    let mut e = env(true);
    s.init(&e.t.spec.clone(), 4).unwrap();
    s.set_alphas(vec![
        vec![0.2, -0.1, 0.4],
        vec![0.0, 0.3],
        vec![0.1, -0.2, 0.5, 0.0],
    ]);
    let lat = [
        vec![1.0, 2.0, 3.0],
        vec![0.5, 4.0],
        vec![2.0, 1.0, 0.5, 3.0],
    ];
    let mut zero_active_seen = false;
    for _ in 0..12 {
        let before = s.alphas().to_vec();
        let st = s.arch_step(&mut e).unwrap();
        let after = s.alphas().to_vec();
        // The drive: gates 1 on the active option, 0 on the other, the pair computed.
        let Some(Drive {
            kind: DriveKind::Gated { weights, active },
            ..
        }) = e.t.drives.last()
        else {
            panic!()
        };
        for (d, inv) in st.involved.iter().enumerate() {
            assert_eq!(active[d], inv.sorted());
            assert_eq!(active[d].len(), 2);
            for (k, &g) in weights.0[d].iter().enumerate() {
                assert_eq!(g, if k == inv.active { 1.0 } else { 0.0 });
            }
            let (a, o) = (inv.active, inv.other.unwrap());
            let p0 = softmax(&before[d]);
            let p1 = softmax(&after[d]);
            // Unsampled options keep their probabilities (the rescaling).
            for k in 0..p0.len() {
                if k != a && k != o {
                    assert!((p0[k] - p1[k]).abs() < 1e-12, "d={d} k={k}");
                }
            }
            let moved = (after[d][a] - after[d][o]) - (before[d][a] - before[d][o]);
            if d == 1 && a == 0 {
                // `zero` active: no update (reference `set_arch_param_grad`).
                zero_active_seen = true;
                assert_eq!(after[d], before[d]);
                continue;
            }
            // g_a = q_a q_o [(c_a - c_o) + lambda/R (lat_a - lat_o)], g_o = -g_a.
            let z = (before[d][a].exp() + before[d][o].exp()).ln();
            let (qa, qo) = ((before[d][a] - z).exp(), (before[d][o] - z).exp());
            let c = coeffs();
            let ga = qa * qo * ((c[d][a] - c[d][o]) + lambda / r * (lat[d][a] - lat[d][o]));
            assert!(
                (moved + 2.0 * lr * ga).abs() < 1e-12,
                "d={d}: {moved} vs {}",
                -2.0 * lr * ga
            );
        }
        assert!(st.expected.is_some());
    }
    assert!(
        zero_active_seen,
        "the zero op was never the active path in 12 draws"
    );
}

#[test]
fn the_loop_trains_one_sampled_path_and_updates_after_warmup_every_n_steps() {
    let mut s = ProxylessNas::new(&json!({"warmup_epochs": 1, "arch_every": 2})).unwrap();
    let mut e = env(false);
    s.init(&e.t.spec.clone(), 1).unwrap();
    for _ in 0..4 {
        s.step(&mut e).unwrap();
    }
    assert_eq!(e.t.drives.len(), 4, "an architecture update during warm-up");
    for d in &e.t.drives {
        assert!(
            matches!(&d.kind, DriveKind::Paths { archs } if archs.len() == 1),
            "{d:?}"
        );
    }
    e.epoch = 1;
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let r = s.step(&mut e).unwrap();
        kinds.push(r.metrics.contains_key("arch_loss"));
    }
    assert_eq!(kinds, vec![false, true, false, true]);
    let ep = s.end_epoch(&mut e).unwrap();
    assert_eq!(ep.metrics["arch_updates"], 2.0);
    assert!(ep.current.is_some());
}

#[test]
fn a_saved_state_resumes_identically() {
    let p = json!({"arch_every": 1, "cost": {"form": "mul_log", "scale": 10.0}});
    let mut a = ProxylessNas::new(&p).unwrap();
    let mut e = env(true);
    a.init(&e.t.spec.clone(), 9).unwrap();
    for _ in 0..3 {
        a.step(&mut e).unwrap();
    }
    let state = a.save_state().unwrap();
    let mut b = ProxylessNas::new(&p).unwrap();
    b.init(&e.t.spec.clone(), 0).unwrap();
    b.load_state(&state).unwrap();
    let mut e2 = env(true);
    for _ in 0..3 {
        a.step(&mut e).unwrap();
        b.step(&mut e2).unwrap();
    }
    assert_eq!(a.alphas(), b.alphas());
    assert_eq!(e.t.drives[e.t.drives.len() - 6..], e2.t.drives[..]);
}

#[test]
fn bad_cost_settings_are_clear_errors() {
    let e = ProxylessNas::new(&json!({"cost": {"form": "mul#lin"}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cost.form") && e.contains("mul#lin"), "{e}");
    // The keys of the old ProxylessNAS-only block are refused, naming the key.
    let e = ProxylessNas::new(&json!({"cost": {"loss": "mul#log"}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("loss"), "{e}");
    // A latency loss without a latency table.
    let mut s = ProxylessNas::new(&json!({"cost": {"form": "add"}})).unwrap();
    let e = s.init(&spec(false), 0).unwrap_err().to_string();
    assert!(
        e.contains("latency_table") && e.contains("cost.metric"),
        "{e}"
    );
    // mul#log with values whose logarithms are not above 1: names cost.scale.
    let e = ProxylessNas::new(&json!({"cost": {"form": "mul_log", "target": 0.5}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cost.target"), "{e}");
    let mut s = ProxylessNas::new(&json!({"cost": {"form": "mul_log", "scale": 0.1}})).unwrap();
    let e = s.init(&spec(true), 0).unwrap_err().to_string();
    assert!(e.contains("cost.scale"), "{e}");
    // FLOPs need no table.
    let mut s =
        ProxylessNas::new(&json!({"cost": {"form": "mul_log", "metric": "flops", "fixed": false}}))
            .unwrap();
    s.init(&spec(false), 0).unwrap();
    assert!((s.reference() - 30.0).abs() < 1e-12);
}
