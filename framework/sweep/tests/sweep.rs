//! Sweeps end to end on the NAS-Bench-201 table (`../shared/data/nb201`), restarts, failed
//! runs, the report's statistics against hand-computed values, and run reports.
use std::path::{Path, PathBuf};

use nas_report::{report_dir, write_sweep_report, Report};
use nas_space_nb201::{parse_arch_str, Nb201Table};
use nas_sweep::{run_sweep, SweepOptions};

fn table_path() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nb201/nb201_merged.csv");
    assert!(p.is_file(), "the NB201 table is needed at {}", p.display());
    p
}

/// Writes a base experiment and a sweep file into `dir`; returns the sweep file.
fn write_sweep(dir: &Path, strategies: &str, seeds: &str) -> PathBuf {
    let base = format!(
        "schema: 1\nname: base\nspace: {{name: nb201}}\nstrategy: {{name: random}}\n\
         estimator: {{name: nb201_table, params: {{path: \"{}\"}}}}\n\
         budget: {{epochs: 1, queries: 12}}\noutput: {{log_every: 1}}\n",
        table_path().display()
    );
    std::fs::write(dir.join("base.yaml"), base).unwrap();
    let sweep = format!(
        "schema: 1\nname: small\nbase: base.yaml\nmatrix:\n  strategies:\n{strategies}  seeds: {seeds}\n\
         jobs: 2\nreport: {{metrics: [test_acc, queries]}}\n"
    );
    let p = dir.join("sweep.yaml");
    std::fs::write(&p, sweep).unwrap();
    p
}

const TWO_PLUS_BROKEN: &str = concat!(
    "    - {label: random, strategy: {name: random, params: {queries: 12}}}\n",
    "    - {label: rea, strategy: {name: rea, params: {queries: 12, population: 4, sample_size: 2}}}\n",
    "    - {label: broken, strategy: {name: rea, params: {populaton: 4}}}\n",
);

fn csv_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let head = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (head, rows)
}

fn col(head: &[String], name: &str) -> usize {
    head.iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {head:?}"))
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn small_sweep_end_to_end_with_a_failing_entry_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write_sweep(tmp.path(), TWO_PLUS_BROKEN, "[0, 1]");
    let out = tmp.path().join("out");
    let comps = nas_builtins::components().unwrap();
    let opts = SweepOptions {
        out_dir: Some(out.clone()),
        ..Default::default()
    };

    // A dry run lists the six runs and writes nothing.
    let dry = run_sweep(
        &file,
        &comps,
        &SweepOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(dry.runs.len(), 6);
    assert_eq!(dry.count("pending"), 6);
    assert!(!out.exists());

    let res = run_sweep(&file, &comps, &opts).unwrap();
    assert_eq!(res.count("finished"), 4, "{:?}", res.runs);
    assert_eq!(res.count("failed"), 2);
    let broken = res.runs.iter().find(|r| r.label == "broken").unwrap();
    assert!(
        broken.error.as_deref().unwrap_or("").contains("populaton"),
        "{broken:?}"
    );
    for f in ["runs.csv", "table.csv", "report.md", "sweep.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    for f in ["best_vs_queries", "best_vs_time", "acc_vs_params"] {
        for ext in ["svg", "png"] {
            let p = out.join("plots").join(format!("{f}.{ext}"));
            assert!(
                std::fs::metadata(&p).unwrap().len() > 1000,
                "{}",
                p.display()
            );
        }
    }

    // runs.csv: one row per run; every finished row's test accuracy is the table's
    // 200-epoch test accuracy of the architecture it names, after 12 queries.
    let table = Nb201Table::load(table_path()).unwrap();
    let (head, rows) = csv_rows(&out.join("runs.csv"));
    assert_eq!(rows.len(), 6);
    let (label, seed, status, acc, q, arch, valid, params) = (
        col(&head, "label"),
        col(&head, "seed"),
        col(&head, "status"),
        col(&head, "test_acc"),
        col(&head, "queries"),
        col(&head, "architecture"),
        col(&head, "valid_acc"),
        col(&head, "params"),
    );
    let mut random_accs = Vec::new();
    for r in &rows {
        if r[label] == "broken" {
            assert_eq!(r[status], "failed");
            continue;
        }
        assert_eq!(r[status], "finished");
        let a = parse_arch_str(&r[arch]).unwrap();
        let row = table.get(&a).unwrap();
        let t: f64 = r[acc].parse().unwrap();
        assert_eq!(t, row.c10_oritest_200);
        assert_eq!(r[valid].parse::<f64>().unwrap(), row.c10valid_xvalid_200);
        assert_eq!(r[params].parse::<f64>().unwrap(), row.params_m);
        assert_eq!(r[q], "12");
        if r[label] == "random" {
            random_accs.push((r[seed].clone(), t));
        }
    }
    assert_eq!(random_accs.len(), 2);

    // table.csv: mean, std (n - 1), min, max of the two random seeds, by hand.
    let (a, b) = (random_accs[0].1, random_accs[1].1);
    let (th, trows) = csv_rows(&out.join("table.csv"));
    let line = trows
        .iter()
        .find(|r| r[0] == "random" && r[col(&th, "metric")] == "test_acc")
        .unwrap();
    let get = |k: &str| line[col(&th, k)].parse::<f64>().unwrap();
    assert!((get("mean") - (a + b) / 2.0).abs() < 1e-9);
    assert!((get("std") - (a - b).abs() / 2f64.sqrt()).abs() < 1e-9);
    assert_eq!(get("min"), a.min(b));
    assert_eq!(get("max"), a.max(b));
    assert_eq!(line[col(&th, "runs")], "2");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| random | 2 (2) |"), "{md}");
    assert!(md.contains("## Failed runs"), "{md}");
    assert!(md.contains("plots/best_vs_queries.png"), "{md}");

    // Started again: the finished runs are skipped (their files untouched), the failed ones
    // run (and fail) again.
    let summary = out.join("000-random-s0/summary.json");
    let before = mtime(&summary);
    let again = run_sweep(&file, &comps, &opts).unwrap();
    assert_eq!(again.count("skipped"), 4);
    assert_eq!(again.count("failed"), 2);
    assert_eq!(mtime(&summary), before);

    // A run whose summary is gone runs again, alone.
    std::fs::remove_file(out.join("001-random-s1/summary.json")).unwrap();
    let third = run_sweep(&file, &comps, &opts).unwrap();
    assert_eq!(third.count("skipped"), 3);
    assert_eq!(third.count("finished"), 1);
    assert_eq!(
        third
            .runs
            .iter()
            .find(|r| r.status == "finished")
            .unwrap()
            .id,
        "001-random-s1"
    );
    // The re-run is the same search (same seed), so its figure is unchanged.
    let (head2, rows2) = csv_rows(&out.join("runs.csv"));
    let r1 = rows2.iter().find(|r| r[1] == "001-random-s1").unwrap();
    let old = random_accs.iter().find(|(s, _)| s == "1").unwrap().1;
    assert_eq!(r1[col(&head2, "test_acc")].parse::<f64>().unwrap(), old);
}

#[test]
fn report_statistics_match_hand_computed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let strategies = "    - {label: random, strategy: {name: random, params: {queries: 3}}}\n";
    let file = write_sweep(tmp.path(), strategies, "[0, 1, 2, 3]");
    let out = tmp.path().join("out");
    let comps = nas_builtins::components().unwrap();
    run_sweep(
        &file,
        &comps,
        &SweepOptions {
            out_dir: Some(out.clone()),
            jobs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    // Set the reported accuracies by hand; run 3 is marked failed and must not count.
    for (i, (acc, status)) in [
        (93.0, "finished"),
        (94.0, "finished"),
        (95.5, "finished"),
        (10.0, "failed"),
    ]
    .iter()
    .enumerate()
    {
        let p = out.join(format!("00{i}-random-s{i}/summary.json"));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["final_metrics"]["test_acc"] = serde_json::json!(acc);
        v["status"] = serde_json::json!(status);
        std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    }
    let rep = match report_dir(&out, Some(&comps)).unwrap() {
        Report::Sweep(s) => s,
        other => panic!("a sweep directory was read as another kind: {other:?}"),
    };
    let g = &rep.groups[0];
    assert_eq!((g.name.as_str(), g.runs, g.finished), ("random", 4, 3));
    let s = g.stat("test_acc").unwrap();
    // mean (93 + 94 + 95.5) / 3 = 94.1666...; deviations -7/6, -1/6, 4/3; squares sum to
    // 49/36 + 1/36 + 64/36 = 19/6; / (n - 1) = 19/12; std = sqrt(19/12) = 1.258305739...
    assert_eq!(s.n, 3);
    assert!((s.mean - 94.166_666_666_666_67).abs() < 1e-9);
    assert!((s.std - 1.258_305_739_211_791_7).abs() < 1e-9);
    assert_eq!((s.min, s.max), (93.0, 95.5));
    assert!(
        rep.table.contains("| random | 4 (3) | 94.17 ± 1.26 |"),
        "{}",
        rep.table
    );
    // Rebuilding again from the files gives the same table.
    let again = write_sweep_report(&out, None, None).unwrap();
    assert_eq!(again.table, rep.table);
}

#[test]
fn run_report_writes_curves_alpha_npy_and_cell_diagrams() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let metrics = (0..3)
        .map(|e| {
            format!(
                "{{\"kind\":\"epoch\",\"epoch\":{e},\"train_loss\":{},\"valid_acc\":{}}}\n",
                2.0 - e as f64 * 0.5,
                0.3 + e as f64 * 0.2
            )
        })
        .collect::<String>();
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    // Two decisions x three options, before training and after one epoch.
    std::fs::write(
        dir.join("alpha_history.jsonl"),
        "{\"epoch\":-1,\"weights\":[[0.25,0.25,0.5],[1.0,0.0,0.0]]}\n\
         {\"epoch\":0,\"weights\":[[0.5,0.25,0.25],[0.0,1.0,0.0]]}\n",
    )
    .unwrap();
    // The cells are drawn by the space, rebuilt from the run's config through the registry.
    std::fs::write(
        dir.join("config.resolved.yaml"),
        "name: report-test\nspace: {name: darts}\nstrategy: {name: darts}\n",
    )
    .unwrap();
    let comps = nas_builtins::components().unwrap();
    let space = nas_space_darts::DartsSpace::from_params(
        &serde_json::Value::Null,
        nas_registry::data_shape(None),
    )
    .unwrap();
    let arch = nas_core::SpaceRules::parse_arch(&space, nas_space_darts::DARTS_V2).unwrap();
    std::fs::write(
        dir.join("architecture.json"),
        serde_json::json!({"space": "darts", "architecture": arch, "genotype": nas_space_darts::DARTS_V2}).to_string(),
    )
    .unwrap();
    let rep = match report_dir(dir, Some(&comps)).unwrap() {
        Report::Run(r) => r,
        other => panic!("a run directory was read as another kind: {other:?}"),
    };
    for f in [
        "plots/loss.png",
        "plots/accuracy.svg",
        "plots/alpha_history.png",
        "plots/cell_normal.png",
        "plots/cell_reduce.svg",
        "report.md",
    ] {
        assert!(
            std::fs::metadata(dir.join(f)).unwrap().len() > 100,
            "{f}: {:?}",
            rep.files
        );
    }
    // alpha_history.npy: [2, 2, 3] f32 in C order after a 128-byte preamble.
    let b = std::fs::read(dir.join("alpha_history.npy")).unwrap();
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'shape': (2, 2, 3)"), "{header}");
    let vals: Vec<f32> = b[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        vals,
        vec![0.25, 0.25, 0.5, 1.0, 0.0, 0.0, 0.5, 0.25, 0.25, 0.0, 1.0, 0.0]
    );
    let e = std::fs::read(dir.join("alpha_epochs.npy")).unwrap();
    let elen = u16::from_le_bytes([e[8], e[9]]) as usize;
    let epochs: Vec<i64> = e[10 + elen..]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(epochs, vec![-1, 0]);
    // The SVG of the normal cell names DARTS_V2's operations and its nodes.
    let svg = std::fs::read_to_string(dir.join("plots/cell_normal.svg")).unwrap();
    assert_eq!(svg.matches("sep_conv_3x3").count(), 5, "{svg}");
    assert!(svg.contains("dil_conv_3x3") && svg.contains("c_{k-1}"));
}
