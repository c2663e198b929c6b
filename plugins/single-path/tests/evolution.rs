//! The SPOS evolutionary search over a synthetic estimator whose optimum is known.
use std::collections::{BTreeMap, HashSet};

use nas_core::{
    Architecture, Cost, Decision, Estimator, MixingWeights, OptionSpec, Result, Score, SearchEnv,
    SearchStrategy, SpaceSpec, SupernetTrainer,
};
use nas_strategy_single_path::{build, Evolution, EvolutionParams};

/// 20 decisions x 4 options (the SPOS shape); option k of any decision costs k FLOPs.
fn spec() -> SpaceSpec {
    SpaceSpec {
        space: "toy".into(),
        decisions: (0..20)
            .map(|i| Decision {
                key: format!("b{i}"),
                group: "s".into(),
                node: None,
                options: (0..4)
                    .map(|k| OptionSpec {
                        name: format!("op{k}"),
                        cost: Cost {
                            params: 0.0,
                            flops: k as f64,
                            latency_ms: None,
                        },
                    })
                    .collect(),
            })
            .collect(),
        fixed_cost: Cost::default(),
    }
}

/// Fitness: the sum of the choices (the optimum is all 3s, fitness 60), recording queries.
struct Env {
    spec: SpaceSpec,
    queried: Vec<Architecture>,
}

impl Estimator for Env {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn estimate(&mut self, a: &Architecture) -> Result<Score> {
        self.queried.push(a.clone());
        Ok(Score {
            fitness: a.choices.iter().sum::<usize>() as f64,
            report: BTreeMap::new(),
            cost_seconds: 0.0,
        })
    }
    fn queries(&self) -> u64 {
        self.queried.len() as u64
    }
}

impl SearchEnv for Env {
    fn spec(&self) -> &SpaceSpec {
        &self.spec
    }
    fn trainer(&mut self) -> Option<&mut dyn SupernetTrainer> {
        None
    }
    fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        Some(self)
    }
    fn derive(&self, w: &MixingWeights, _: &str) -> Result<Architecture> {
        nas_core::argmax_derive(&self.spec, w)
    }
    fn cost(&self, a: &Architecture) -> Result<Cost> {
        self.spec.cost_of(a)
    }
    fn describe(&self, a: &Architecture) -> String {
        format!("{:?}", a.choices)
    }
    fn epoch(&self) -> (usize, usize) {
        (0, 1)
    }
}

fn run(params: serde_json::Value, seed: u64) -> (Env, Vec<nas_core::FoundArchitecture>, usize) {
    let mut env = Env {
        spec: spec(),
        queried: vec![],
    };
    let mut s = build("evolution", &params).unwrap();
    s.init(&env.spec.clone(), seed).unwrap();
    let mut steps = 0;
    while !s.step(&mut env).unwrap().finished {
        steps += 1;
        assert!(steps < 100_000);
    }
    let out = s.outcome(&mut env).unwrap().architectures;
    (env, out, steps + 1)
}

#[test]
fn paper_settings_score_50_per_generation_for_20_generations_without_repeats() {
    let (env, top, steps) = run(serde_json::Value::Null, 1);
    // Population 50 and 20 generations: 1000 scored architectures, none twice.
    assert_eq!(env.queried.len(), 1000);
    assert_eq!(steps, 1000);
    let distinct: HashSet<_> = env.queried.iter().map(|a| a.choices.clone()).collect();
    assert_eq!(distinct.len(), 1000);
    // The top-10, best first, improving far beyond random (a uniform path scores 30 on
    // average, standard deviation 5).
    assert_eq!(top.len(), 10);
    assert!(top
        .windows(2)
        .all(|w| w[0].metrics["fitness"] >= w[1].metrics["fitness"]));
    assert!(
        top[0].metrics["fitness"] >= 50.0,
        "{}",
        top[0].metrics["fitness"]
    );
    assert_eq!(top[0].label, "best");
}

#[test]
fn the_constraint_holds_for_every_scored_architecture() {
    let params = serde_json::json!({"population": 20, "top_k": 5, "mutations": 8, "crossovers": 8,
        "generations": 6, "constraint": {"max_flops": 35.0}});
    let (env, top, _) = run(params, 2);
    assert_eq!(env.queried.len(), 120);
    for a in &env.queried {
        assert!(a.choices.iter().sum::<usize>() <= 35);
    }
    // Under the constraint the optimum is 35 (fitness = FLOPs here).
    assert!(top[0].metrics["fitness"] <= 35.0 && top[0].metrics["fitness"] >= 32.0);
}

#[test]
fn children_come_from_the_top_k() {
    // With mutation probability 0 a mutated child equals a parent (and is refused as seen),
    // so generation 2 holds only crossovers of top-k members and random fill.
    let p = EvolutionParams {
        population: 10,
        top_k: 2,
        mutation_prob: 0.0,
        mutations: 3,
        crossovers: 5,
        generations: 2,
        ..Default::default()
    };
    let mut env = Env {
        spec: spec(),
        queried: vec![],
    };
    let mut s = Evolution::new(p).unwrap();
    s.init(&env.spec.clone(), 5).unwrap();
    for _ in 0..10 {
        s.step(&mut env).unwrap();
    }
    let top: Vec<Vec<usize>> = s.top().iter().map(|e| e.arch.choices.clone()).collect();
    assert_eq!(top.len(), 2);
    for _ in 0..10 {
        s.step(&mut env).unwrap();
    }
    let gen2 = &env.queried[10..];
    let from_parents = gen2
        .iter()
        .filter(|a| {
            a.choices
                .iter()
                .enumerate()
                .all(|(d, c)| *c == top[0][d] || *c == top[1][d])
        })
        .count();
    assert!(
        from_parents >= 5,
        "{from_parents} of 10 children are crossovers of the top-2"
    );
}

#[test]
fn seeded_runs_repeat_and_states_resume_exactly() {
    let p = serde_json::json!({"population": 8, "top_k": 3, "mutations": 3, "crossovers": 3, "generations": 4});
    let (a, ta, _) = run(p.clone(), 9);
    let (b, tb, _) = run(p.clone(), 9);
    assert_eq!(a.queried, b.queried);
    assert_eq!(ta, tb);
    let (c, _, _) = run(p.clone(), 10);
    assert_ne!(a.queried, c.queried);
    // Save after 13 steps, restore into a fresh strategy, finish: same queries.
    let mut env = Env {
        spec: spec(),
        queried: vec![],
    };
    let mut s = build("evolution", &p).unwrap();
    s.init(&env.spec.clone(), 9).unwrap();
    for _ in 0..13 {
        s.step(&mut env).unwrap();
    }
    let state = serde_json::to_string(&s.save_state().unwrap()).unwrap();
    let mut r = build("evolution", &p).unwrap();
    r.init(&env.spec.clone(), 0).unwrap();
    r.load_state(&serde_json::from_str(&state).unwrap())
        .unwrap();
    while !r.step(&mut env).unwrap().finished {}
    assert_eq!(env.queried, a.queried);
}

#[test]
fn bad_params_name_the_key() {
    let e = |v: serde_json::Value| {
        build("evolution", &v)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(e(serde_json::json!({"mutations": 40})).contains("mutations"));
    assert!(e(serde_json::json!({"mutation_prob": 1.5})).contains("mutation_prob"));
    assert!(e(serde_json::json!({"popluation": 5})).contains("popluation"));
    assert!(e(serde_json::json!({"constraint": {"max_flops": -1.0}})).contains("constraint"));
}
