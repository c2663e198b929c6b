//! A hand-made cell space and a fake trainer whose "validation loss" is a known function of
//! the mixing weights, so strategy-side gradients can be checked without a network.
#![allow(dead_code)]
use nas_core::{
    argmax_derive, ArchGradient, Architecture, Cost, Decision, Drive, DriveKind, Estimator,
    EvalStats, GradOrder, MixingWeights, OptionSpec, Result, SearchEnv, SpaceSpec, Split,
    StepStats, SupernetTrainer,
};

/// Two nodes of one normal cell: node 0 has 2 incoming edges, node 1 has 3; each edge
/// chooses among `none` (free), `small` (10 parameters) and `large` (30 parameters).
pub fn spec() -> SpaceSpec {
    let mut decisions = Vec::new();
    for (node, edges) in [(0usize, 2usize), (1, 3)] {
        for e in 0..edges {
            decisions.push(Decision {
                key: format!("normal.{}<-{e}", node + 2),
                group: "normal".into(),
                node: Some(node),
                options: [("none", 0.0), ("small", 10.0), ("large", 30.0)]
                    .iter()
                    .map(|&(n, p)| OptionSpec {
                        name: n.into(),
                        cost: Cost {
                            params: p,
                            flops: 2.0 * p,
                            latency_ms: None,
                        },
                    })
                    .collect(),
            });
        }
    }
    SpaceSpec {
        space: "toy".into(),
        decisions,
        fixed_cost: Cost::default(),
    }
}

/// The synthetic loss of one weight set: `sum_dk (q_dk w_dk^2 / 2 - r_k w_dk)`, which
/// rewards the costly options (`r = [0, 0.5, 1]`) like a validation loss would.
pub fn loss(w: &[Vec<f64>]) -> f64 {
    w.iter()
        .enumerate()
        .map(|(d, row)| {
            row.iter()
                .enumerate()
                .map(|(k, &x)| q(d, k) * x * x / 2.0 - r(k) * x)
                .sum::<f64>()
        })
        .sum()
}

fn q(d: usize, k: usize) -> f64 {
    0.3 + 0.1 * d as f64 + 0.05 * k as f64
}

fn r(k: usize) -> f64 {
    [0.0, 0.5, 1.0][k]
}

/// Its gradient.
pub fn loss_grad(w: &MixingWeights) -> MixingWeights {
    MixingWeights(
        w.0.iter()
            .enumerate()
            .map(|(d, row)| {
                row.iter()
                    .enumerate()
                    .map(|(k, &x)| (q(d, k) * x as f64 - r(k)) as f32)
                    .collect()
            })
            .collect(),
    )
}

/// A trainer that answers with the synthetic loss's gradients and counts its calls.
pub struct FakeTrainer {
    pub spec: SpaceSpec,
    pub batch: usize,
    pub weight_steps: usize,
    pub arch_steps: usize,
    pub conditions: Vec<Option<f32>>,
}

impl FakeTrainer {
    pub fn new(batch: usize) -> Self {
        FakeTrainer {
            spec: spec(),
            batch,
            weight_steps: 0,
            arch_steps: 0,
            conditions: vec![],
        }
    }
}

fn sets(d: &Drive) -> Vec<MixingWeights> {
    match &d.kind {
        DriveKind::Mixed { weights }
        | DriveKind::SelectedOnly { weights }
        | DriveKind::Gated { weights, .. } => vec![weights.clone()],
        DriveKind::MixedPerSample { weights } | DriveKind::SelectedPerSample { weights } => {
            weights.clone()
        }
        DriveKind::Paths { .. } => vec![],
    }
}

impl SupernetTrainer for FakeTrainer {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        3
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.1
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        self.weight_steps += 1;
        self.conditions.push(drive.condition);
        assert_eq!(
            sets(drive).len(),
            if matches!(drive.kind, DriveKind::MixedPerSample { .. }) {
                self.batch
            } else {
                1
            }
        );
        Ok(StepStats {
            loss: 1.0,
            accuracy: 0.5,
            grad_norm: 1.0,
            lr: 0.1,
        })
    }
    fn arch_gradient(&mut self, drive: &Drive, _order: GradOrder) -> Result<ArchGradient> {
        self.arch_steps += 1;
        let ws = sets(drive);
        let f = |w: &MixingWeights| -> Vec<Vec<f64>> {
            w.0.iter()
                .map(|r| r.iter().map(|&x| x as f64).collect())
                .collect()
        };
        Ok(ArchGradient {
            loss: ws.iter().map(|w| loss(&f(w))).sum(),
            accuracy: 0.5,
            grads: ws.iter().map(loss_grad).collect(),
            condition_grad: None,
        })
    }
    fn evaluate(&mut self, _d: &Drive, _s: Split, _m: Option<usize>) -> Result<EvalStats> {
        Ok(EvalStats {
            loss: 1.0,
            accuracy: 0.5,
            samples: 4,
        })
    }
}

/// The environment around a [`FakeTrainer`].
pub struct FakeEnv {
    pub trainer: FakeTrainer,
    pub epoch: usize,
    pub epochs: usize,
}

impl SearchEnv for FakeEnv {
    fn spec(&self) -> &SpaceSpec {
        &self.trainer.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(&mut self.trainer)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, weights: &MixingWeights, _mode: &str) -> Result<Architecture> {
        argmax_derive(&self.trainer.spec, weights)
    }
    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        self.trainer.spec.cost_of(arch)
    }
    fn describe(&self, arch: &Architecture) -> String {
        format!("{:?}", arch.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (self.epoch, self.epochs)
    }
}
