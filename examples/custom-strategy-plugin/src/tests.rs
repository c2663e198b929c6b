//! Behaviour of the search on small spaces whose answers are worked out by hand.
use nas_core::{
    Architecture, Cost, Decision, Estimator, MixingWeights, OptionSpec, Result, Score, SearchEnv,
    SearchStrategy, SpaceSpec, SupernetTrainer,
};

use crate::{LocalSearch, LocalSearchParams};

fn spec(shape: &[usize]) -> SpaceSpec {
    SpaceSpec {
        space: "toy".into(),
        decisions: shape
            .iter()
            .enumerate()
            .map(|(i, &n)| Decision {
                key: format!("d{i}"),
                group: "g".into(),
                node: None,
                options: (0..n)
                    .map(|o| OptionSpec {
                        name: format!("op{o}"),
                        cost: Cost::default(),
                    })
                    .collect(),
            })
            .collect(),
        fixed_cost: Cost::default(),
    }
}

/// An estimator over a fitness function of the choices, recording every query.
struct FnEnv {
    spec: SpaceSpec,
    fitness: fn(&[usize]) -> f64,
    queried: Vec<Vec<usize>>,
}

impl Estimator for FnEnv {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn estimate(&mut self, arch: &Architecture) -> Result<Score> {
        self.spec.check(arch)?;
        self.queried.push(arch.choices.clone());
        Ok(Score {
            fitness: (self.fitness)(&arch.choices),
            report: Default::default(),
            cost_seconds: 0.0,
        })
    }
    fn queries(&self) -> u64 {
        self.queried.len() as u64
    }
}

impl SearchEnv for FnEnv {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        None
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        Some(self)
    }
    fn derive(&self, _: &MixingWeights, _: &str) -> Result<Architecture> {
        unreachable!("local search never derives")
    }
    fn cost(&self, _: &Architecture) -> Result<Cost> {
        Ok(Cost::default())
    }
    fn describe(&self, a: &Architecture) -> String {
        format!("{:?}", a.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 1)
    }
}

fn env(shape: &[usize], fitness: fn(&[usize]) -> f64) -> FnEnv {
    FnEnv {
        spec: spec(shape),
        fitness,
        queried: Vec::new(),
    }
}

fn search(max_queries: u64) -> LocalSearch {
    LocalSearch::new(LocalSearchParams {
        max_queries,
        panic_at_step: None,
    })
}

/// Minus the Hamming distance to (2, 0, 1): every non-target architecture has a
/// strictly better neighbour, so best-improvement local search walks straight there.
fn hamming(c: &[usize]) -> f64 {
    -(c.iter().zip([2, 0, 1]).filter(|(a, b)| **a != *b).count() as f64)
}

#[test]
fn finds_the_peak_of_a_unimodal_landscape_within_the_hand_worked_bound() {
    for seed in 0..20 {
        let mut e = env(&[3, 3, 3], hamming);
        let mut s = search(1000);
        s.init(&e.spec.clone(), seed).unwrap();
        while e.queried.last().map(|c| hamming(c)) != Some(0.0) {
            s.step(&mut e).unwrap();
        }
        // One random start at distance <= 3, then at most one neighbourhood of
        // 3 decisions x 2 other options = 6 queries per move.
        assert!(
            e.queried.len() <= 1 + 3 * 6,
            "seed {seed}: {}",
            e.queried.len()
        );
        let out = s.outcome(&mut e).unwrap();
        assert_eq!(out.architectures[0].arch.choices, vec![2, 0, 1]);
        assert_eq!(out.architectures[0].metrics["fitness"], 0.0);
    }
}

/// Two local optima on a 2 x 2 grid: (0,0) = 3 and (1,1) = 5, both surrounded by 0.
fn two_peaks(c: &[usize]) -> f64 {
    match c {
        [0, 0] => 3.0,
        [1, 1] => 5.0,
        _ => 0.0,
    }
}

#[test]
fn restarts_at_a_local_optimum_and_never_queries_twice() {
    for seed in 0..20 {
        let mut e = env(&[2, 2], two_peaks);
        let mut s = search(4);
        s.init(&e.spec.clone(), seed).unwrap();
        let mut finished = false;
        for _ in 0..4 {
            finished = s.step(&mut e).unwrap().finished;
        }
        assert!(finished, "seed {seed}");
        // Four distinct architectures: the whole space, so the global optimum is found.
        let mut q = e.queried.clone();
        q.sort();
        q.dedup();
        assert_eq!(q.len(), 4, "seed {seed}: {:?}", e.queried);
        let out = s.outcome(&mut e).unwrap();
        assert_eq!(out.architectures[0].arch.choices, vec![1, 1], "seed {seed}");
        // A fifth step has nothing left to query and reports finished without a query.
        assert!(s.step(&mut e).unwrap().finished);
        assert_eq!(e.queried.len(), 4);
    }
}

#[test]
fn saved_state_resumes_the_same_sequence() {
    let mut e = env(&[3, 4, 2, 3], |c| {
        (c[0] * 7 + c[1] * 3 + c[2] * 5 + c[3]) as f64 % 11.0
    });
    let spec = e.spec.clone();
    let mut a = search(100);
    a.init(&spec, 42).unwrap();
    for _ in 0..6 {
        a.step(&mut e).unwrap();
    }
    let saved = a.save_state().unwrap();
    let before = e.queried.len();
    for _ in 0..10 {
        a.step(&mut e).unwrap();
    }
    let tail_a = e.queried[before..].to_vec();

    let mut b = search(100);
    b.init(&spec, 42).unwrap();
    b.load_state(&saved).unwrap();
    let mut e2 = env(&[3, 4, 2, 3], |c| {
        (c[0] * 7 + c[1] * 3 + c[2] * 5 + c[3]) as f64 % 11.0
    });
    for _ in 0..10 {
        b.step(&mut e2).unwrap();
    }
    assert_eq!(e2.queried, tail_a);
}

#[test]
fn non_finite_fitness_is_an_error() {
    let mut e = env(&[2], |_| f64::NAN);
    let mut s = search(10);
    s.init(&e.spec.clone(), 1).unwrap();
    let err = s.step(&mut e).unwrap_err();
    assert!(matches!(err, nas_core::NasError::NonFinite { .. }), "{err}");
}
