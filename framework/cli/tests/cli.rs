//! The `nas` command line end to end: a real search on the embedded data, the command
//! contract's files, config errors with their places and exit codes.
//! (Over 600 lines on purpose: the topic file of the command line's core
//! contract; each test is independent and short.)
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nas(args: &[&str]) -> Output {
    nas_with_env(args, &[])
}

/// [`nas`] with extra environment variables.
fn nas_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run nas")
}

/// `nas run` of a tiny DARTS search on the embedded digits (4 channels, 3 cells, 3 steps per
/// epoch) for `epochs` epochs into `out`.
fn tiny_search(epochs: &str, out: &Path, env: &[(&str, &str)]) -> Output {
    let epochs = format!("budget.epochs={epochs}");
    nas_with_env(
        &[
            "run",
            "configs/experiments/darts-digits.yaml",
            "--set",
            &epochs,
            "--set",
            "budget.steps_per_epoch=3",
            "--set",
            "space.params.channels=4",
            "--set",
            "space.params.layers=3",
            "--set",
            "strategy.params.eval_batches=2",
            "--out",
            out.to_str().unwrap(),
        ],
        env,
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn a_search_on_the_embedded_data_writes_every_file() {
    let out = tempfile::tempdir().unwrap();
    let o = tiny_search("2", out.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "config.resolved.yaml",
        "metrics.jsonl",
        "summary.json",
        "architecture.json",
        "alpha_history.jsonl",
        "log.txt",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "finished");
    assert!(summary["architecture"]
        .as_str()
        .unwrap()
        .starts_with("Genotype(normal="));
    assert!(summary["params"].as_f64().unwrap() > 1000.0);
    let acc = summary["valid_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let arch: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("architecture.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(arch["genotype"], summary["architecture"]);
    assert_eq!(
        arch["architecture"]["choices"].as_array().unwrap().len(),
        28
    );
    // Two epoch lines, each with the derived genotype and losses.
    let metrics = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 2);
    assert!(epochs[1]["train_loss"].as_f64().unwrap().is_finite());
    assert!(epochs[1]["skip_connects_normal"].as_f64().is_some());
    // Alpha history: the initial alphas and one line per epoch.
    let alphas = std::fs::read_to_string(out.path().join("alpha_history.jsonl")).unwrap();
    assert_eq!(alphas.lines().count(), 3);
    // The resolved config has every default filled in and loads again.
    let resolved = std::fs::read_to_string(out.path().join("config.resolved.yaml")).unwrap();
    assert!(resolved.contains("steps_per_epoch: 3"), "{resolved}");
    let o = nas(&[
        "config",
        "validate",
        out.path().join("config.resolved.yaml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // The found architecture retrains from its file, and inspects.
    let o = nas(&[
        "train",
        out.path().join("architecture.json").to_str().unwrap(),
        "--config",
        "configs/experiments/darts-digits.yaml",
        "--set",
        "train.epochs=1",
        "--set",
        "train.limit_batches=2",
        "--set",
        "train.channels=4",
        "--set",
        "train.layers=3",
        "--out",
        out.path().join("train").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("test_acc"), "{}", text(&o));
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("train/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["status"], "finished");
}

/// The search is the same computation on one thread and on two: the binary makes its main
/// thread a rayon worker for `run` and keeps freed memory (`nas_cli` `threads`, `memory`), and
/// every kernel splits its work by plane or example with reductions in a fixed order, so the
/// alphas, losses and the found architecture agree bit for bit.
#[test]
fn a_search_gives_the_same_numbers_on_one_and_two_threads() {
    let run = |threads: &str| {
        let out = tempfile::tempdir().unwrap();
        let o = tiny_search("1", out.path(), &[("RAYON_NUM_THREADS", threads)]);
        assert!(o.status.success(), "{}", text(&o));
        let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
        let summary: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
        let epoch: serde_json::Value = read("metrics.jsonl")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["kind"] == "epoch")
            .expect("an epoch line");
        (
            read("alpha_history.jsonl"),
            summary["architecture"].clone(),
            epoch["train_loss"].clone(),
        )
    };
    let (one, two) = (run("1"), run("2"));
    assert!(one.2.as_f64().unwrap().is_finite());
    assert_eq!(one, two);
}

/// `nas bench` (the main thread joins the rayon pool for it) times a step and reports it.
#[test]
fn bench_times_a_step_of_the_darts_search_network() {
    let o = nas_with_env(
        &[
            "bench",
            "--layers",
            "2",
            "--channels",
            "4",
            "--batch",
            "2",
            "--size",
            "8",
            "--steps",
            "1",
            "--json",
        ],
        &[("RAYON_NUM_THREADS", "2")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(r["ms_per_step"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["threads"], 2, "{r}");
    assert_eq!(r["config"]["layers"], 2, "{r}");
}

/// `nas bench --strategy retrain` times a retraining step of the DARTS_V2 network: at
/// DARTS' retraining size (20 cells, 36 channels) it has the published parameter count.
#[test]
fn bench_times_a_retraining_step_of_darts_v2() {
    let o = nas_with_env(
        &[
            "bench",
            "--strategy",
            "retrain",
            "--layers",
            "20",
            "--channels",
            "36",
            "--batch",
            "2",
            "--size",
            "32",
            "--steps",
            "1",
            "--json",
        ],
        &[("RAYON_NUM_THREADS", "2")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(r["ms_per_step"].as_f64().unwrap() > 0.0, "{r}");
    // Liu et al. 2019, Table 1: DARTS (second order) 3.3M; quark0/darts prints 3.349342MB.
    assert_eq!(r["supernet_params"], 3_349_342, "{r}");
    assert_eq!(r["config"]["strategy"], "retrain", "{r}");
}

#[test]
fn inspect_prints_the_darts_v2_count() {
    let g = nas_space_darts::DARTS_V2;
    let o = nas(&[
        "inspect",
        g,
        "--config",
        "configs/train/darts-cifar10.yaml",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["params"], 3_349_342.0);
    assert!(v["flops"].as_f64().unwrap() > 4e8);
}

/// A chain space's architecture given as its op names on the command line is the same
/// architecture as those choices in a file (`nas inspect`), retrains with `nas train`, and
/// an unknown op name is a usage error naming the layer and the op.
#[test]
fn single_path_architectures_are_accepted_as_op_names() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "configs/experiments/spos-uniform-digits.yaml";
    let ops = "shufflenet_3x3 shufflenet_7x7 shufflenet_3x3 shufflenet_5x5 xception_3x3";
    let file = write(
        tmp.path(),
        "arch.json",
        r#"{"space": "spos", "choices": [0, 2, 0, 1, 3]}"#,
    );
    let inspect = |arch: &str| {
        let o = nas(&["inspect", arch, "--config", config, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (by_name, by_file) = (inspect(ops), inspect(file.to_str().unwrap()));
    assert!(by_name["params"].as_f64().unwrap() > 0.0, "{by_name}");
    assert_eq!(by_name["params"], by_file["params"]);
    assert_eq!(by_name["flops"], by_file["flops"]);

    let out = tmp.path().join("train");
    let o = nas(&[
        "train",
        ops,
        "--config",
        config,
        "--set",
        "train.epochs=1",
        "--set",
        "train.limit_batches=2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "finished");
    assert_eq!(s["architecture"], ops);

    let o = nas(&[
        "inspect",
        "shufflenet_3x3 shufflenet_7x7 shufflenet_3x3 shufflenet_5x5 k3_e6",
        "--config",
        config,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("layer 4") && t.contains("k3_e6"), "{t}");
}

#[test]
fn config_errors_name_the_place_and_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let base = "schema: 1\nspace: {name: darts}\nstrategy: {name: darts}\ndata:\n  name: digits\n  batch_size: 8\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown.yaml",
            format!("{base}  batch_sise: 4\n"),
            vec!["unknown.yaml", "7:", "batch_sise"],
        ),
        (
            "wrongtype.yaml",
            base.replace("batch_size: 8", "batch_size: many"),
            vec!["wrongtype.yaml", "6:", "batch_size"],
        ),
        (
            "component.yaml",
            base.replace("strategy: {name: darts}", "strategy: {name: drats}"),
            vec!["component.yaml", "drats", "darts"],
        ),
        (
            "params.yaml",
            base.replace(
                "strategy: {name: darts}",
                "strategy: {name: darts, params: {order: third}}",
            ),
            vec!["params.yaml", "strategy.params.order", "third"],
        ),
    ];
    for (name, body, needles) in cases {
        let p = write(d.path(), name, &body);
        let o = nas(&["config", "validate", p.to_str().unwrap()]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {t}");
        for n in needles {
            assert!(t.contains(n), "{name}: `{n}` not in {t}");
        }
        assert!(!t.contains("panicked"), "{t}");
        // `nas run` refuses it the same way, before any training.
        let o = nas(&[
            "run",
            p.to_str().unwrap(),
            "--out",
            d.path().join("out").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
    }
}

#[test]
fn list_and_describe() {
    let o = nas(&["list"]);
    let t = text(&o);
    assert!(o.status.success());
    for n in [
        "darts",
        "sgd",
        "adam",
        "cosine",
        "digits",
        "nb201_table",
        "rea",
        "proxylessnas",
    ] {
        assert!(t.contains(n), "{n} not listed: {t}");
    }
    let o = nas(&["describe", "darts"]);
    let t = text(&o);
    assert!(t.contains("order") && t.contains("\"first\""), "{t}");
    let o = nas(&["describe", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Every experiment and retraining config in `configs/` loads, decodes and builds its
/// components (base files are partial by design and are checked through the files that
/// include them; sweeps are checked by the sweep tests).
#[test]
fn every_shipped_config_validates() {
    let mut n = 0;
    for dir in ["configs/experiments", "configs/train"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
                continue;
            }
            let o = nas(&["config", "validate", p.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", p.display(), text(&o));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn nas_latency_times_every_option_of_a_single_path_space_and_refuses_a_cell_space() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tables/fbnet.json");
    let o = nas(&[
        "latency",
        "configs/experiments/fbnet-uniform-digits.yaml",
        "--out",
        out.to_str().unwrap(),
        "--repeats",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(t["space"], "fbnet");
    assert_eq!(t["repeats"], 2);
    let keys = t["keys"].as_array().unwrap();
    let ops = t["ops"].as_array().unwrap();
    let ms = t["latency_ms"].as_array().unwrap();
    assert!(!keys.is_empty());
    assert_eq!(ops.len(), keys.len());
    assert_eq!(ms.len(), keys.len());
    for (o, m) in ops.iter().zip(ms) {
        // The nine FBNet candidates, each timed.
        assert_eq!(o.as_array().unwrap().len(), 9);
        for v in m.as_array().unwrap() {
            let v = v.as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{v}");
        }
    }
    assert!(text(&o).contains("k5_e6="), "{}", text(&o));
    // The table is one the space loads: a run configured with it validates.
    let o = nas(&[
        "config",
        "validate",
        "configs/experiments/fbnet-uniform-digits.yaml",
        "--set",
        &format!("space.params.latency_table={}", out.display()),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // ... and it is really read: a table of another layout is refused.
    let mut wrong = t.clone();
    wrong["latency_ms"][0] = serde_json::json!([1.0]);
    let bad = tmp.path().join("wrong.json");
    std::fs::write(&bad, wrong.to_string()).unwrap();
    let o = nas(&[
        "config",
        "validate",
        "configs/experiments/fbnet-uniform-digits.yaml",
        "--set",
        &format!("space.params.latency_table={}", bad.display()),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = nas(&["latency", "configs/experiments/darts-digits.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no per-option blocks"), "{}", text(&o));
}

/// The `zero_cost` estimator drives a random search end to end, and `nas zero-cost` scores a
/// sample with every proxy (on the digits, the NB201 cells' benchmark networks).
#[test]
fn zero_cost_proxies_score_architectures_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "zc.yaml",
        "schema: 1\nname: zc\nseed: 0\nspace: {name: nb201, params: {channels: 4, cells: 1, retrain_channels: 4, retrain_cells: 1}}\n\
         data: {name: digits, batch_size: 16}\nstrategy: {name: random, params: {queries: 3}}\n\
         estimator: {name: zero_cost, params: {proxy: grad_norm, batch_size: 16}}\nbudget: {queries: 3}\n",
    );
    let out = tmp.path().join("run");
    let o = nas(&["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["status"], "finished");
    let o = nas(&[
        "zero-cost",
        cfg.to_str().unwrap(),
        "--sample",
        "3",
        "--batch-size",
        "16",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for p in ["naswot", "synflow", "grad_norm"] {
        assert!(t.lines().any(|l| l.starts_with(p)), "{t}");
    }
    // A bad proxy name is a config error naming the key.
    let o = nas(&[
        "run",
        cfg.to_str().unwrap(),
        "--set",
        "estimator.params.proxy=snip",
        "--out",
        tmp.path().join("bad").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("snip"), "{}", text(&o));
}

/// `image_folder` end to end: a SPOS search and a retraining stream the fixture's JPEGs
/// (framework/data/testdata/image_folder, the ImageNet layout) from disk; the ImageNet
/// config validates without the files, and a wrong class count is refused naming the key.
#[test]
fn a_search_and_a_retraining_stream_an_image_folder() {
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let data = [
        "--set",
        "data.name=image_folder",
        "--set",
        "data.params.root=framework/data/testdata/image_folder",
        "--set",
        "data.params.size=16",
        "--set",
        "data.params.resize=20",
    ];
    let mut args = vec!["run", "configs/experiments/spos-uniform-digits.yaml"];
    args.extend(data);
    args.extend([
        "--set",
        "data.batch_size=2",
        "--set",
        "budget.epochs=1",
        "--set",
        "trainer.params.recalibrate_batches=1",
        "--out",
        run.to_str().unwrap(),
    ]);
    let o = nas(&args);
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "finished");
    let resolved = std::fs::read_to_string(run.join("config.resolved.yaml")).unwrap();
    assert!(resolved.contains("image_folder"), "{resolved}");

    let arch = run.join("architecture.json");
    let trained = out.path().join("train");
    let mut args = vec![
        "train",
        arch.to_str().unwrap(),
        "--config",
        "configs/experiments/spos-uniform-digits.yaml",
    ];
    args.extend(data);
    args.extend([
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=4",
        "--out",
        trained.to_str().unwrap(),
    ]);
    let o = nas(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trained.join("weights.safetensors").is_file());

    let o = nas(&[
        "config",
        "validate",
        "configs/experiments/spos-uniform-imagenet.yaml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut args = vec!["run", "configs/experiments/spos-uniform-digits.yaml"];
    args.extend(data);
    args.extend([
        "--set",
        "data.params.classes=1000",
        "--out",
        run.to_str().unwrap(),
    ]);
    let o = nas(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("classes"), "{}", text(&o));
}

/// A binary of the user's own (`nas_cli::run_with`, what `main_with` runs) registers an
/// optimizer and a data set; a config names them like built-ins, and the run uses both.
mod own_components {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use nas_core::{ComponentInfo, ComponentKind, Result};
    use nas_data::{DataSplits, Dataset};
    use nas_optim::Optimizer;

    static STEPS: AtomicUsize = AtomicUsize::new(0);
    static LOADS: AtomicUsize = AtomicUsize::new(0);

    /// signSGD (Bernstein et al. 2018): `p -= lr * sign(g)`, stateless.
    struct SignSgd {
        lr: f64,
    }

    impl Optimizer for SignSgd {
        fn name(&self) -> &str {
            "sign_sgd"
        }
        fn base_lr(&self) -> f64 {
            self.lr
        }
        fn step(&mut self, params: &mut [&mut [f64]], grads: &[&[f64]], lr: f64) -> Result<()> {
            STEPS.fetch_add(1, Ordering::SeqCst);
            for (p, g) in params.iter_mut().zip(grads) {
                for (x, d) in p.iter_mut().zip(g.iter()) {
                    *x -= lr * d.signum() * f64::from(u8::from(*d != 0.0));
                }
            }
            Ok(())
        }
        fn step_active(
            &mut self,
            params: &mut [&mut [f64]],
            grads: &[&[f64]],
            lr: f64,
            _active: &[bool],
        ) -> Result<()> {
            self.step(params, grads, lr)
        }
        fn lookahead_direction(&self, _i: usize, _p: &[f64], g: &[f64]) -> Vec<f64> {
            g.iter().map(|d| d.signum()).collect()
        }
        fn save_state(&self) -> serde_json::Value {
            serde_json::json!({"name": "sign_sgd"})
        }
        fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
            Ok(())
        }
    }

    fn info(kind: ComponentKind, name: &str) -> ComponentInfo {
        ComponentInfo {
            kind,
            name: name.into(),
            summary: "registered by the test's own binary".into(),
            defaults: serde_json::json!({}),
            params: vec![],
            origin: "test".into(),
        }
    }

    /// 1x8x8 images, class 0 horizontal stripes, class 1 vertical, phase varying.
    fn stripes(n: usize) -> Dataset {
        let mut images = Vec::with_capacity(n * 64);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let (class, phase) = (i % 2, (i / 2) % 2);
            for y in 0..8 {
                for x in 0..8 {
                    let along = if class == 0 { y } else { x };
                    images.push(((along + phase) % 2) as f32);
                }
            }
            labels.push(class as u32);
        }
        Dataset {
            name: "stripes".into(),
            channels: 1,
            height: 8,
            width: 8,
            num_classes: 2,
            images,
            labels,
            files: None,
        }
    }

    fn register(c: &mut nas_registry::Components) -> Result<()> {
        c.optimizers.register(
            info(ComponentKind::Optimizer, "sign_sgd"),
            Arc::new(
                |p: &serde_json::Value, _: &nas_registry::BuildContext<'_>| {
                    let lr = p.get("lr").and_then(|v| v.as_f64()).unwrap_or(0.01);
                    Ok(Box::new(SignSgd { lr }) as Box<dyn Optimizer>)
                },
            ),
        )?;
        c.datasets.register(
            info(ComponentKind::Dataset, "stripes"),
            Arc::new(
                |_p: &serde_json::Value, _: &nas_registry::BuildContext<'_>| {
                    LOADS.fetch_add(1, Ordering::SeqCst);
                    Ok(DataSplits {
                        train: stripes(64),
                        test: stripes(16),
                        mean: vec![0.5],
                        std: vec![0.5],
                    })
                },
            ),
        )?;
        Ok(())
    }

    #[test]
    fn a_users_binary_registers_an_optimizer_and_a_data_set_and_a_run_uses_them() {
        let out = tempfile::tempdir().unwrap();
        let config = super::root().join("configs/experiments/darts-digits.yaml");
        let run = |dir: &str, register: &dyn Fn(&mut nas_registry::Components) -> Result<()>| {
            let dir = out.path().join(dir);
            let args = [
                "nas",
                "run",
                config.to_str().unwrap(),
                "--set",
                "data.name=stripes",
                "--set",
                "data.params={}",
                "--set",
                "optimizers.weights.name=sign_sgd",
                "--set",
                "optimizers.weights.params={lr: 0.001}",
                "--set",
                "budget.epochs=1",
                "--set",
                "budget.steps_per_epoch=2",
                "--set",
                "space.params.channels=4",
                "--set",
                "space.params.layers=3",
                "--set",
                "strategy.params.eval_batches=1",
                "--out",
                dir.to_str().unwrap(),
            ];
            nas_cli::run_with(args, register)
        };
        assert_eq!(run("run", &register), 0);
        let steps = STEPS.load(Ordering::SeqCst);
        assert!(
            steps >= 1,
            "the weights were stepped by sign_sgd ({steps} steps)"
        );
        assert!(
            LOADS.load(Ordering::SeqCst) >= 1,
            "the data came from stripes"
        );
        let summary = std::fs::read_to_string(out.path().join("run/summary.json")).unwrap();
        assert!(summary.contains("\"finished\""), "{summary}");
        // Without the registration the same config is refused (exit 2).
        assert_eq!(run("refused", &|_| Ok(())), 2);
    }
}
