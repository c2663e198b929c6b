//! Every registered strategy: default params, bad params, its state as plain JSON taken
//! back whole, and (estimator strategies) a resume mid-search that continues exactly.
use nas_core::{Architecture, Estimator, Needs, Score, SearchStrategy, SpaceSpec};
use nas_registry::{BuildContext, Components, SpaceBox};
use nas_runner::env::RunEnv;

use super::{assert_refused_naming, builtins, every_space};

fn build(comps: &Components, name: &str) -> Box<dyn SearchStrategy> {
    let f = comps.strategies.get(name).unwrap();
    f(&serde_json::Value::Null, &BuildContext::new(comps))
        .unwrap_or_else(|e| panic!("strategy `{name}` from default params: {e}"))
}

/// What the state and resume checks run a strategy on: a space and a way to build the
/// strategy for it.
struct Subject {
    space: SpaceBox,
    make: Box<dyn Fn() -> Box<dyn SearchStrategy>>,
}

/// A space the strategy takes: the first default-params space (NB201 first) whose spec the
/// default strategy's `init` accepts; else the first experiment config under
/// `configs/experiments/` that uses the strategy, with that config's space and strategy
/// params (FBNet's default latency loss needs a space built with a latency table; its
/// configs use FLOPs).
fn subject(name: &str, comps: &Components, spaces: &[(String, SpaceBox)]) -> Subject {
    let default = {
        let (comps, name) = (comps.clone(), name.to_string());
        move || build(&comps, &name)
    };
    let mut order: Vec<&(String, SpaceBox)> = spaces.iter().collect();
    order.sort_by_key(|(n, _)| n != "nb201");
    if let Some((n, _)) = order
        .into_iter()
        .find(|(_, s)| default().init(s.rules().spec(), 1).is_ok())
    {
        let f = comps.spaces.get(n).unwrap();
        return Subject {
            space: f(&serde_json::Value::Null, &BuildContext::new(comps)).unwrap(),
            make: Box::new(default),
        };
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/experiments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let Ok(exp) = nas_config::load_experiment(&file, &[]) else {
            continue;
        };
        if exp.strategy.name != name {
            continue;
        }
        let Ok(shape) = nas_registry::data_shape_of(&exp, comps) else {
            continue;
        };
        let Ok(space) = nas_registry::build_space(&exp, comps, shape) else {
            continue;
        };
        let make = {
            let comps = comps.clone();
            move || nas_registry::build_strategy(&exp, &comps).unwrap()
        };
        if make().init(space.rules().spec(), 1).is_ok() {
            return Subject {
                space,
                make: Box::new(make),
            };
        }
    }
    panic!("strategy `{name}` takes no default-params space and no config's space")
}

#[test]
fn every_strategy_builds_from_default_params_under_its_name() {
    let comps = builtins();
    let names = comps.strategies.names();
    assert!(names.len() >= 12, "strategies: {names:?}");
    for name in names {
        let s = build(&comps, &name);
        assert_eq!(s.name(), name, "the strategy reports its registered name");
    }
}

#[test]
fn every_strategy_refuses_an_unknown_param_naming_it() {
    let comps = builtins();
    let cx = BuildContext::new(&comps);
    for name in comps.strategies.names() {
        let f = comps.strategies.get(&name).unwrap();
        let r = f(&serde_json::json!({"no_such_param": 1}), &cx);
        assert_refused_naming(&format!("strategy `{name}`"), r, "no_such_param");
    }
}

#[test]
fn every_strategy_state_is_plain_json_a_fresh_instance_takes_back_whole() {
    let comps = builtins();
    let spaces = every_space(&comps);
    for name in comps.strategies.names() {
        let sub = subject(&name, &comps, &spaces);
        let spec = sub.space.rules().spec();
        let mut a = (sub.make)();
        a.init(spec, 1).unwrap();
        let saved = a.save_state().unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        // A fresh instance with another seed: everything it keeps must come from the state.
        let mut b = (sub.make)();
        b.init(spec, 2).unwrap();
        b.load_state(&serde_json::from_str(&text).unwrap())
            .unwrap_or_else(|e| panic!("{name}: load_state of its own state: {e}"));
        assert_eq!(b.save_state().unwrap(), saved, "{name}: state round trip");
        assert_eq!(
            b.mixing_weights(),
            a.mixing_weights(),
            "{name}: mixing weights after the round trip"
        );
    }
}

/// A deterministic estimator: fitness from the choices alone, so that two runs that make
/// the same queries get the same answers.
struct ToyEstimator {
    spec: SpaceSpec,
    queries: u64,
}

impl Estimator for ToyEstimator {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }

    fn estimate(&mut self, arch: &Architecture) -> nas_core::Result<Score> {
        self.queries += 1;
        let fitness = arch
            .choices
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i * 7 + c * 13) % 11) as f64)
            .sum();
        Ok(Score {
            fitness,
            report: Default::default(),
            cost_seconds: 1.0,
        })
    }

    fn queries(&self) -> u64 {
        self.queries
    }
}

/// `steps` steps of `s` over `space` with `est`.
fn steps(s: &mut dyn SearchStrategy, space: &SpaceBox, est: &mut ToyEstimator, n: usize) {
    for _ in 0..n {
        let mut env = RunEnv {
            space,
            trainer: None,
            estimator: Some(est),
            network: None,
            epoch: 0,
            epochs: 1,
        };
        if s.step(&mut env).unwrap().finished {
            return;
        }
    }
}

#[test]
fn an_estimator_strategy_resumed_from_its_state_continues_exactly() {
    let comps = builtins();
    let spaces = every_space(&comps);
    let mut checked = 0;
    for name in comps.strategies.names() {
        if build(&comps, &name).needs() != Needs::Estimator {
            continue;
        }
        let sub = subject(&name, &comps, &spaces);
        let space = &sub.space;
        let spec = space.rules().spec().clone();
        let toy = || ToyEstimator {
            spec: spec.clone(),
            queries: 0,
        };
        // Uninterrupted: 12 steps.
        let mut whole = (sub.make)();
        whole.init(&spec, 3).unwrap();
        let mut est = toy();
        steps(whole.as_mut(), space, &mut est, 12);
        // Interrupted after 6, resumed into a fresh instance, 6 more.
        let mut first = (sub.make)();
        first.init(&spec, 3).unwrap();
        let mut est1 = toy();
        steps(first.as_mut(), space, &mut est1, 6);
        let state = serde_json::to_string(&first.save_state().unwrap()).unwrap();
        let mut resumed = (sub.make)();
        resumed.init(&spec, 99).unwrap();
        resumed
            .load_state(&serde_json::from_str(&state).unwrap())
            .unwrap();
        let mut est2 = ToyEstimator {
            queries: est1.queries,
            ..toy()
        };
        steps(resumed.as_mut(), space, &mut est2, 6);
        assert_eq!(
            resumed.save_state().unwrap(),
            whole.save_state().unwrap(),
            "{name}: resumed state differs from the uninterrupted run's"
        );
        assert_eq!(est2.queries, est.queries, "{name}: queries");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} estimator strategies");
}
