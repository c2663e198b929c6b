//! Tests against the real benchmark table in `../shared/data/nb201` (15,625 rows).
//! Expected values come from an independent plain-text parse of the CSV in this file,
//! from hand-worked parameter counts, or from the NB201 paper.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use nas_core::{Architecture, Estimator, NasError};
use nas_space_nb201::{
    all_architectures, nb201_spec, parse_arch_str, to_arch_str, Nb201Table, TabularEstimator,
    TabularParams,
};

/// The table's path, found independently of the crate's own lookup.
fn csv_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nb201/nb201_merged.csv")
}

/// The CSV as plain text rows: column name -> field.
fn plain_rows() -> &'static Vec<HashMap<String, String>> {
    static ROWS: OnceLock<Vec<HashMap<String, String>>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let text = std::fs::read_to_string(csv_path()).expect("the NB201 table is in ../shared");
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                header
                    .iter()
                    .cloned()
                    .zip(l.split(',').map(String::from))
                    .collect()
            })
            .collect()
    })
}

fn estimator() -> TabularEstimator {
    TabularEstimator::new(TabularParams::default()).expect("default table location")
}

/// Hand-written op-name -> index map (the benchmark's order).
fn op_index(op: &str) -> usize {
    match op {
        "none" => 0,
        "skip_connect" => 1,
        "nor_conv_1x1" => 2,
        "nor_conv_3x3" => 3,
        "avg_pool_3x3" => 4,
        other => panic!("unexpected op {other}"),
    }
}

/// Independent arch-string reader: ops in string order.
fn plain_choices(s: &str) -> Vec<usize> {
    s.split(['|', '+'])
        .filter(|t| !t.is_empty())
        .map(|t| op_index(t.split('~').next().unwrap()))
        .collect()
}

#[test]
fn default_location_finds_the_shared_table() {
    let found = Nb201Table::locate(None).unwrap();
    assert_eq!(
        found.canonicalize().unwrap(),
        csv_path().canonicalize().unwrap()
    );
}

#[test]
fn arch_strings_round_trip_for_every_cell_and_cover_the_space() {
    let rows = plain_rows();
    assert_eq!(rows.len(), 15_625);
    let mut seen = HashSet::new();
    for (pos, row) in rows.iter().enumerate() {
        let text = &row["arch_str"];
        let arch = parse_arch_str(text).unwrap();
        assert_eq!(arch.choices, plain_choices(text), "{text}");
        assert_eq!(&to_arch_str(&arch).unwrap(), text);
        // The index column is the row position: the benchmark's own (shuffled) order.
        assert_eq!(row["index"].parse::<usize>().unwrap(), pos);
        seen.insert(arch.choices);
    }
    let generated: HashSet<_> = all_architectures().map(|a| a.choices).collect();
    assert_eq!(
        seen, generated,
        "the table holds exactly the generated cells"
    );

    // The table's index order is the benchmark's, not the odometer enumeration.
    let t = estimator();
    let table = t.table();
    for (pos, arch) in all_architectures().enumerate().step_by(997) {
        let idx = table.index_of(&arch).unwrap();
        assert_eq!(
            to_arch_str(&arch).unwrap(),
            rows[idx]["arch_str"],
            "ordinal {pos}"
        );
    }
    assert_eq!(
        table.by_index(0).unwrap().arch.choices,
        vec![4, 2, 1, 2, 1, 1]
    );
}

#[test]
fn parameter_costs_reproduce_the_exact_counts_of_all_cells() {
    // params_cifar10_M has 6 decimals, i.e. it is the exact count / 1e6; the tolerance
    // of 0.5 parameter only absorbs the decimal-to-binary rounding.
    let spec = nb201_spec();
    let mut max_err: f64 = 0.0;
    for row in plain_rows() {
        let arch = Architecture::new("nb201", plain_choices(&row["arch_str"]));
        let want = row["params_cifar10_M"].parse::<f64>().unwrap() * 1e6;
        let got = spec.cost_of(&arch).unwrap().params;
        max_err = max_err.max((got - want).abs());
        assert!(
            (got - want).abs() <= 0.5,
            "{}: {got} vs {want}",
            row["arch_str"]
        );
    }
    assert!(max_err <= 0.5);
}

#[test]
fn lookups_match_the_csv_text() {
    let mut e = estimator();
    let rows = plain_rows();
    for idx in [0usize, 1, 4164, 6111, 15_624] {
        let row = &rows[idx];
        let arch = parse_arch_str(&row["arch_str"]).unwrap();
        let s = e.estimate(&arch).unwrap();
        let num = |c: &str| row[c].parse::<f64>().unwrap();
        assert_eq!(s.fitness, num("c10valid_xvalid_12"), "row {idx}");
        assert_eq!(s.report["test_acc"], num("c10_oritest_200"), "row {idx}");
        assert_eq!(
            s.report["valid_acc"],
            num("c10valid_xvalid_200"),
            "row {idx}"
        );
        assert_eq!(s.report["params"], num("params_cifar10_M"), "row {idx}");
        assert_eq!(s.report["index"], idx as f64);
    }
    assert_eq!(e.queries(), 5);

    // Row 1 by hand from the file: 82.834 (12-epoch valid), 93.66 (200-epoch test).
    let a = parse_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    )
    .unwrap();
    let s = e.score_of(&a).unwrap();
    assert_eq!((s.fitness, s.report["test_acc"]), (82.834, 93.66));

    // CIFAR-100 and ImageNet16-120 use their own columns.
    for (ds, fit, test) in [
        ("cifar100", "c100_xvalid_12", "c100_xtest_200"),
        ("imagenet16", "in16_xvalid_12", "in16_xtest_200"),
    ] {
        let mut e = TabularEstimator::new(
            serde_json::from_value(serde_json::json!({ "dataset": ds })).unwrap(),
        )
        .unwrap();
        let row = &rows[4164];
        let s = e
            .estimate(&parse_arch_str(&row["arch_str"]).unwrap())
            .unwrap();
        assert_eq!(s.fitness, row[fit].parse::<f64>().unwrap());
        assert_eq!(s.report["test_acc"], row[test].parse::<f64>().unwrap());
    }
}

#[test]
fn best_cifar10_cell_has_the_published_test_accuracy() {
    // NB201 paper, Table 5 "optimal": CIFAR-10 test 94.37.
    let e = estimator();
    let best = e
        .table()
        .records()
        .iter()
        .max_by(|a, b| a.c10_oritest_200.total_cmp(&b.c10_oritest_200))
        .unwrap();
    let s = e.score_of(&best.arch).unwrap();
    assert!(
        (s.report["test_acc"] - 94.37).abs() < 0.005,
        "{}",
        s.report["test_acc"]
    );
    // Two cells share the maximum (94.373333; indices 6111 and 13714 in the file).
    let mut tops: Vec<String> = e
        .table()
        .records()
        .iter()
        .filter(|r| r.c10_oritest_200 == best.c10_oritest_200)
        .map(|r| to_arch_str(&r.arch).unwrap())
        .collect();
    tops.sort();
    assert_eq!(
        tops,
        [
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        ]
    );
}

#[test]
fn missing_table_is_a_clear_data_error() {
    let e = TabularEstimator::new(TabularParams {
        path: Some("no/such/dir/nb201.csv".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, NasError::Data { .. }), "{e}");
    assert!(e.to_string().contains("no/such/dir/nb201.csv"), "{e}");
}
