//! A toy environment: a "trainer" whose validation accuracy is the fraction of decisions
//! that match a target architecture, and small spaces with and without cells.
#![allow(dead_code)]
use nas_core::{
    argmax_derive, ArchGradient, Architecture, Cost, Decision, Drive, DriveKind, Estimator,
    EvalStats, GradOrder, MixingWeights, OptionSpec, Result, SearchEnv, SpaceSpec, Split,
    StepStats, SupernetTrainer,
};

fn decision(key: &str, group: &str, node: Option<usize>, names: &[&str]) -> Decision {
    Decision {
        key: key.into(),
        group: group.into(),
        node,
        options: names
            .iter()
            .map(|n| OptionSpec {
                name: (*n).into(),
                cost: Cost::default(),
            })
            .collect(),
    }
}

/// A normal cell of two nodes (inputs and ENAS ops) followed by two plain decisions.
pub fn toy_spec() -> SpaceSpec {
    spec_with_ops(&nas_strategy_enas::ENAS_MICRO_OPS)
}

/// As [`toy_spec`] with other op names: the controller then gives the ops no special bias
/// (the reference's `[10, 10, 0, 0, 0]` start makes pools and identity nearly unsampled
/// unless the logits are squashed by `tanh`).
pub fn plain_spec() -> SpaceSpec {
    spec_with_ops(&["o0", "o1", "o2", "o3", "o4"])
}

fn spec_with_ops(ops: &[&str]) -> SpaceSpec {
    let mut d = Vec::new();
    for node in 0..2 {
        let inputs: Vec<String> = (0..node + 2).map(|j| j.to_string()).collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        for (slot, key) in ["input_a", "op_a", "input_b", "op_b"].iter().enumerate() {
            let names: &[&str] = if slot % 2 == 0 { &inputs } else { ops };
            d.push(decision(
                &format!("normal.n{node}.{key}"),
                "normal",
                Some(node),
                names,
            ));
        }
    }
    d.push(decision("stage.b0", "stage", None, &["x", "y", "z"]));
    d.push(decision("stage.b1", "stage", None, &["x", "y", "z"]));
    SpaceSpec {
        space: "toy".into(),
        decisions: d,
        fixed_cost: Cost::default(),
    }
}

/// An ENAS macro space of `layers` layers: per layer `layer{l}.op` (the six macro ops),
/// then `layer{l}.skip{i}` for `i < l` (options `none`, `skip`), group `macro`, node `l`.
pub fn macro_spec(layers: usize) -> SpaceSpec {
    let mut d = Vec::new();
    for l in 0..layers {
        d.push(decision(
            &format!("layer{l}.op"),
            "macro",
            Some(l),
            &nas_strategy_enas::ENAS_MACRO_OPS,
        ));
        for i in 0..l {
            d.push(decision(
                &format!("layer{l}.skip{i}"),
                "macro",
                Some(l),
                &["none", "skip"],
            ));
        }
    }
    SpaceSpec {
        space: "toy-macro".into(),
        decisions: d,
        fixed_cost: Cost::default(),
    }
}

/// Rewards the fraction of choices equal to `target`.
pub struct ToyTrainer {
    pub spec: SpaceSpec,
    pub target: Vec<usize>,
    pub rewards: usize,
    pub weight_steps: usize,
}

fn score(target: &[usize], a: &Architecture) -> f64 {
    let hits = a.choices.iter().zip(target).filter(|(a, b)| a == b).count();
    hits as f64 / target.len() as f64
}

impl SupernetTrainer for ToyTrainer {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        2
    }
    fn batch_size(&self) -> usize {
        1
    }
    fn begin_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.0
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        let DriveKind::Paths { archs } = &drive.kind else {
            panic!("enas trains weights on paths");
        };
        assert_eq!(archs.len(), 1);
        self.weight_steps += 1;
        Ok(StepStats {
            loss: 1.0 - score(&self.target, &archs[0]),
            accuracy: score(&self.target, &archs[0]),
            grad_norm: 0.0,
            lr: 0.0,
        })
    }
    fn arch_gradient(&mut self, drive: &Drive, _order: GradOrder) -> Result<ArchGradient> {
        let DriveKind::Paths { archs } = &drive.kind else {
            panic!("enas asks rewards of paths");
        };
        self.rewards += 1;
        let acc = score(&self.target, &archs[0]);
        Ok(ArchGradient {
            loss: 1.0 - acc,
            accuracy: acc,
            grads: vec![],
            condition_grad: None,
        })
    }
    fn evaluate(&mut self, _d: &Drive, _s: Split, _m: Option<usize>) -> Result<EvalStats> {
        Ok(EvalStats::default())
    }
}

/// The environment around a [`ToyTrainer`].
pub struct ToyEnv {
    pub trainer: ToyTrainer,
    pub epoch: (usize, usize),
}

impl ToyEnv {
    pub fn new(target: Vec<usize>, epochs: usize) -> Self {
        Self::with_spec(plain_spec(), target, epochs)
    }

    pub fn with_spec(spec: SpaceSpec, target: Vec<usize>, epochs: usize) -> Self {
        ToyEnv {
            trainer: ToyTrainer {
                spec,
                target,
                rewards: 0,
                weight_steps: 0,
            },
            epoch: (0, epochs),
        }
    }
}

impl SearchEnv for ToyEnv {
    fn spec(&self) -> &SpaceSpec {
        &self.trainer.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(&mut self.trainer)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, w: &MixingWeights, _mode: &str) -> Result<Architecture> {
        argmax_derive(&self.trainer.spec, w)
    }
    fn cost(&self, _a: &Architecture) -> Result<Cost> {
        Ok(Cost::default())
    }
    fn describe(&self, a: &Architecture) -> String {
        format!("{:?}", a.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        self.epoch
    }
}
