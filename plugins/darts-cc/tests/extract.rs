//! Extracting the family from hand-made hypernetworks over the DARTS space, in both
//! derivation modes, and the DARTS-CC JSON form of the results.
use nas_core::{SearchStrategy, SpaceRules};
use nas_model::{DataShape, NetworkConfig, SearchSpace};
use nas_space_darts::{DartsSpace, DartsSpaceParams};
use nas_strategy_darts_cc::{darts_cc_json, family, parse_darts_cc_json, DartsCc, SavedHypernet};

/// DARTS space with 2 nodes: decisions 0-1 (normal node 2), 2-4 (normal node 3), 5-6
/// (reduce node 2), 7-9 (reduce node 3); ops in DARTS order (none = 0, skip = 3, sep3 = 4).
fn space() -> DartsSpace {
    DartsSpace::new(
        DartsSpaceParams {
            channels: 4,
            layers: 3,
            nodes: 2,
            multiplier: 2,
            ..Default::default()
        },
        DataShape {
            channels: 1,
            height: 8,
            width: 8,
            num_classes: 10,
        },
    )
    .unwrap()
}

fn row(none: f64, skip: f64, sep3: f64) -> Vec<f64> {
    let mut r = vec![0.0; 8];
    r[0] = none;
    r[3] = skip;
    r[4] = sep3;
    r
}

/// Two anchors (lambda range of one decade). At t = 0 every edge prefers sep_conv_3x3, more
/// strongly on later edges (logit 4 + 0.1 d); at t = 1 every edge prefers none (logit 6 on
/// even decisions, 2 on odd ones), then skip_connect (1 + 0.1 (9 - d)).
fn saved(space: &DartsSpace) -> SavedHypernet {
    let mut s =
        DartsCc::new(&serde_json::json!({"log_lambda_min": -5.0, "log_lambda_max": -4.0})).unwrap();
    s.init(space.spec(), 3).unwrap();
    let mut h = s.hypernets().unwrap().clone();
    for n in &mut h.nets {
        assert_eq!(n.k(), 2);
        let a0: Vec<f64> = n
            .decisions
            .iter()
            .flat_map(|&d| row(0.0, 0.0, 4.0 + 0.1 * d as f64))
            .collect();
        let a1: Vec<f64> = n
            .decisions
            .iter()
            .flat_map(|&d| {
                row(
                    if d % 2 == 0 { 6.0 } else { 2.0 },
                    1.0 + 0.1 * (9 - d) as f64,
                    0.0,
                )
            })
            .collect();
        n.anchors = [a0, a1].concat();
    }
    s.set_hypernets(h).unwrap();
    SavedHypernet::from_state(&s.save_state().unwrap()).unwrap()
}

fn names(space: &DartsSpace, a: &nas_core::Architecture) -> Vec<String> {
    a.choices
        .iter()
        .map(|&k| space.params().ops[k].clone())
        .collect()
}

#[test]
fn simple_mode_takes_the_argmax_including_none() {
    let sp = space();
    let f = family(&saved(&sp), &[0.0, 0.5, 1.0], &sp, "simple").unwrap();
    assert_eq!(f.len(), 3);
    assert!((f[1].lambda - 10f64.powf(-4.5)).abs() < 1e-18);
    // t = 0: sep_conv_3x3 everywhere.
    assert!(names(&sp, &f[0].arch).iter().all(|n| n == "sep_conv_3x3"));
    // t = 0.5: alpha = (A0 + A1) / 2: sep3 = 2 + 0.05 d against none = 3 (even d) or 1
    // (odd d): none on even decisions, sep_conv_3x3 on odd ones.
    for (d, n) in names(&sp, &f[1].arch).iter().enumerate() {
        let want = if d % 2 == 0 { "none" } else { "sep_conv_3x3" };
        assert_eq!(n, want, "decision {d}");
    }
    // t = 1: none everywhere (6 or 2 against skip <= 1.9).
    assert!(names(&sp, &f[2].arch).iter().all(|n| n == "none"));
    // Fewer parameters as lambda grows.
    let cfg = NetworkConfig {
        channels: 4,
        layers: 3,
        auxiliary: false,
    };
    let p: Vec<f64> = f
        .iter()
        .map(|m| sp.network_cost(&m.arch, &cfg).unwrap().params)
        .collect();
    assert!(p[0] > p[1] && p[1] > p[2], "{p:?}");
}

#[test]
fn darts_mode_keeps_the_top_two_non_none_edges_per_node() {
    let sp = space();
    let f = family(&saved(&sp), &[0.0, 1.0], &sp, "darts").unwrap();
    // t = 0: the stronger edges are the later ones (4 + 0.1 d), so node 3 drops its first
    // input in both cells (decisions 2 and 7).
    let n0 = names(&sp, &f[0].arch);
    for (d, n) in n0.iter().enumerate() {
        let want = if d == 2 || d == 7 {
            "none"
        } else {
            "sep_conv_3x3"
        };
        assert_eq!(n, want, "t=0 decision {d}");
    }
    // t = 1: the best non-none op is skip_connect; an edge's strength is its softmax weight
    // e^skip / (e^none + e^skip + 6). Normal node 3: d2 0.0132, d3 0.270, d4 0.0108 ->
    // keep d2, d3. Reduce node 3: d7 0.199, d8 0.0073, d9 0.169 -> keep d7, d9.
    let n1 = names(&sp, &f[1].arch);
    for (d, n) in n1.iter().enumerate() {
        let want = if d == 4 || d == 8 {
            "none"
        } else {
            "skip_connect"
        };
        assert_eq!(n, want, "t=1 decision {d}");
    }
    // DARTS-CC JSON, [reduce, normal], reference op indices (skip 2, sep3 3, none 7).
    let j0 = darts_cc_json(sp.spec(), &f[0].arch).unwrap();
    assert_eq!(
        j0,
        serde_json::json!([[[3, 3], [7, 3, 3]], [[3, 3], [7, 3, 3]]])
    );
    let j1 = darts_cc_json(sp.spec(), &f[1].arch).unwrap();
    assert_eq!(
        j1,
        serde_json::json!([[[2, 2], [2, 7, 2]], [[2, 2], [2, 2, 7]]])
    );
    for (j, m) in [(j0, &f[0]), (j1, &f[1])] {
        assert_eq!(parse_darts_cc_json(sp.spec(), &j).unwrap(), m.arch);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let sp = space();
    let s = saved(&sp);
    assert!(family(&s, &[1.5], &sp, "simple").is_err());
    assert!(family(&s, &[0.5], &sp, "top3").is_err());
    // A hypernetwork of another space.
    let other = DartsSpace::new(
        DartsSpaceParams {
            nodes: 3,
            multiplier: 3,
            ..Default::default()
        },
        sp.data_shape(),
    )
    .unwrap();
    assert!(family(&s, &[0.5], &other, "simple").is_err());
    assert!(parse_darts_cc_json(sp.spec(), &serde_json::json!([[[3, 3]], [[3, 3]]])).is_err());
    assert!(parse_darts_cc_json(
        sp.spec(),
        &serde_json::json!([[[9, 3], [7, 3, 3]], [[3, 3], [7, 3, 3]]])
    )
    .is_err());
    assert!(SavedHypernet::from_state(&serde_json::json!({"alphas": []})).is_err());
}
