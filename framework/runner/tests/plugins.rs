//! Strategy plugins in the runner: where `plugins:` paths point, loading a library once
//! per process, name clashes with built-ins, and a panicking plugin failing its run with
//! an error (not an abort) while the next run in the same process goes on.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use nas_core::{ComponentInfo, ComponentKind, NasError};
use nas_runner::plugins::{components_for, load_plugin_once, plugin_path, with_plugins};
use nas_runner::{run_experiment, RunOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example local-search plugin, built once (same cargo, same target directory).
fn local_search_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                exe.ancestors().nth(3).map(Path::to_path_buf)
            })
            .unwrap_or_else(|| root().join("target"));
        let out = Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["build", "-p", "custom-strategy-plugin", "--target-dir"])
            .arg(&target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug").join(format!(
            "{}custom_strategy_plugin{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
    })
}

fn write(dir: &Path, rel: &str, body: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

const MINIMAL: &str = "schema: 1\nspace: {name: nb201}\nstrategy: {name: random}\n";

#[test]
fn relative_paths_start_at_the_file_that_wrote_them() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(
        d,
        "base/base.yaml",
        &format!("{MINIMAL}plugins: [libs/liba.so, /abs/libb.so]\n"),
    );
    let exp_file = write(d, "exps/e.yaml", "include: ../base/base.yaml\n");
    let e = nas_config::load_experiment(&exp_file, &[]).unwrap();
    assert_eq!(plugin_path(&e, 0), Some(d.join("base/libs/liba.so")));
    assert_eq!(plugin_path(&e, 1), Some(PathBuf::from("/abs/libb.so")));
    assert_eq!(plugin_path(&e, 2), None);

    // The experiment's own list replaces the base's (lists replace): its directory counts.
    let own = write(
        d,
        "exps/own.yaml",
        "include: ../base/base.yaml\nplugins: [x.so]\n",
    );
    let e = nas_config::load_experiment(&own, &[]).unwrap();
    assert_eq!(plugin_path(&e, 0), Some(d.join("exps/x.so")));

    // A `--set` is relative to where `nas` runs.
    let e = nas_config::load_experiment(&own, &["plugins=[rel/y.so]".to_string()]).unwrap();
    assert_eq!(plugin_path(&e, 0), Some(PathBuf::from("rel/y.so")));
}

#[test]
fn a_sweep_file_names_plugins_relative_to_itself() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    write(d, "exps/base.yaml", MINIMAL);
    let sweep_file = write(
        d,
        "sweeps/s.yaml",
        "schema: 1\nbase: ../exps/base.yaml\nmatrix:\n  strategies:\n    \
         - {label: a, strategy: {name: random}}\n    \
         - {label: b, strategy: {name: local_search}, set: {plugins: [../libs/ls.so]}}\n",
    );
    let sweep = nas_config::load_sweep(&sweep_file).unwrap();
    let runs = nas_config::plan_sweep(&sweep_file, &sweep, &[]).unwrap();
    assert!(runs[0].experiment.plugins.is_empty());
    assert_eq!(
        plugin_path(&runs[1].experiment, 0),
        Some(d.join("sweeps/../libs/ls.so"))
    );
}

#[test]
fn a_library_is_loaded_once_and_may_be_named_again() {
    let lib = local_search_lib();
    let a = load_plugin_once(lib).unwrap();
    let b = load_plugin_once(lib).unwrap();
    assert_eq!(a.origin(), b.origin());
    let builtin = nas_builtins::components().unwrap();
    // Twice in one list, and again in a second copy of the components: no clash.
    let c1 = with_plugins(&builtin, &[lib.to_path_buf(), lib.to_path_buf()]).unwrap();
    let c2 = with_plugins(&builtin, &[lib.to_path_buf()]).unwrap();
    for c in [&c1, &c2] {
        let info = c.strategies.info("local_search").unwrap();
        assert_eq!(info.origin, a.origin());
        assert!(c.strategies.contains("random"), "built-ins stay");
    }
    assert!(
        !builtin.strategies.contains("local_search"),
        "the original is left as it was"
    );
}

#[test]
fn a_plugin_whose_name_is_a_built_in_is_refused_naming_both() {
    let mut comps = nas_builtins::components().unwrap();
    comps
        .strategies
        .register(
            ComponentInfo {
                kind: ComponentKind::Strategy,
                name: "local_search".into(),
                summary: "a built-in of the same name".into(),
                defaults: serde_json::json!({}),
                params: vec![],
                origin: "built-in".into(),
            },
            Arc::new(
                |_: &serde_json::Value, _: &nas_registry::BuildContext<'_>| {
                    Err(NasError::Strategy("never built in this test".into()))
                },
            ),
        )
        .unwrap();
    let e = with_plugins(&comps, &[local_search_lib().to_path_buf()])
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`local_search`") && e.contains("already registered (from built-in)"),
        "{e}"
    );
    assert!(e.contains("custom_strategy_plugin"), "{e}");

    // Through an experiment, the error is a config error at `plugins.0`.
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "e.yaml",
        &format!("{MINIMAL}plugins: [{}]\n", local_search_lib().display()),
    );
    let exp = nas_config::load_experiment(&f, &[]).unwrap();
    let e = components_for(&exp, &comps).err().unwrap();
    assert!(
        matches!(&e, NasError::Config { location: Some(l), .. } if l.contains("plugins.0")),
        "{e}"
    );
}

#[test]
fn a_panicking_plugin_fails_its_run_and_the_next_run_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let exp_text = |params: &str| {
        format!(
            "schema: 1\nseed: 2\nplugins: [{}]\nspace: {{name: nb201}}\n\
             strategy: {{name: local_search, params: {params}}}\n\
             estimator: {{name: nb201_table}}\nbudget: {{epochs: 1, queries: 8}}\n",
            local_search_lib().display()
        )
    };
    let comps = nas_builtins::components().unwrap();
    let run = |name: &str, params: &str| {
        let f = write(d.path(), &format!("{name}.yaml"), &exp_text(params));
        let exp = nas_config::load_experiment(&f, &[]).unwrap();
        let out = d.path().join(name);
        let opts = RunOptions {
            out_dir: Some(out.clone()),
            progress: false,
        };
        let r = run_experiment(&exp, &comps, &opts);
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        (r, s)
    };
    // The panic inside the plugin comes back as an error of this run (the process lives).
    let (r, s) = run("boom", "{panic_at_step: 2}");
    let e = r.err().unwrap();
    assert!(matches!(&e, NasError::Plugin(_)), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("panicked in `step`") && m.contains("local_search"),
        "{m}"
    );
    assert!(m.contains("panic_at_step"), "the plugin's own message: {m}");
    assert_eq!(s["status"], "failed");
    // The next run, with the same library, finishes.
    let (r, s) = run("fine", "{max_queries: 8}");
    assert_eq!(r.unwrap().status, "finished");
    assert_eq!(s["status"], "finished");
}

#[test]
fn the_resolved_config_names_the_libraries_by_absolute_path() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    std::fs::create_dir(d.join("libs")).unwrap();
    std::fs::copy(local_search_lib(), d.join("libs/libls.so")).unwrap();
    let f = write(
        d,
        "e.yaml",
        "schema: 1\nplugins: [libs/libls.so]\nspace: {name: nb201}\n\
         strategy: {name: local_search, params: {max_queries: 4}}\n\
         estimator: {name: nb201_table}\nbudget: {epochs: 1, queries: 4}\n",
    );
    let exp = nas_config::load_experiment(&f, &[]).unwrap();
    let comps = nas_builtins::components().unwrap();
    let opts = |dir: &str| RunOptions {
        out_dir: Some(d.join(dir)),
        progress: false,
    };
    assert_eq!(
        run_experiment(&exp, &comps, &opts("run")).unwrap().status,
        "finished"
    );
    // Read back from the run directory, the config still finds the library, and runs.
    let resolved = d.join("run/config.resolved.yaml");
    let again = nas_config::load_experiment(&resolved, &[]).unwrap();
    assert_eq!(
        again.plugins,
        vec![d.join("libs/libls.so").to_string_lossy().into_owned()]
    );
    assert_eq!(
        run_experiment(&again, &comps, &opts("again"))
            .unwrap()
            .status,
        "finished"
    );
    // The same search, so the same result.
    let arch = |dir: &str| std::fs::read_to_string(d.join(dir).join("architecture.json")).unwrap();
    assert_eq!(arch("run"), arch("again"));
}
