//! End to end against the real NAS-Bench-201 table (`../shared/data/nb201`): the NB201
//! paper's protocol (Dong & Yang, ICLR 2020, Table 5, CIFAR-10 test accuracy of the
//! found cell: RS 93.70 +- 0.36, REA 93.92 +- 0.30, REINFORCE 93.85 +- 0.37), here with a
//! budget of 100 queries per run and 10 seeds.
use crate::common;

use common::{run_to_end, Env};
use nas_core::{Estimator, SearchStrategy};
use nas_space_nb201::{TabularEstimator, TabularParams};
use nas_strategy_discrete::build;
use serde_json::json;

/// Test accuracy of the cell each seed's search returns, and the queries it spent.
fn search(name: &str, seeds: std::ops::Range<u64>) -> Vec<f64> {
    seeds
        .map(|seed| {
            let est = TabularEstimator::new(TabularParams::default()).expect("table in ../shared");
            let mut env = Env::new(est);
            let mut s: Box<dyn SearchStrategy> = build(name, &json!({ "queries": 100 })).unwrap();
            s.init(nas_core::Estimator::spec(&env.est), seed).unwrap();
            run_to_end(s.as_mut(), &mut env, 1000);
            assert_eq!(env.est.queries(), 100);
            let out = s.outcome(&mut env).unwrap();
            let best = &out.architectures[0];
            // The reported test accuracy is the table's figure for the returned cell.
            let row = env.est.lookup(&best.arch).unwrap();
            assert_eq!(best.metrics["test_acc"], row.c10_oritest_200);
            assert_eq!(best.metrics["fitness"], row.c10valid_xvalid_12);
            best.metrics["test_acc"]
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

#[test]
fn nb201_protocol_random_search_and_rea() {
    let rs = search("random", 0..10);
    let rea = search("rea", 0..10);
    let rl = search("reinforce", 0..10);
    let (m_rs, m_rea, m_rl) = (mean(&rs), mean(&rea), mean(&rl));
    eprintln!("RS  {m_rs:.3} {rs:?}\nREA {m_rea:.3} {rea:?}\nRL  {m_rl:.3} {rl:?}");
    // Paper: RS 93.70 +- 0.36 (std over runs); a mean of 10 runs lies well inside.
    assert!((92.5..=94.4).contains(&m_rs), "random search mean {m_rs}");
    assert!(m_rea >= m_rs, "REA {m_rea} < RS {m_rs}");
    assert!((92.5..=94.4).contains(&m_rl), "REINFORCE mean {m_rl}");
}

/// NB201's `mutate_arch_func` (AutoDL-Projects `R_EA.py`): a node uniformly among the
/// three, then one of its edges uniformly. By hand: the edge into node 1 is mutated with
/// probability 1/3, each of node 2's two edges 1/6, each of node 3's three edges 1/9 (the
/// arch string order `1<-0 | 2<-0 2<-1 | 3<-0 3<-1 3<-2`); `uniform` gives 1/6 each. The new
/// op is another one, uniformly among the four others.
#[test]
fn rea_mutation_picks_a_node_then_an_edge_as_nb201_does() {
    use nas_core::Architecture;
    let spec = nas_space_nb201::nb201_spec();
    let parent = Architecture::new(spec.space.clone(), vec![0; 6]);
    let n = 36_000;
    let mut rng = nas_core::component_rng(5, "mutate");
    let mut edges = [0usize; 6];
    let mut ops = [0usize; 5];
    for _ in 0..n {
        let c = nas_strategy_discrete::mutate_by_node(&spec, &parent, &mut rng).unwrap();
        let changed: Vec<usize> = (0..6).filter(|&e| c.choices[e] != 0).collect();
        assert_eq!(changed.len(), 1);
        edges[changed[0]] += 1;
        ops[c.choices[changed[0]]] += 1;
    }
    let p = [
        1.0 / 3.0,
        1.0 / 6.0,
        1.0 / 6.0,
        1.0 / 9.0,
        1.0 / 9.0,
        1.0 / 9.0,
    ];
    for (e, (&k, &q)) in edges.iter().zip(&p).enumerate() {
        let sd = (n as f64 * q * (1.0 - q)).sqrt();
        assert!(
            (k as f64 - n as f64 * q).abs() < 4.0 * sd,
            "edge {e}: {edges:?}"
        );
    }
    assert_eq!(ops[0], 0);
    for &k in &ops[1..] {
        let sd = (n as f64 * 0.25 * 0.75).sqrt();
        assert!((k as f64 - n as f64 / 4.0).abs() < 4.0 * sd, "{ops:?}");
    }
    // The uniform option: 1/6 per edge.
    let mut u = [0usize; 6];
    for _ in 0..n {
        let c = nas_strategy_discrete::mutate(&spec, &parent, &mut rng).unwrap();
        u[(0..6).find(|&e| c.choices[e] != 0).unwrap()] += 1;
    }
    let sd = (n as f64 / 6.0 * 5.0 / 6.0).sqrt();
    assert!(
        u.iter()
            .all(|&k| (k as f64 - n as f64 / 6.0).abs() < 4.0 * sd),
        "{u:?}"
    );
}
