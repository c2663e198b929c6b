//! Training then searching the supernet in one strategy, with each search of the block.
use crate::common;

use nas_core::{SpaceRules, SupernetTrainer};
use nas_strategy_single_path::build;

fn train_then_search(search: serde_json::Value) -> Vec<nas_core::FoundArchitecture> {
    let space = common::tiny_spos([1, 1, 1, 1]);
    let mut t = common::trainer(&space, 0.05, 300);
    let mut s = build(
        "spos",
        &serde_json::json!({"eval_paths": 1, "eval_batches": 1, "keep": 3, "search": search}),
    )
    .unwrap();
    s.init(space.spec(), 4).unwrap();
    t.begin_epoch(0).unwrap();
    let mut env = common::Env {
        space: &space,
        trainer: &mut t,
        epoch: (0, 1),
    };
    for _ in 0..3 {
        s.step(&mut env).unwrap();
    }
    let rep = s.end_epoch(&mut env).unwrap();
    assert!(rep.metrics.contains_key("search_best_fitness"));
    let out = s.outcome(&mut env).unwrap().architectures;
    assert_eq!(rep.current.as_ref(), Some(&out[0].arch));
    for f in &out {
        let fit = f.metrics["fitness"];
        assert!((0.0..=100.0).contains(&fit));
        let cost = space.spec().cost_of(&f.arch).unwrap();
        assert_eq!(f.metrics["flops"], cost.flops);
        assert_eq!(f.metrics["params"], cost.params);
    }
    assert!(out
        .windows(2)
        .all(|w| w[0].metrics["fitness"] >= w[1].metrics["fitness"]));
    out
}

#[test]
fn every_search_runs_over_the_trained_supernet() {
    let evo = train_then_search(serde_json::json!({"name": "evolution", "eval_batches": 1,
        "params": {"population": 4, "top_k": 2, "mutations": 1, "crossovers": 1, "generations": 2}}));
    assert_eq!(evo.len(), 3);
    let rnd = train_then_search(
        serde_json::json!({"name": "random", "eval_batches": 1, "params": {"queries": 5}}),
    );
    assert!(!rnd.is_empty() && rnd.len() <= 3);
    let rea = train_then_search(serde_json::json!({"name": "rea", "eval_batches": 1,
        "params": {"queries": 6, "population": 3, "sample_size": 2}}));
    assert!(!rea.is_empty());
}

#[test]
fn the_search_constraint_keeps_infeasible_paths_out() {
    let space = common::tiny_spos([1, 1, 1, 1]);
    let all3 = space
        .spec()
        .cost_of(&nas_core::Architecture::new("spos", vec![1; 4]))
        .unwrap()
        .flops;
    let out = train_then_search(serde_json::json!({"name": "random", "eval_batches": 1,
        "params": {"queries": 12}, "constraint": {"max_flops": all3}}));
    for f in &out {
        assert!(f.metrics["flops"] <= all3);
    }
}

#[test]
fn unknown_search_names_and_bad_search_params_are_errors() {
    let e = build("spos", &serde_json::json!({"search": {"name": "bayes"}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("search.name") && e.contains("evolution"), "{e}");
    let e = build(
        "spos",
        &serde_json::json!({"search": {"name": "rea", "params": {"queries": 0}}}),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("search.params.queries"), "{e}");
    let e = build("fairnas", &serde_json::json!({"constraint": {}}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("constraint"), "{e}");
}
