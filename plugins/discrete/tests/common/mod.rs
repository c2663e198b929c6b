//! A tiny in-test estimator and search environment.
#![allow(dead_code)]
use std::collections::BTreeMap;

use nas_core::{
    Architecture, Cost, Decision, Estimator, MixingWeights, NasError, OptionSpec, Result, Score,
    SearchEnv, SearchStrategy, SpaceSpec, StepReport, SupernetTrainer,
};

/// A toy space with decisions of 3, 4, 2 and 5 options.
pub fn toy_spec() -> SpaceSpec {
    SpaceSpec {
        space: "toy".into(),
        decisions: [3usize, 4, 2, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| Decision {
                key: format!("d{i}"),
                group: "g".into(),
                node: None,
                options: (0..n)
                    .map(|k| OptionSpec {
                        name: format!("op{k}"),
                        cost: Cost::default(),
                    })
                    .collect(),
            })
            .collect(),
        fixed_cost: Cost::default(),
    }
}

/// Scores with a plain function of the choices and logs every query.
pub struct ToyEstimator {
    pub spec: SpaceSpec,
    pub f: fn(&[usize]) -> f64,
    pub log: Vec<Vec<usize>>,
}

/// Fitness: weighted sum of the choices; the best architecture takes the last option
/// everywhere. `test_acc` = 2 * fitness, so the report is distinguishable.
pub fn linear_fitness(c: &[usize]) -> f64 {
    c.iter()
        .enumerate()
        .map(|(i, &x)| (i + 1) as f64 * x as f64)
        .sum()
}

impl ToyEstimator {
    pub fn new(f: fn(&[usize]) -> f64) -> Self {
        ToyEstimator {
            spec: toy_spec(),
            f,
            log: vec![],
        }
    }
}

impl Estimator for ToyEstimator {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.spec.check(arch)?;
        self.log.push(arch.choices.clone());
        let fitness = (self.f)(&arch.choices);
        Ok(Score {
            fitness,
            report: BTreeMap::from([("test_acc".to_string(), 2.0 * fitness)]),
            cost_seconds: 1.5,
        })
    }

    fn queries(&self) -> u64 {
        self.log.len() as u64
    }
}

/// An environment with only an estimator.
pub struct Env<E: Estimator> {
    pub spec: SpaceSpec,
    pub est: E,
}

impl<E: Estimator> Env<E> {
    pub fn new(est: E) -> Self {
        Env {
            spec: est.spec().clone(),
            est,
        }
    }
}

impl<E: Estimator> SearchEnv for Env<E> {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        None
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        Some(&mut self.est)
    }
    fn derive(&self, _: &MixingWeights, _: &str) -> Result<Architecture> {
        Err(NasError::Strategy("no derivation here".into()))
    }
    fn cost(&self, arch: &Architecture) -> Result<Cost> {
        self.spec.cost_of(arch)
    }
    fn describe(&self, arch: &Architecture) -> String {
        format!("{:?}", arch.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 1)
    }
}

/// Steps until `finished` (at most `max` steps); returns the reports.
pub fn run_to_end(
    s: &mut dyn SearchStrategy,
    env: &mut dyn SearchEnv,
    max: usize,
) -> Vec<StepReport> {
    let mut out = vec![];
    for _ in 0..max {
        let r = s.step(env).unwrap();
        let done = r.finished;
        out.push(r);
        if done {
            break;
        }
    }
    out
}
