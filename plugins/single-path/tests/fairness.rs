//! FairNAS strict fairness and SPOS uniform sampling, checked on the drives a strategy
//! sends and on which supernet weights a step actually changes.
use crate::common;

use nas_core::{
    ArchGradient, Architecture, Cost, Drive, DriveKind, Estimator, EvalStats, GradOrder,
    MixingWeights, Result, SearchEnv, SpaceRules, SpaceSpec, Split, StepStats, SupernetTrainer,
};
use nas_strategy_single_path::build;

/// A trainer that records the drives of weight steps.
struct Recorder {
    spec: SpaceSpec,
    drives: Vec<Drive>,
}

impl SupernetTrainer for Recorder {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn steps_per_epoch(&self) -> usize {
        10
    }
    fn batch_size(&self) -> usize {
        8
    }
    fn begin_epoch(&mut self, _: usize) -> Result<()> {
        Ok(())
    }
    fn weight_lr(&self) -> f64 {
        0.1
    }
    fn train_weights(&mut self, drive: &Drive) -> Result<StepStats> {
        self.drives.push(drive.clone());
        Ok(StepStats {
            loss: 1.0,
            accuracy: 0.5,
            grad_norm: 1.0,
            lr: 0.1,
        })
    }
    fn arch_gradient(&mut self, _: &Drive, _: GradOrder) -> Result<ArchGradient> {
        unreachable!("single-path strategies never ask for architecture gradients")
    }
    fn evaluate(&mut self, _: &Drive, _: Split, _: Option<usize>) -> Result<EvalStats> {
        Ok(EvalStats {
            loss: 1.0,
            accuracy: 0.5,
            samples: 8,
        })
    }
}

struct RecEnv<'a> {
    space: &'a dyn SpaceRules,
    t: Recorder,
}

impl SearchEnv for RecEnv<'_> {
    fn spec(&self) -> &SpaceSpec {
        self.space.spec()
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        Some(&mut self.t)
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, w: &MixingWeights, m: &str) -> Result<Architecture> {
        self.space.derive(w, m)
    }
    fn cost(&self, a: &Architecture) -> Result<Cost> {
        self.space.spec().cost_of(a)
    }
    fn describe(&self, a: &Architecture) -> String {
        self.space.format_arch(a)
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 2)
    }
}

fn paths(d: &Drive) -> &[Architecture] {
    match &d.kind {
        DriveKind::Paths { archs } => archs,
        other => panic!("not a path drive: {other:?}"),
    }
}

#[test]
fn fairnas_trains_every_option_exactly_once_per_step_in_one_update() {
    let space = common::tiny_spos([2, 1, 2, 1]);
    let mut env = RecEnv {
        space: &space,
        t: Recorder {
            spec: space.spec().clone(),
            drives: vec![],
        },
    };
    let mut s = build("fairnas", &serde_json::json!({"search": null})).unwrap();
    s.init(space.spec(), 7).unwrap();
    for _ in 0..25 {
        s.step(&mut env).unwrap();
    }
    // One weight step (one optimizer update) per strategy step.
    assert_eq!(env.t.drives.len(), 25);
    let mut first_paths = std::collections::HashSet::new();
    for d in &env.t.drives {
        let p = paths(d);
        assert_eq!(p.len(), 4, "m = 4 options per block");
        for dec in 0..6 {
            let mut used: Vec<usize> = p.iter().map(|a| a.choices[dec]).collect();
            used.sort();
            assert_eq!(
                used,
                vec![0, 1, 2, 3],
                "decision {dec}: every option exactly once"
            );
        }
        first_paths.insert(p[0].choices.clone());
    }
    // The permutations are random, not a fixed schedule.
    assert!(first_paths.len() > 20);
}

#[test]
fn spos_trains_one_uniform_path_per_step_within_the_constraint() {
    let space = common::tiny_spos([2, 1, 2, 1]);
    let flops: Vec<f64> = (0..4)
        .map(|k| {
            space
                .spec()
                .cost_of(&Architecture::new("spos", vec![k; 6]))
                .unwrap()
                .flops
        })
        .collect();
    let limit = (flops[0] + flops[3]) / 2.0;
    let mut env = RecEnv {
        space: &space,
        t: Recorder {
            spec: space.spec().clone(),
            drives: vec![],
        },
    };
    let mut s = build(
        "spos",
        &serde_json::json!({"search": null, "constraint": {"max_flops": limit}}),
    )
    .unwrap();
    s.init(space.spec(), 3).unwrap();
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..400 {
        s.step(&mut env).unwrap();
    }
    for d in &env.t.drives {
        let p = paths(d);
        assert_eq!(p.len(), 1);
        assert!(space.spec().cost_of(&p[0]).unwrap().flops <= limit);
        distinct.insert(p[0].choices.clone());
    }
    // Rejection sampling, not a fixed path: many different feasible paths.
    assert!(distinct.len() > 100, "{}", distinct.len());
}

#[test]
fn same_seed_same_paths() {
    let space = common::tiny_spos([1, 1, 1, 1]);
    let run = |seed| {
        let mut env = RecEnv {
            space: &space,
            t: Recorder {
                spec: space.spec().clone(),
                drives: vec![],
            },
        };
        let mut s = build("spos", &serde_json::json!({"search": null})).unwrap();
        s.init(space.spec(), seed).unwrap();
        for _ in 0..10 {
            s.step(&mut env).unwrap();
        }
        env.t.drives
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// With the real trainer and plain SGD, one FairNAS step changes the weights of every
/// option of every block; one SPOS step changes exactly the options on its path.
#[test]
fn a_fair_step_updates_every_option_and_a_spos_step_only_its_path() {
    let space = common::tiny_spos([1, 1, 1, 1]);
    for (name, fair) in [("fairnas", true), ("spos", false)] {
        let mut t = common::trainer(&space, 0.1, 200);
        t.begin_epoch(0).unwrap();
        let before = common::snapshot(&t);
        let mut s = build(name, &serde_json::json!({"search": null})).unwrap();
        s.init(space.spec(), 11).unwrap();
        {
            let mut env = common::Env {
                space: &space,
                trainer: &mut t,
                epoch: (0, 1),
            };
            let rep = s.step(&mut env).unwrap();
            assert_eq!(rep.metrics["paths"], if fair { 4.0 } else { 1.0 });
        }
        let after = common::snapshot(&t);
        let opts = nas_space_spos::OPS;
        for dec in 0..4 {
            let changed: Vec<bool> = opts
                .iter()
                .map(|op| {
                    let prefix = format!("layers.{dec}.{op}.");
                    before
                        .iter()
                        .zip(&after)
                        .any(|((n, a), (_, b))| n.starts_with(&prefix) && a != b)
                })
                .collect();
            let n = changed.iter().filter(|&&c| c).count();
            if fair {
                assert_eq!(n, 4, "{name}: decision {dec}: {changed:?}");
            } else {
                assert_eq!(n, 1, "{name}: decision {dec}: {changed:?}");
            }
        }
        // The stem and the classifier are on every path.
        let moved = |p: &str| {
            before
                .iter()
                .zip(&after)
                .any(|((n, a), (_, b))| n.starts_with(p) && a != b)
        };
        assert!(moved("stem.") && moved("classifier."));
    }
}
