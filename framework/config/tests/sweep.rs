//! Sweep files: expansion counts, order, ids, excludes, settings and errors with places.
use crate::common;

use std::path::Path;

use common::{config_parts, Dir};
use nas_config::{load_sweep, plan_sweep, OnFailure, PlannedRun};
use serde_json::json;

const BASE: &str = "space: {name: nb201}\nstrategy: {name: random}\nseed: 9\nbudget: {epochs: 5}\n";

const SWEEP: &str = "\
base: exps/base.yaml
matrix:
  strategies:
    - {label: darts, strategy: {name: darts, params: {order: first}}}
    - label: gdas
      strategy: {name: gdas}
      trainer: {name: supernet}
      set: {budget.steps_per_epoch: 4}
  seeds: [0, 1]
  budget.epochs: [1, 2]
exclude:
  - {label: gdas, seed: 1}
  - {budget.epochs: 2, seed: 0, label: darts}
set: {data.name: digits}
jobs: 2
report: {metrics: [test_acc]}
";

fn plan(dir: &Dir, name: &str, sets: &[&str]) -> nas_core::Result<Vec<PlannedRun>> {
    let path = dir.name(name);
    let sweep = load_sweep(Path::new(&path))?;
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    plan_sweep(Path::new(&path), &sweep, &sets)
}

#[test]
fn expansion_counts_order_ids_and_excludes() {
    let dir = Dir::new();
    dir.write("exps/base.yaml", BASE);
    dir.write("sweeps/s.yaml", &SWEEP.replace("exps/", "../exps/"));
    let sweep = load_sweep(Path::new(&dir.name("sweeps/s.yaml"))).unwrap();
    assert_eq!(sweep.name, "s");
    assert_eq!(sweep.jobs, 2);
    assert_eq!(sweep.on_failure, OnFailure::Continue);
    assert_eq!(sweep.report.group_by, vec!["label".to_string()]);
    assert_eq!(sweep.matrix.axes.len(), 1);

    let runs = plan(&dir, "sweeps/s.yaml", &[]).unwrap();
    // 2 strategies x 2 seeds x 2 epochs = 8, minus gdas/seed 1 (2 runs), minus darts/s0/e2.
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "000-darts-s0-epochs_1",
            "001-darts-s1-epochs_1",
            "002-darts-s1-epochs_2",
            "003-gdas-s0-epochs_1",
            "004-gdas-s0-epochs_2",
        ]
    );
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.experiment.name, format!("s-{}", r.id));
        assert_eq!(r.experiment.seed, r.seed);
        assert_eq!(r.experiment.data.as_ref().unwrap().name, "digits");
        assert_eq!(r.experiment.space.name, "nb201");
    }
    let darts = &runs[2].experiment;
    assert_eq!((runs[2].label.as_str(), runs[2].seed), ("darts", 1));
    assert_eq!(darts.strategy.params, json!({"order": "first"}));
    assert_eq!(darts.trainer, None);
    assert_eq!(
        (darts.budget.epochs, darts.budget.steps_per_epoch),
        (2, None)
    );
    let gdas = &runs[3].experiment;
    assert_eq!(gdas.strategy.name, "gdas");
    assert!(
        gdas.strategy.params.is_null(),
        "the entry's strategy replaces the base's"
    );
    assert_eq!(gdas.trainer.as_ref().unwrap().name, "supernet");
    assert_eq!(
        (gdas.budget.epochs, gdas.budget.steps_per_epoch),
        (1, Some(4))
    );

    // The same file plans the same runs (deterministic ids).
    assert_eq!(plan(&dir, "sweeps/s.yaml", &[]).unwrap(), runs);
}

#[test]
fn sets_apply_last_and_defaults_come_from_the_base() {
    let dir = Dir::new();
    dir.write("exps/base.yaml", BASE);
    dir.write("s.yaml", SWEEP);
    let runs = plan(&dir, "s.yaml", &["budget.epochs=7", "data.batch_size=8"]).unwrap();
    assert_eq!(runs.len(), 5);
    assert!(runs
        .iter()
        .all(|r| r.experiment.budget.epochs == 7
            && r.experiment.data.as_ref().unwrap().batch_size == 8));

    dir.write("plain.yaml", "base: exps/base.yaml\n");
    let runs = plan(&dir, "plain.yaml", &[]).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, "000-random-s9");
    assert_eq!((runs[0].label.as_str(), runs[0].seed), ("random", 9));

    dir.write(
        "axes.yaml",
        "base: exps/base.yaml\nmatrix: {seed: [1], a.b: [x, y], c: [1, 2, 3]}\n",
    );
    let sweep = load_sweep(Path::new(&dir.name("axes.yaml"))).unwrap();
    assert_eq!(sweep.matrix.axes.len(), 3);
}

#[test]
fn axes_multiply_in_key_order_last_fastest() {
    let dir = Dir::new();
    dir.write("exps/base.yaml", BASE);
    dir.write(
        "s.yaml",
        "base: exps/base.yaml\nmatrix:\n  seeds: [3]\n  output.log_every: [1, 2]\n  budget.epochs: [4, 5, 6]\n\
         exclude: [{budget.epochs: 5.0, output.log_every: 2}]\n",
    );
    let runs = plan(&dir, "s.yaml", &[]).unwrap();
    let got: Vec<(usize, usize)> = runs
        .iter()
        .map(|r| (r.experiment.budget.epochs, r.experiment.output.log_every))
        .collect();
    // Keys in order: budget.epochs, output.log_every (fastest); (5, 2) excluded (5.0 == 5).
    assert_eq!(got, [(4, 1), (4, 2), (5, 1), (6, 1), (6, 2)]);
    assert_eq!(runs[3].id, "003-random-s3-epochs_6-log_every_1");
}

#[test]
fn sweep_errors_name_the_place() {
    let dir = Dir::new();
    dir.write("exps/base.yaml", BASE);

    dir.write(
        "bad_ex.yaml",
        "base: exps/base.yaml\nmatrix: {seeds: [1]}\nexclude:\n  - {sed: 1}\n",
    );
    let (file, location, message) =
        config_parts(load_sweep(Path::new(&dir.name("bad_ex.yaml"))).unwrap_err());
    assert_eq!(file, dir.name("bad_ex.yaml"));
    assert_eq!(location, "4:6, key `exclude.0.sed`");
    assert!(
        message.contains("not `label`, `seed` or a matrix key"),
        "{message}"
    );

    dir.write(
        "dup.yaml",
        "base: exps/base.yaml\nmatrix:\n  strategies:\n    - {strategy: {name: darts}}\n    - {strategy: {name: darts}}\n",
    );
    let (_, location, message) =
        config_parts(load_sweep(Path::new(&dir.name("dup.yaml"))).unwrap_err());
    assert_eq!(location, "5:7, key `matrix.strategies.1.label`");
    assert!(
        message.contains("label `darts` is used by strategies 0 and 1"),
        "{message}"
    );

    dir.write(
        "unknown.yaml",
        "base: exps/base.yaml\nmatrix:\n  strategies:\n    - label: a\n      strategy: {name: darts}\n      trainr: {name: x}\n",
    );
    let (_, location, message) =
        config_parts(load_sweep(Path::new(&dir.name("unknown.yaml"))).unwrap_err());
    assert_eq!(location, "6:7, key `matrix.strategies.0.trainr`");
    assert!(message.contains("unknown field `trainr`"), "{message}");

    dir.write(
        "axis.yaml",
        "base: exps/base.yaml\nmatrix: {budget.epochs: 3}\n",
    );
    let (_, location, message) =
        config_parts(load_sweep(Path::new(&dir.name("axis.yaml"))).unwrap_err());
    assert_eq!(location, "2:25, key `matrix.budget.epochs`");
    assert!(message.contains("invalid type"), "{message}");

    dir.write("top.yaml", "base: exps/base.yaml\nrepor: {}\n");
    let (_, location, _) = config_parts(load_sweep(Path::new(&dir.name("top.yaml"))).unwrap_err());
    assert_eq!(location, "2:1, key `repor`");

    dir.write("schema.yaml", "schema: 3\nbase: exps/base.yaml\n");
    let (_, location, _) =
        config_parts(load_sweep(Path::new(&dir.name("schema.yaml"))).unwrap_err());
    assert_eq!(location, "1:9, key `schema`");
}

#[test]
fn a_bad_run_names_the_run_and_the_sweep_line() {
    let dir = Dir::new();
    dir.write("exps/base.yaml", BASE);
    dir.write(
        "s.yaml",
        "base: exps/base.yaml\nset: {data.name: d}\nmatrix:\n  data.batch_size: [8, 0]\n",
    );
    let (file, location, message) = config_parts(plan(&dir, "s.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("s.yaml"));
    assert_eq!(location, "4:24, key `data.batch_size`");
    assert!(
        message.contains("in sweep run 001-random-s9-batch_size_0"),
        "{message}"
    );

    // An unknown key inside an entry's strategy is caught when the sweep is read.
    dir.write(
        "t.yaml",
        "base: exps/base.yaml\nmatrix:\n  strategies:\n    - label: a\n      strategy: {name: darts, param: {}}\n",
    );
    let (file, location, message) =
        config_parts(load_sweep(Path::new(&dir.name("t.yaml"))).unwrap_err());
    assert_eq!(file, dir.name("t.yaml"));
    assert_eq!(location, "5:31, key `matrix.strategies.0.strategy.param`");
    assert!(message.contains("unknown field `param`"), "{message}");

    // A bad value from an entry's `set` is found in the sweep file.
    dir.write(
        "u.yaml",
        "base: exps/base.yaml\nmatrix:\n  strategies:\n    - label: a\n      strategy: {name: darts}\n      set: {budget.epochs: 0}\n",
    );
    let (file, location, message) = config_parts(plan(&dir, "u.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("u.yaml"));
    assert_eq!(location, "6:28, key `budget.epochs`");
    assert!(
        message.contains("in sweep run 000-a-s9: `budget.epochs` must be at least 1"),
        "{message}"
    );
}
