//! Loading experiments: includes, overrides, typed decode errors with places, schema, defaults
//! and the resolved-YAML round trip. Expected lines and columns are counted by hand from the
//! test texts.
use crate::common;

use common::{config_parts, Dir};
use nas_config::{load_experiment, load_value, to_yaml, Experiment};
use serde_json::json;

fn load(dir: &Dir, name: &str, sets: &[&str]) -> nas_core::Result<Experiment> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_experiment(&std::path::PathBuf::from(dir.name(name)), &sets)
}

const MINIMAL: &str = "space: {name: darts}\nstrategy: {name: darts}\n";

fn includes(dir: &Dir) {
    dir.write(
        "base.yaml",
        "seed: 7\n\
         space: {name: darts, params: {layers: 5, channels: 16}}\n\
         strategy:\n  name: darts\n  params: {order: first, arch_lr: 0.0003}\n\
         plugins: [a.so, b.so]\n\
         budget: {epochs: 50}\n",
    );
    dir.write(
        "inc/mid.yaml",
        "include: ../base.yaml\nspace:\n  params: {channels: 8}\nplugins: [c.so]\n",
    );
    dir.write(
        "other.yaml",
        "budget: {steps_per_epoch: 3}\nstrategy: {params: {order: second}}\n",
    );
    dir.write(
        "exp.yaml",
        "include: [inc/mid.yaml, other.yaml]\nstrategy:\n  params:\n    arch_lr: 0.001\nbudget:\n  epochs: 2\n",
    );
}

#[test]
fn includes_deep_merge_and_the_including_file_wins() {
    let dir = Dir::new();
    includes(&dir);
    let e = load(&dir, "exp.yaml", &[]).unwrap();
    assert_eq!(e.name, "exp");
    assert_eq!(e.seed, 7);
    assert_eq!(e.space.name, "darts");
    assert_eq!(e.space.params, json!({"layers": 5, "channels": 8}));
    assert_eq!(
        e.strategy.params,
        json!({"order": "second", "arch_lr": 0.001})
    );
    assert_eq!(e.plugins, vec!["c.so".to_string()]); // lists replace
    assert_eq!(e.budget.epochs, 2);
    assert_eq!(e.budget.steps_per_epoch, Some(3));

    let v = load_value(&std::path::PathBuf::from(dir.name("exp.yaml")), &[]).unwrap();
    assert!(v.get("include").is_none());
    assert!(
        v.get("name").is_none(),
        "load_value is the merged value before defaults"
    );
}

#[test]
fn locate_names_the_file_that_wrote_each_key() {
    let dir = Dir::new();
    includes(&dir);
    let e = load(&dir, "exp.yaml", &["seed=3"]).unwrap();
    let at = |p: &str| e.locate(p).unwrap();
    assert_eq!(
        at("space.params.layers"),
        format!("{}:2:31", dir.name("base.yaml"))
    );
    assert_eq!(
        at("space.params.channels"),
        format!("{}:3:12", dir.name("inc/mid.yaml"))
    );
    assert_eq!(
        at("strategy.params.order"),
        format!("{}:2:21", dir.name("other.yaml"))
    );
    assert_eq!(
        at("strategy.params.arch_lr"),
        format!("{}:4:5", dir.name("exp.yaml"))
    );
    assert_eq!(at("seed"), "--set seed=3");
    // A default nobody wrote: the nearest enclosing key that was written.
    assert_eq!(
        at("budget.queries"),
        format!("{}:5:1", dir.name("exp.yaml"))
    );

    let (file, location, message) =
        config_parts(e.error_at("strategy.params.arch_lr", "must be below 0.01"));
    assert_eq!(file, dir.name("exp.yaml"));
    assert_eq!(location, "4:14, key `strategy.params.arch_lr`");
    assert_eq!(message, "must be below 0.01");
}

#[test]
fn sets_are_typed_as_yaml_and_create_missing_maps() {
    let dir = Dir::new();
    dir.write("e.yaml", MINIMAL);
    let sets = [
        "budget.epochs=3",
        "strategy.params.order=second",
        "data.name=digits",
        "data.augment.hflip=true",
        "budget.epochs=4",
    ];
    let e = load(&dir, "e.yaml", &sets).unwrap();
    assert_eq!(e.budget.epochs, 4, "later sets win");
    assert_eq!(e.strategy.params, json!({"order": "second"}));
    let data = e.data.unwrap();
    assert_eq!(data.name, "digits");
    assert!(data.augment.hflip);
    let v = load_value(
        &std::path::PathBuf::from(dir.name("e.yaml")),
        &["budget.epochs=3".into(), "x.y=0.5".into(), "z='7'".into()],
    )
    .unwrap();
    assert_eq!(v["budget"]["epochs"], json!(3));
    assert_eq!(v["x"]["y"], json!(0.5));
    assert_eq!(v["z"], json!("7"));
}

#[test]
fn bad_sets_name_the_set() {
    let dir = Dir::new();
    dir.write("e.yaml", MINIMAL);
    let (file, _, message) = config_parts(load(&dir, "e.yaml", &["budget.epochs"]).unwrap_err());
    assert_eq!(file, "--set budget.epochs");
    assert!(message.contains("KEY=VALUE"), "{message}");

    let (file, location, message) =
        config_parts(load(&dir, "e.yaml", &["space.name.x=1"]).unwrap_err());
    assert_eq!(file, "--set space.name.x=1");
    assert!(location.contains("space.name.x"), "{location}");
    assert!(message.contains("`space.name` is a string"), "{message}");

    let (file, location, message) =
        config_parts(load(&dir, "e.yaml", &["budget.epochs=many"]).unwrap_err());
    assert_eq!(file, "--set budget.epochs=many");
    assert_eq!(location, "key `budget.epochs`");
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn unknown_key_names_file_line_and_key_path() {
    let dir = Dir::new();
    dir.write(
        "e.yaml",
        "space: {name: darts}\nstrategy: {name: darts}\ndata:\n  name: digits\n  batchsize: 32\n",
    );
    let err = load(&dir, "e.yaml", &[]).unwrap_err();
    let shown = err.to_string();
    let (file, location, message) = config_parts(err);
    assert_eq!(file, dir.name("e.yaml"));
    assert_eq!(location, "5:3, key `data.batchsize`");
    assert!(message.contains("unknown field `batchsize`"), "{message}");
    assert!(shown.contains("e.yaml at 5:3"), "{shown}");

    // At the top level, and in an included file.
    dir.write("base.yaml", "seed: 1\nsede: 2\n");
    dir.write("top.yaml", &format!("include: base.yaml\n{MINIMAL}"));
    let (file, location, _) = config_parts(load(&dir, "top.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("base.yaml"));
    assert_eq!(location, "2:1, key `sede`");
}

#[test]
fn wrong_type_names_the_value() {
    let dir = Dir::new();
    dir.write(
        "e.yaml",
        "space: {name: darts}\nstrategy: {name: darts}\ndata:\n  name: digits\n  batch_size: many\n",
    );
    let (file, location, message) = config_parts(load(&dir, "e.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("e.yaml"));
    assert_eq!(location, "5:15, key `data.batch_size`");
    assert!(message.contains("invalid type"), "{message}");

    // A list item of the wrong type.
    dir.write("l.yaml", &format!("{MINIMAL}plugins:\n  - a.so\n  - [b]\n"));
    let (_, location, _) = config_parts(load(&dir, "l.yaml", &[]).unwrap_err());
    assert_eq!(location, "5:5, key `plugins.1`");

    // A missing required block points at the file.
    dir.write("m.yaml", "space: {name: darts}\n");
    let (file, location, message) = config_parts(load(&dir, "m.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("m.yaml"));
    assert_eq!(location, "1:1, key `.`");
    assert!(message.contains("missing field `strategy`"), "{message}");
}

#[test]
fn range_checks_name_the_key() {
    let dir = Dir::new();
    let cases = [
        (
            "data: {name: d, batch_size: 0}\n",
            "3:29, key `data.batch_size`",
        ),
        (
            "data: {name: d, train_portion: 1.0}\n",
            "3:32, key `data.train_portion`",
        ),
        (
            "data: {name: d, train_portion: 0}\n",
            "3:32, key `data.train_portion`",
        ),
        ("budget: {epochs: 0}\n", "3:18, key `budget.epochs`"),
        ("dtype: f16\n", "3:8, key `dtype`"),
        ("device: gpu\n", "3:9, key `device`"),
        ("device: 'cuda:'\n", "3:9, key `device`"),
        ("train: {drop_path: 1.5}\n", "3:20, key `train.drop_path`"),
    ];
    for (extra, want) in cases {
        dir.write("r.yaml", &format!("{MINIMAL}{extra}"));
        let (_, location, message) = config_parts(load(&dir, "r.yaml", &[]).unwrap_err());
        assert_eq!(location, want, "{extra}: {message}");
    }
    for ok in ["device: cuda:1\n", "device: cuda\n", "dtype: f64\n"] {
        dir.write("r.yaml", &format!("{MINIMAL}{ok}"));
        load(&dir, "r.yaml", &[]).unwrap();
    }
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let dir = Dir::new();
    dir.write(
        "s.yaml",
        "space: {name: darts}\nstrategy: {name: darts}\nseed: a: b\n",
    );
    let (file, location, message) = config_parts(load(&dir, "s.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("s.yaml"));
    assert!(location.starts_with("3:"), "{location}: {message}");
    assert!(message.starts_with("invalid YAML"), "{message}");

    // In an included file, that file is named.
    dir.write("b.yaml", "a: [1, 2\n");
    dir.write("t.yaml", "include: b.yaml\n");
    let (file, _, _) = config_parts(load(&dir, "t.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("b.yaml"));
}

#[test]
fn include_cycles_and_missing_includes_are_errors() {
    let dir = Dir::new();
    dir.write("a.yaml", &format!("include: b.yaml\n{MINIMAL}"));
    dir.write("b.yaml", "seed: 1\ninclude: [c.yaml, a.yaml]\n");
    dir.write("c.yaml", "seed: 2\n");
    let (file, location, message) = config_parts(load(&dir, "a.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("b.yaml"));
    assert_eq!(location, "2:19, key `include.1`");
    assert!(message.contains("include cycle"), "{message}");
    assert!(
        message.contains("a.yaml -> ") && message.contains("b.yaml -> "),
        "{message}"
    );

    dir.write("self.yaml", "include: self.yaml\n");
    let (_, location, message) = config_parts(load(&dir, "self.yaml", &[]).unwrap_err());
    assert_eq!(location, "1:10, key `include`");
    assert!(message.contains("include cycle"), "{message}");

    // A diamond (two paths to one file) is not a cycle.
    dir.write("d1.yaml", "include: c.yaml\n");
    dir.write("d2.yaml", "include: c.yaml\n");
    dir.write(
        "top.yaml",
        &format!("include: [d1.yaml, d2.yaml]\n{MINIMAL}"),
    );
    assert_eq!(load(&dir, "top.yaml", &[]).unwrap().seed, 2);

    dir.write("m.yaml", &format!("{MINIMAL}include: nowhere.yaml\n"));
    let (file, location, message) = config_parts(load(&dir, "m.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("m.yaml"));
    assert_eq!(location, "3:10, key `include`");
    assert!(message.contains("nowhere.yaml"), "{message}");
}

#[test]
fn schema_version() {
    let dir = Dir::new();
    dir.write("ok.yaml", &format!("schema: 1\n{MINIMAL}"));
    assert_eq!(load(&dir, "ok.yaml", &[]).unwrap().schema, 1);
    dir.write("none.yaml", MINIMAL);
    assert_eq!(load(&dir, "none.yaml", &[]).unwrap().schema, 1);

    dir.write("two.yaml", &format!("{MINIMAL}schema: 2\n"));
    let (file, location, message) = config_parts(load(&dir, "two.yaml", &[]).unwrap_err());
    assert_eq!(file, dir.name("two.yaml"));
    assert_eq!(location, "3:9, key `schema`");
    assert!(
        message.contains("version 2") && message.contains("version(s): 1"),
        "{message}"
    );

    dir.write("base2.yaml", "schema: 2\n");
    dir.write(
        "inc.yaml",
        &format!("schema: 1\ninclude: base2.yaml\n{MINIMAL}"),
    );
    let (file, _, _) = config_parts(load(&dir, "inc.yaml", &[]).unwrap_err());
    assert_eq!(
        file,
        dir.name("base2.yaml"),
        "each file's own schema is checked"
    );

    let (file, _, message) = config_parts(load(&dir, "ok.yaml", &["schema=x"]).unwrap_err());
    assert_eq!(file, "--set schema=x");
    assert!(message.contains("version(s): 1"), "{message}");
}

#[test]
fn defaults() {
    let dir = Dir::new();
    dir.write(
        "my-exp.yaml",
        &format!("{MINIMAL}data: {{name: digits}}\ntrain: {{}}\n"),
    );
    let e = load(&dir, "my-exp.yaml", &[]).unwrap();
    assert_eq!(e.name, "my-exp");
    assert_eq!(
        (e.seed, e.device.to_string(), e.dtype.to_string()),
        (0, "cpu".to_string(), "f32".to_string())
    );
    assert_eq!(e.optimizers.weights.name, "sgd");
    assert!(e.optimizers.weights.params.is_null() && e.optimizers.arch.is_none());
    assert_eq!((e.budget.epochs, e.budget.steps_per_epoch), (1, None));
    assert_eq!(
        (
            e.output.dir.clone(),
            e.output.checkpoint_every,
            e.output.log_every
        ),
        (None, 1, 10)
    );
    let d = e.data.as_ref().unwrap();
    assert_eq!(
        (d.batch_size, d.train_portion, d.eval_batch_size),
        (64, 0.5, None)
    );
    assert_eq!(
        (d.augment.crop_padding, d.augment.hflip, d.augment.cutout),
        (0, false, 0)
    );
    // DARTS cnn/train.py defaults (Liu et al. 2019).
    let t = e.train.as_ref().unwrap();
    assert_eq!(
        (t.epochs, t.batch_size, t.channels, t.layers),
        (600, 96, 36, 20)
    );
    assert_eq!((t.auxiliary_weight, t.drop_path), (0.4, 0.2));
    assert_eq!(
        (t.cutout, t.crop_padding, t.hflip, t.eval_every),
        (16, 4, true, 1)
    );
    assert_eq!(t.optimizer.name, "sgd");
    assert_eq!(
        t.optimizer.params,
        json!({"lr": 0.025, "momentum": 0.9, "weight_decay": 0.0003})
    );
    assert_eq!(t.optimizer.clip_grad_norm, Some(5.0));
    assert_eq!(t.optimizer.schedule.as_ref().unwrap().name, "cosine");
}

#[test]
fn resolved_yaml_round_trips() {
    let dir = Dir::new();
    dir.write(
        "base.yaml",
        "space: {name: darts, params: {layers: 5, ops: [sep_conv_3x3, none], flag: yes}}\n\
         optimizers:\n  weights:\n    name: sgd\n    params: {lr: 0.025, momentum: 0.9, weight_decay: 3.0e-4}\n    \
         schedule: {name: cosine, params: {eta_min: 0.001}}\n    clip_grad_norm: 5\n  \
         arch: {name: adam, params: {lr: 3.0e-4, betas: [0.5, 0.999]}}\n",
    );
    dir.write(
        "full.yaml",
        "include: base.yaml\nseed: 18446744073709551615\ndevice: 'cuda:0'\ndtype: f64\n\
         strategy: {name: darts, params: {order: second, note: 'true', empty: '', nothing: null, x: 1.0}}\n\
         trainer: {name: supernet}\nestimator: {name: nb201, params: {root: ../shared/data/nb201}}\n\
         data: {name: cifar10, batch_size: 32, augment: {cutout: 16}, eval_batch_size: 256}\n\
         budget: {epochs: 50, queries: 100}\noutput: {dir: runs/x}\nplugins: [libmy.so]\n\
         train: {epochs: 2, limit_batches: 3}\n",
    );
    let e = load(&dir, "full.yaml", &["strategy.params.arch_lr=0.0006"]).unwrap();
    let text = to_yaml(&e).unwrap();
    dir.write("resolved.yaml", &text);
    let again = load(&dir, "resolved.yaml", &[]).unwrap();
    assert_eq!(again, e, "{text}");
    assert_eq!(
        again.name, "full",
        "the name is written, not re-derived from the file stem"
    );

    // Every default is written out.
    let v = load_value(&std::path::PathBuf::from(dir.name("resolved.yaml")), &[]).unwrap();
    assert_eq!(v["output"]["log_every"], json!(10));
    assert_eq!(v["data"]["train_portion"], json!(0.5));
    assert_eq!(v["train"]["optimizer"]["params"]["lr"], json!(0.025));
    assert_eq!(v["schema"], json!(1));
    assert_eq!(
        v["space"]["params"]["flag"],
        json!("yes"),
        "strict booleans"
    );

    // And a minimal experiment round-trips too.
    dir.write("min.yaml", MINIMAL);
    let e = load(&dir, "min.yaml", &[]).unwrap();
    dir.write("min.resolved.yaml", &to_yaml(&e).unwrap());
    assert_eq!(load(&dir, "min.resolved.yaml", &[]).unwrap(), e);
}
