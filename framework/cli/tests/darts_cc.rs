//! DARTS-CC end to end: `nas run configs/experiments/hyper-darts-digits.yaml` (a real search
//! on the embedded data, a few seconds), then `nas derive` in both modes, the files it
//! writes, and its usage errors.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("run nas")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn the_digits_search_yields_a_family_that_nas_derive_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = nas(&[
        "-q",
        "run",
        "configs/experiments/hyper-darts-digits.yaml",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The run reports the family (labels t=...) and keeps the hypernetwork.
    let found: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("architectures.json")).unwrap())
            .unwrap();
    let labels: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["t=0", "t=0.25", "t=0.5", "t=0.75", "t=1"]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("strategy_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["log_lambda_min"], -6.0);
    // 3 cells of 2 nodes: 4 hypernetworks (normal and reduce, one per node), K = 5 anchors.
    let nets = state["hypernets"]["nets"].as_array().unwrap();
    assert_eq!(nets.len(), 4);
    assert_eq!(nets[0]["pivots"].as_array().unwrap().len(), 5);
    // Every step logged its lambda and t, and they agree: t = (log10 lambda + 6) / 4.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut steps = 0;
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        if m["kind"] == "step" {
            let (l, t) = (m["lambda"].as_f64().unwrap(), m["t"].as_f64().unwrap());
            assert!(((l.log10() + 6.0) / 4.0 - t).abs() < 1e-9);
            assert!(m["penalty"].as_f64().unwrap() >= 0.0);
            steps += 1;
        }
    }
    // 150 training examples in batches of 32: 5 steps per epoch (the last one short).
    assert_eq!(steps, 15);

    // Simple mode, as JSON.
    let fam = json_out(&nas(&[
        "derive", run_s, "--t", "0,0.5,1", "--mode", "simple", "--json",
    ]));
    let fam = fam.as_array().unwrap();
    assert_eq!(fam.len(), 3);
    for (m, (t, lambda)) in fam.iter().zip([(0.0, 1e-6), (0.5, 1e-4), (1.0, 1e-2)]) {
        assert_eq!(m["t"].as_f64().unwrap(), t);
        assert!((m["lambda"].as_f64().unwrap() / lambda - 1.0).abs() < 1e-12);
        assert!(m["params"].as_f64().unwrap() > 0.0);
        assert!(m["architecture"].as_str().unwrap().starts_with("Genotype("));
        let file = PathBuf::from(m["file"].as_str().unwrap());
        assert!(file.starts_with(&run), "{file:?}");
        // The file is an architecture file the other commands read: `nas inspect` counts
        // the same parameters.
        let cfg = run.join("config.resolved.yaml");
        let ins = json_out(&nas(&[
            "inspect",
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ]));
        assert_eq!(ins["params"], m["params"]);
    }
    assert!(run.join("derive-simple-t0.5.json").is_file());
    assert!(run.join("derive-simple-t0.5.darts-cc.json").is_file());

    // DARTS mode: exactly two non-none inputs per node in the DARTS-CC form (7 = none).
    let fam = json_out(&nas(&[
        "derive", run_s, "--t", "0.25", "--mode", "darts", "--json",
    ]));
    let cc = &fam[0]["darts_cc"];
    for cell in cc.as_array().unwrap() {
        for node in cell.as_array().unwrap() {
            let kept = node.as_array().unwrap().iter().filter(|k| **k != 7).count();
            assert_eq!(kept, 2, "{cc}");
        }
    }
    // The text form names lambda and parameters per t.
    let o = nas(&["derive", run_s, "--t", "0,1", "--mode", "simple"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("lambda=1.000e-6") && out.contains("lambda=1.000e-2"),
        "{out}"
    );

    // Usage errors exit with 2.
    let o = nas(&["derive", run_s, "--t", "1.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = nas(&["derive", run_s, "--mode", "top3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("simple"), "{}", text(&o));
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let cfg = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    std::fs::write(
        other.join("config.resolved.yaml"),
        cfg.replace("name: darts_cc", "name: darts"),
    )
    .unwrap();
    let o = nas(&["derive", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("darts_cc"), "{}", text(&o));
    let o = nas(&["derive", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap()
}

#[test]
fn nas_family_retrains_the_family_beside_size_matched_random_cells_and_plain_darts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("cc");
    let darts = tmp.path().join("darts");
    let fam = tmp.path().join("family");
    let (run_s, darts_s, fam_s) = (
        run.to_str().unwrap(),
        darts.to_str().unwrap(),
        fam.to_str().unwrap(),
    );
    let o = nas(&[
        "-q",
        "run",
        "configs/experiments/hyper-darts-digits.yaml",
        "--out",
        run_s,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = nas(&[
        "-q",
        "run",
        "configs/experiments/darts-digits-small.yaml",
        "--out",
        darts_s,
        "--set",
        "budget.epochs=1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let family_cmd = |extra: &[&str]| {
        let mut args = vec![
            "-q",
            "family",
            run_s,
            "--t",
            "0,1",
            "--seeds",
            "0,1",
            "--random",
            "1",
            "--baseline",
            darts_s,
            "--set",
            "train.epochs=1",
            "--out",
            fam_s,
        ];
        args.extend_from_slice(extra);
        nas(&args)
    };
    let o = family_cmd(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("10 trained, 0 finished before, 0 failed"),
        "{}",
        text(&o)
    );

    // The index: the family at t = 0 and 1, one random cell per member, the baseline.
    let index = read_json(&fam.join("family.json"));
    let entries = index["entries"].as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "family-t0",
            "family-t1",
            "random-t0-0",
            "random-t1-0",
            "baseline-0"
        ]
    );
    // Sizes, recounted by `nas inspect` on the files the family trained: every random cell
    // is within 5% of its member, and the baseline is the DARTS run's architecture.
    let inspect = |file: &str| {
        let cfg = run.join("config.resolved.yaml");
        json_out(&nas(&[
            "inspect",
            fam.join(file).to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--json",
        ]))["params"]
            .as_f64()
            .unwrap()
    };
    for t in ["0", "1"] {
        let member = inspect(&format!("archs/family-t{t}.json"));
        let random = inspect(&format!("archs/random-t{t}-0.json"));
        assert!(
            (random - member).abs() <= 0.05 * member,
            "t={t}: {random} vs {member}"
        );
        let derived = read_json(&run.join(format!("derive-simple-t{t}.json")));
        assert_eq!(derived["params"].as_f64().unwrap(), member);
    }
    let base = read_json(&fam.join("archs/baseline-0.json"));
    let found = read_json(&darts.join("architecture.json"));
    assert_eq!(base["architecture"], found["architecture"]);

    // Every entry was retrained once per seed; the table's mean is the mean of the runs'
    // own summaries.
    let table = std::fs::read_to_string(fam.join("table.csv")).unwrap();
    let mut rows = table.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut seen = 0;
    for line in rows {
        let cells: Vec<&str> = line.split(',').collect();
        let id = cells[col("id")];
        let accs: Vec<f64> = ["0", "1"]
            .iter()
            .map(|s| {
                let summary = read_json(&fam.join(format!("runs/{id}-s{s}/summary.json")));
                assert_eq!(summary["status"], "finished");
                summary["test_acc"].as_f64().unwrap()
            })
            .collect();
        let mean: f64 = cells[col("test_acc_mean")].parse().unwrap();
        assert!((mean - (accs[0] + accs[1]) / 2.0).abs() < 1e-12, "{id}");
        assert_eq!(cells[col("n")], "2");
        seen += 1;
    }
    assert_eq!(seen, 5);
    let md = std::fs::read_to_string(fam.join("report.md")).unwrap();
    assert!(
        md.contains("| 0 | 1.00e-6 |") && md.contains("| 1 | 1.00e-2 |"),
        "{md}"
    );
    assert!(md.contains("## Baselines"), "{md}");
    for p in ["acc_vs_params", "params_vs_t"] {
        for ext in ["svg", "png"] {
            let f = fam.join(format!("plots/{p}.{ext}"));
            assert!(std::fs::metadata(&f).unwrap().len() > 1000, "{f:?}");
        }
    }

    // A second call trains nothing; `nas report` rebuilds the same tables from the files.
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let summary = fam.join("runs/family-t0-s1/summary.json");
    let before = stamp(&summary);
    let o = family_cmd(&[]);
    assert!(
        text(&o).contains("0 trained, 10 finished before"),
        "{}",
        text(&o)
    );
    assert_eq!(stamp(&summary), before);
    let csv = std::fs::read(fam.join("family.csv")).unwrap();
    std::fs::remove_file(fam.join("family.csv")).unwrap();
    let o = nas(&["report", fam_s]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(fam.join("family.csv")).unwrap(), csv);
    // Another seed extends the comparison: only its retrainings run (a seed given twice
    // counts once).
    let o = family_cmd(&["--seeds", "2,2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("5 trained, 10 finished before"),
        "{}",
        text(&o)
    );
    assert_eq!(stamp(&summary), before);
    let table = std::fs::read_to_string(fam.join("table.csv")).unwrap();
    assert!(table.lines().skip(1).all(|l| l.contains(",3,")), "{table}");

    // Other settings into the same directory are refused; a missing baseline is a usage
    // error; both exit with 2 before training anything.
    let o = family_cmd(&["--tolerance", "0.1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("other settings"), "{}", text(&o));
    let missing = tmp.path().join("nope");
    let o = nas(&[
        "family",
        run_s,
        "--baseline",
        missing.to_str().unwrap(),
        "--out",
        tmp.path().join("f2").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nope"), "{}", text(&o));
    // A bad training setting is found before anything is written, so the corrected call
    // is not refused as "other settings".
    let f3 = tmp.path().join("f3");
    let o = nas(&[
        "family",
        run_s,
        "--t",
        "1",
        "--set",
        "train.epochs=0",
        "--out",
        f3.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("train.epochs"), "{}", text(&o));
    assert!(!f3.join("family.json").exists());
}
