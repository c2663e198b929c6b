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
