//! Behaviour of the three strategies against a tiny in-test estimator.
use crate::common;

use common::{linear_fitness, run_to_end, toy_spec, Env, ToyEstimator};
use nas_core::{
    Architecture, Cost, Decision, Estimator, MixingWeights, NasError, Needs, OptionSpec, Result,
    SearchEnv, SearchStrategy, SpaceSpec, SupernetTrainer,
};
use nas_strategy_discrete::{
    build, infos, mutate, random_architecture, Rea, ReaParams, Reinforce, ReinforceParams,
};
use serde_json::json;

const NAMES: [&str; 3] = ["random", "rea", "reinforce"];

fn strategy(name: &str, params: serde_json::Value, seed: u64) -> Box<dyn SearchStrategy> {
    let mut s = build(name, &params).unwrap();
    s.init(&toy_spec(), seed).unwrap();
    s
}

#[test]
fn budgets_are_respected_exactly() {
    for name in NAMES {
        for budget in [1u64, 7, 25] {
            let mut s = strategy(name, json!({ "queries": budget }), 3);
            assert_eq!(s.needs(), Needs::Estimator);
            let mut env = Env::new(ToyEstimator::new(linear_fitness));
            let reports = run_to_end(s.as_mut(), &mut env, 1000);
            assert_eq!(reports.len() as u64, budget, "{name} {budget}");
            assert!(reports.last().unwrap().finished);
            assert!(reports[..reports.len() - 1].iter().all(|r| !r.finished));
            assert_eq!(env.est.queries(), budget, "{name} {budget}");
            let last = &reports.last().unwrap().metrics;
            assert_eq!(last["queries"], budget as f64);
            assert_eq!(last["search_seconds"], 1.5 * budget as f64);
            // Stepping past the end spends nothing.
            let again = s.step(&mut env).unwrap();
            assert!(again.finished);
            assert_eq!(env.est.queries(), budget);
        }
    }
}

#[test]
fn metrics_track_the_best_so_far_and_outcome_returns_it() {
    for name in NAMES {
        let mut s = strategy(name, json!({ "queries": 40 }), 11);
        let mut env = Env::new(ToyEstimator::new(linear_fitness));
        let reports = run_to_end(s.as_mut(), &mut env, 1000);
        let mut best = f64::NEG_INFINITY;
        for (r, c) in reports.iter().zip(&env.est.log) {
            let f = linear_fitness(c);
            best = best.max(f);
            assert_eq!(r.metrics["fitness"], f);
            assert_eq!(r.metrics["best_fitness"], best, "{name}");
            assert_eq!(r.metrics["test_acc"], 2.0 * best, "{name}");
        }
        let first_best = env
            .est
            .log
            .iter()
            .find(|c| linear_fitness(c) == best)
            .unwrap()
            .clone();
        let out = s.outcome(&mut env).unwrap();
        let found = &out.architectures[0];
        assert_eq!(found.arch.choices, first_best, "{name}");
        assert_eq!(found.metrics["fitness"], best);
        assert_eq!(found.metrics["test_acc"], 2.0 * best);
        assert_eq!(found.metrics["queries"], 40.0);
        let ep = s.end_epoch(&mut env).unwrap();
        assert_eq!(ep.current.unwrap().choices, first_best);
        assert_eq!(ep.metrics["best_fitness"], best);
    }
}

#[test]
fn runs_are_deterministic_per_seed() {
    for name in NAMES {
        let log = |seed| {
            let mut s = strategy(name, json!({ "queries": 30 }), seed);
            let mut env = Env::new(ToyEstimator::new(linear_fitness));
            run_to_end(s.as_mut(), &mut env, 1000);
            (env.est.log.clone(), s.outcome(&mut env).unwrap())
        };
        assert_eq!(log(42), log(42), "{name}");
        assert_ne!(log(42).0, log(43).0, "{name}");
    }
}

#[test]
fn mutation_changes_exactly_one_decision() {
    let mut spec = toy_spec();
    // A decision with a single option can never be mutated.
    spec.decisions[2].options.truncate(1);
    let mut rng = nas_core::component_rng(1, "test");
    let mut touched = [0usize; 4];
    for _ in 0..2000 {
        let a = random_architecture(&spec, &mut rng);
        spec.check(&a).unwrap();
        let b = mutate(&spec, &a, &mut rng).unwrap();
        spec.check(&b).unwrap();
        let diff: Vec<usize> = (0..4).filter(|&i| a.choices[i] != b.choices[i]).collect();
        assert_eq!(diff.len(), 1, "{:?} -> {:?}", a.choices, b.choices);
        touched[diff[0]] += 1;
    }
    assert_eq!(touched[2], 0);
    // The three mutable decisions are chosen uniformly: about 667 each.
    for i in [0, 1, 3] {
        assert!((550..=780).contains(&touched[i]), "{touched:?}");
    }
    for d in spec.decisions.iter_mut() {
        d.options.truncate(1);
    }
    let a = Architecture::new("toy", vec![0; 4]);
    assert!(mutate(&spec, &a, &mut rng).is_none());
}

#[test]
fn rea_ages_out_the_oldest_and_breeds_by_mutation() {
    let params = ReaParams {
        queries: 60,
        population: 4,
        sample_size: 2,
        ..ReaParams::default()
    };
    let mut s = Rea::new(params).unwrap();
    s.init(&toy_spec(), 9).unwrap();
    let mut env = Env::new(ToyEstimator::new(linear_fitness));
    let mut removed_not_worst = 0;
    for q in 1..=60usize {
        let before = s.population();
        s.step(&mut env).unwrap();
        let after = s.population();
        let log = &env.est.log;
        // The population is exactly the last min(q, 4) architectures queried, oldest first.
        let keep = q.min(4);
        let want: Vec<_> = log[q - keep..].to_vec();
        let got: Vec<_> = after.iter().map(|m| m.arch.choices.clone()).collect();
        assert_eq!(got, want, "query {q}");
        let born: Vec<u64> = after.iter().map(|m| m.born).collect();
        assert_eq!(born, ((q - keep + 1) as u64..=q as u64).collect::<Vec<_>>());
        if q > 4 {
            // The child is a one-decision mutation of a member of the old population.
            let child = &log[q - 1];
            assert!(before.iter().any(|m| {
                m.arch
                    .choices
                    .iter()
                    .zip(child)
                    .filter(|(a, b)| a != b)
                    .count()
                    == 1
            }));
            let gone = &before[0];
            if after.iter().any(|m| m.fitness < gone.fitness) {
                removed_not_worst += 1;
            }
        }
    }
    assert!(
        removed_not_worst > 0,
        "aging must drop old members even when fitter"
    );
}

/// A fitness rewarding option 1 on every decision: the best single option per decision.
fn option_one_count(c: &[usize]) -> f64 {
    c.iter().filter(|&&x| x == 1).count() as f64
}

#[test]
fn reinforce_concentrates_on_the_best_options() {
    let mut s = Reinforce::new(ReinforceParams {
        queries: 400,
        lr: 0.1,
        ..Default::default()
    })
    .unwrap();
    s.init(&toy_spec(), 5).unwrap();
    let start = s.probabilities().unwrap();
    for (p, n) in start.iter().zip([3usize, 4, 2, 5]) {
        assert!(p.iter().all(|x| (x - 1.0 / n as f64).abs() < 0.01), "{p:?}");
    }
    let mut env = Env::new(ToyEstimator::new(option_one_count));
    run_to_end(&mut s, &mut env, 1000);
    let probs = s.probabilities().unwrap();
    for p in &probs {
        let argmax = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(argmax, 1, "{probs:?}");
        assert!(p[1] > 0.8, "{probs:?}");
    }
    let w = s.mixing_weights().unwrap();
    w.check_shape(&toy_spec()).unwrap();
    assert!(w
        .0
        .iter()
        .all(|d| (d.iter().sum::<f32>() - 1.0).abs() < 1e-5));
}

#[test]
fn saved_state_continues_identically() {
    for name in NAMES {
        let params = json!({ "queries": 37 });
        let mut a = strategy(name, params.clone(), 21);
        let mut env_a = Env::new(ToyEstimator::new(linear_fitness));
        for _ in 0..13 {
            a.step(&mut env_a).unwrap();
        }
        let text = serde_json::to_string(&a.save_state().unwrap()).unwrap();
        run_to_end(a.as_mut(), &mut env_a, 1000);

        let mut b = strategy(name, params.clone(), 999); // the seed is overridden by the state
        b.load_state(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut env_b = Env::new(ToyEstimator::new(linear_fitness));
        let reports = run_to_end(b.as_mut(), &mut env_b, 1000);
        assert_eq!(reports.len(), 37 - 13, "{name}");
        assert_eq!(env_b.est.log, env_a.est.log[13..].to_vec(), "{name}");
        assert_eq!(
            b.outcome(&mut env_b).unwrap(),
            a.outcome(&mut env_a).unwrap()
        );
        assert_eq!(b.save_state().unwrap(), a.save_state().unwrap(), "{name}");
        assert_eq!(a.mixing_weights(), b.mixing_weights());

        // A state of another strategy or space is refused with a clear message.
        let other = NAMES.iter().find(|&&n| n != name).unwrap();
        let mut c = strategy(other, params.clone(), 1);
        let e = c
            .load_state(&serde_json::from_str(&text).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
        let mut d = build(name, &params).unwrap();
        let mut spec = toy_spec();
        spec.decisions.pop();
        d.init(&spec, 1).unwrap();
        assert!(d.load_state(&serde_json::from_str(&text).unwrap()).is_err());
    }
}

#[test]
fn factory_checks_names_and_params() {
    let names: Vec<String> = infos().into_iter().map(|i| i.name).collect();
    assert_eq!(names, NAMES);
    for i in infos() {
        // Defaults decode back through the factory.
        build(&i.name, &i.defaults).unwrap();
        assert!(!i.params.is_empty());
    }
    let e = build("evolution", &json!({})).err().unwrap().to_string();
    assert!(e.contains("evolution") && e.contains("rea"), "{e}");
    let e = build("rea", &json!({ "populaton": 5 }))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("populaton"), "{e}");
    let e = build("rea", &json!({ "population": 0 }))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("population"), "{e}");
    let e = build("reinforce", &json!({ "lr": -1.0 }))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("lr"), "{e}");
    let e = build("random", &json!({ "queries": 0 }))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("queries"), "{e}");
    assert!(build("random", &serde_json::Value::Null).is_ok());
}

struct NoEstimator(SpaceSpec);

impl SearchEnv for NoEstimator {
    fn spec(&self) -> &SpaceSpec {
        &self.0
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        None
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        None
    }
    fn derive(&self, _: &MixingWeights, _: &str) -> Result<Architecture> {
        Err(NasError::Strategy("none".into()))
    }
    fn cost(&self, _: &Architecture) -> Result<Cost> {
        Ok(Cost::default())
    }
    fn describe(&self, _: &Architecture) -> String {
        String::new()
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 1)
    }
}

#[test]
fn misuse_gives_clear_errors() {
    for name in NAMES {
        let mut s = build(name, &json!({})).unwrap();
        let mut env = NoEstimator(toy_spec());
        let e = s.step(&mut env).unwrap_err().to_string();
        assert!(e.contains("init"), "{e}");
        s.init(&toy_spec(), 0).unwrap();
        let e = s.step(&mut env).unwrap_err().to_string();
        assert!(e.contains("needs an estimator"), "{e}");
        let e = s.outcome(&mut env).unwrap_err().to_string();
        assert!(e.contains("no architecture"), "{e}");
        let mut other = toy_spec();
        other.space = "other".into();
        let e = s.step(&mut NoEstimator(other)).unwrap_err().to_string();
        assert!(e.contains("other"), "{e}");
        let mut empty = toy_spec();
        empty.decisions.push(Decision {
            key: "empty".into(),
            group: "g".into(),
            node: None,
            options: Vec::<OptionSpec>::new(),
        });
        assert!(s.init(&empty, 0).is_err());
    }
}
