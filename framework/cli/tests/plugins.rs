//! Strategy plugins through the `nas` command line: experiments and sweeps that name a
//! plugin library, every way a plugin can fail to load (exit code 2, before anything
//! runs), a panicking plugin (exit code 1, the run recorded as failed, a sweep going on),
//! `nas plugin info` and `nas plugin new`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory of this test binary (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .expect("test executable path")
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"))
}

fn lib_name(stem: &str) -> String {
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// The example plugins, built once per test run (same cargo, same target directory).
fn plugin(package: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target = target_dir();
        let out = Command::new(env!("CARGO"))
            .current_dir(root())
            .args([
                "build",
                "-p",
                "custom-strategy-plugin",
                "-p",
                "wrong-abi-plugin",
            ])
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug")
    });
    dir.join(lib_name(&package.replace('-', "_")))
}

fn nas_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run nas")
}

fn nas(args: &[&str]) -> Output {
    nas_in(&root(), args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn summary(dir: &Path) -> serde_json::Value {
    let p = dir.join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Local search over the NB201 table, 12 queries; `plugins` and `params` as given.
fn nb201_experiment(plugins: &str, params: &str) -> String {
    format!(
        "schema: 1\nname: ls\nseed: 1\nplugins: {plugins}\nspace: {{name: nb201}}\n\
         strategy:\n  name: local_search\n  params: {params}\n\
         estimator: {{name: nb201_table}}\nbudget: {{epochs: 1, queries: 12}}\n\
         output: {{log_every: 1}}\n"
    )
}

/// Writes `body` to `dir/name`; returns its path as a string.
fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn an_experiment_runs_a_plugin_named_relative_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::copy(
        plugin("custom-strategy-plugin"),
        dir.path().join("lib/libls.so"),
    )
    .unwrap();
    let exp = write(
        dir.path(),
        "ls.yaml",
        &nb201_experiment("[lib/libls.so]", "{max_queries: 12}"),
    );
    let out = dir.path().join("run");
    // `nas` runs in the repository root: the path is found relative to the file.
    let o = nas(&["run", &exp, "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = summary(&out);
    assert_eq!(s["status"], "finished");
    assert_eq!(s["strategy"], "local_search");
    // An NB201 arch string, and the 12 queries the budget allows.
    assert!(s["architecture"].as_str().unwrap().starts_with("|"), "{s}");
    let steps = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .count();
    assert_eq!(steps, 12);
    // `config validate` loads the plugin too, so the plugin's strategy and params check;
    // the run's resolved config names it by absolute path, so it validates from anywhere.
    let o = nas(&["config", "validate", &exp]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let resolved = out.join("config.resolved.yaml");
    let o = nas_in(&out, &["config", "validate", resolved.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn plugins_that_do_not_load_fail_before_anything_runs_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = plugin("custom-strategy-plugin");
    let good = good.to_str().unwrap();
    std::fs::copy(good, d.join("copy.so")).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "missing",
            nb201_experiment("[nowhere/libnone.so]", "{}"),
            vec!["plugins.0", "does not exist", "nowhere/libnone.so"],
        ),
        (
            "not-a-library",
            nb201_experiment(&format!("[{good}, notes.txt]"), "{}"),
            vec!["plugins.1", "not a shared library"],
        ),
        (
            "wrong-abi",
            nb201_experiment(&format!("[{}]", plugin("wrong-abi-plugin").display()), "{}"),
            vec![
                "does not fit this host",
                "abi_version",
                "differs",
                "wrong_abi",
            ],
        ),
        (
            "clash",
            nb201_experiment(&format!("[{good}, copy.so]"), "{}"),
            vec!["plugins.1", "`local_search`", "already registered", good],
        ),
        (
            "bad-params",
            nb201_experiment(&format!("[{good}]"), "{max_querys: 3}"),
            vec!["strategy.params", "max_querys"],
        ),
    ];
    write(d, "notes.txt", "not a library\n");
    for (name, body, wants) in cases {
        let exp = write(d, &format!("{name}.yaml"), &body);
        let out = d.join(format!("run-{name}"));
        let o = nas(&["run", &exp, "--out", out.to_str().unwrap()]);
        let t = text(&o);
        assert_eq!(code(&o), 2, "{name}: {t}");
        for w in wants {
            assert!(t.contains(w), "{name}: `{w}` not in:\n{t}");
        }
        // Nothing ran: no metrics; the run is recorded as failed.
        assert!(!out.join("metrics.jsonl").exists(), "{name}");
        assert_eq!(summary(&out)["status"], "failed", "{name}");
    }
}

#[test]
fn a_panicking_plugin_fails_its_run_with_the_panic_message_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = plugin("custom-strategy-plugin");
    let exp = write(
        dir.path(),
        "panic.yaml",
        &nb201_experiment(&format!("[{}]", good.display()), "{panic_at_step: 3}"),
    );
    let out = dir.path().join("run");
    let o = nas(&["run", &exp, "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("panicked in `step`"), "{t}");
    assert!(t.contains("local_search"), "{t}");
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    assert!(
        s["stop_reason"].as_str().unwrap().contains("panicked"),
        "{s}"
    );
}

#[test]
fn a_sweep_runs_a_plugin_beside_the_built_ins_and_goes_on_after_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = plugin("custom-strategy-plugin");
    std::fs::copy(&good, d.join("libls.so")).unwrap();
    write(d, "base.yaml", &nb201_experiment("[]", "{}"));
    let sweep = write(
        d,
        "sweep.yaml",
        "schema: 1\nname: mixed\nbase: base.yaml\nmatrix:\n  strategies:\n    \
         - {label: boom, strategy: {name: local_search, params: {panic_at_step: 2}}}\n    \
         - {label: random, strategy: {name: random, params: {queries: 12}}}\n    \
         - {label: ls, strategy: {name: local_search, params: {max_queries: 12}}}\n  \
         seeds: [0, 1]\nset: {plugins: [libls.so]}\njobs: 1\n",
    );
    let out = d.join("sweep");
    let o = nas(&["sweep", &sweep, "--out", out.to_str().unwrap()]);
    let t = text(&o);
    // One strategy panicked in both its runs: exit code 1, every other run finished.
    assert_eq!(code(&o), 1, "{t}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let runs = index["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for r in runs {
        let want = if r["label"] == "boom" {
            "failed"
        } else {
            "finished"
        };
        assert_eq!(r["status"], want, "{r}\n{t}");
        let s = summary(&out.join(r["id"].as_str().unwrap()));
        assert_eq!(s["status"], want, "{s}");
    }
    assert!(t.contains("panicked in `step`"), "{t}");

    // Started again, the finished runs (plugin ones included) are skipped.
    let o = nas(&["sweep", &sweep, "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    for r in index["runs"].as_array().unwrap() {
        let want = if r["label"] == "boom" {
            "failed"
        } else {
            "skipped"
        };
        assert_eq!(r["status"], want, "{r}\n{t}");
    }
}

#[test]
fn the_shipped_plugin_sweep_plans_and_runs_with_the_plugin_path_overridden() {
    let out = tempfile::tempdir().unwrap();
    let lib = plugin("custom-strategy-plugin");
    let plugins = format!("plugins=[{}]", lib.display());
    // Every run of the shipped file (3 strategies x 10 seeds), 5 queries each.
    let o = nas(&[
        "sweep",
        "configs/sweeps/nb201-plugin.yaml",
        "--out",
        out.path().to_str().unwrap(),
        "--set",
        &plugins,
        "--set",
        "budget.queries=5",
        "--jobs",
        "1",
    ]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("sweep.json")).unwrap())
            .unwrap();
    let labels: Vec<&str> = index["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    for l in ["random", "rea", "local_search"] {
        assert!(labels.contains(&l), "{labels:?}");
    }
}

#[test]
fn plugin_info_prints_the_declaration_and_both_sides_versions() {
    let lib = plugin("custom-strategy-plugin");
    let o = nas(&["plugin", "info", lib.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("strategy  local_search"), "{t}");
    assert!(t.contains("max_queries = 150"), "{t}");
    let abi = t.lines().find(|l| l.contains("abi_version")).unwrap();
    assert_eq!(
        abi.split_whitespace().collect::<Vec<_>>(),
        ["abi_version", "1", "1"]
    );
    let o = nas(&["plugin", "info", "--json", lib.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["info"]["name"], "local_search");
    assert_eq!(v["host"]["abi_version"], "1");

    let o = nas(&[
        "plugin",
        "info",
        plugin("wrong-abi-plugin").to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    let abi = t.lines().find(|l| l.contains("abi_version")).unwrap();
    assert!(abi.contains("1001") && abi.contains("differs"), "{t}");
    let o = nas(&["plugin", "info", "no/such/lib.so"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("does not exist"));
}

/// The `[profile...]` sections of the workspace manifest, so that a crate built apart
/// from the workspace (in its target directory) reuses the workspace's compiled
/// dependencies instead of compiling them again under the default profile.
fn workspace_profiles() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            inside = line.starts_with("[profile");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `nas plugin new` writes a crate that builds as it is, loads, and searches. The crate is
/// built in the workspace's target directory with the workspace's profiles, so only
/// nas-core, the SDK and the crate itself compile (a few seconds).
#[test]
fn plugin_new_writes_a_crate_that_builds_loads_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(&[
        "plugin",
        "new",
        "my-walk",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let krate = dir.path().join("my-walk");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("framework/plugin-sdk"), "{manifest}");
    // The same dependency versions as the workspace (and no network needed).
    std::fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let mut manifest = manifest;
    manifest.push_str(&workspace_profiles());
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    let target = target_dir();
    for args in [
        &["build", "--offline"][..],
        &["test", "--offline", "--lib"][..],
    ] {
        let b = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            b.status.success(),
            "cargo {args:?} of the new crate:\n{}",
            String::from_utf8_lossy(&b.stderr)
        );
    }
    let lib = target.join("debug").join(lib_name("my_walk"));
    let o = nas(&["plugin", "info", lib.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("strategy  my_walk 0.1.0"), "{}", text(&o));

    let exp = write(
        dir.path(),
        "walk.yaml",
        &nb201_experiment(&format!("[{}]", lib.display()), "{}")
            .replace("name: local_search", "name: my_walk"),
    );
    let out = dir.path().join("run");
    let o = nas_in(dir.path(), &["run", &exp, "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let s = summary(&out);
    assert_eq!(s["status"], "finished");
    assert!(s["architecture"].as_str().unwrap().starts_with("|"), "{s}");
}

#[test]
fn list_and_describe_show_plugin_strategies_named_by_flag_or_config() {
    // Plurals: `strategies`, not `strategys`.
    let o = nas(&["list"]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("strategies:") && !t.contains("strategys"), "{t}");
    assert!(!t.contains("local_search"), "{t}");
    let lib = plugin("custom-strategy-plugin");
    let o = nas(&["list", "--plugin", lib.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("local_search"), "{t}");
    // Without the plugin the name is unknown (exit 2); through an experiment's
    // `plugins:` list (relative to its file) it is described with its params.
    assert_eq!(code(&nas(&["describe", "local_search"])), 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&lib, dir.path().join("libls.so")).unwrap();
    let exp = write(
        dir.path(),
        "ls.yaml",
        &nb201_experiment("[libls.so]", "{max_queries: 12}"),
    );
    let o = nas(&["describe", "local_search", "--config", &exp]);
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(
        t.contains("strategy `local_search`") && t.contains("max_queries"),
        "{t}"
    );
    // A plugin that does not load is a config error.
    let o = nas(&["list", "--plugin", "/nonexistent/libnothing.so"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn sweep_dry_run_loads_plugins_and_checks_their_strategies() {
    let lib = plugin("custom-strategy-plugin");
    let good = format!("plugins=[{}]", lib.display());
    let o = nas(&[
        "sweep",
        "configs/sweeps/nb201-plugin.yaml",
        "--dry-run",
        "--set",
        &good,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A plugin path that does not exist: the dry run fails as the runs would.
    let o = nas(&[
        "sweep",
        "configs/sweeps/nb201-plugin.yaml",
        "--dry-run",
        "--set",
        "plugins=[/nonexistent/libnothing.so]",
    ]);
    let t = text(&o);
    assert_eq!(code(&o), 2, "{t}");
    assert!(t.contains("plugins.0"), "{t}");
}
