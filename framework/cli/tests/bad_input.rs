//! Bad input never panics: each case exits non-zero (2 for usage and config errors, 1 for
//! a run that fails) with a message that names the file, key or value at fault.
use crate::support;

use std::path::Path;

use support::*;

const BASE: &str = "schema: 1\nname: bad\nspace: {name: darts, params: {channels: 4, layers: 3}}\n\
strategy: {name: darts}\ndata:\n  name: digits\n  batch_size: 8\nbudget: {epochs: 1, steps_per_epoch: 1}\n";

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

/// `nas run FILE` and `nas config validate FILE` both refuse `body` with exit code 2 and a
/// message holding every needle.
fn refused(dir: &Path, name: &str, body: &str, needles: &[&str]) {
    let f = write(dir, name, body);
    let out = dir.join(format!("{name}.out"));
    for args in [
        vec!["config", "validate", f.as_str()],
        vec!["run", f.as_str(), "--out", out.to_str().unwrap()],
    ] {
        let t = expect_exit(&nas(&args), 2, name);
        for n in needles {
            assert!(t.contains(n), "{name}: `{n}` not in {t}");
        }
    }
}

#[test]
fn config_errors_exit_2_and_name_the_place() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    refused(
        d,
        "malformed.yaml",
        "schema: 1\nspace: {name: darts\n",
        &["malformed.yaml", "2:"],
    );
    refused(d, "tabs.yaml", "schema: 1\n\tspace: x\n", &["tabs.yaml"]);
    refused(
        d,
        "unknown.yaml",
        &BASE.replace("batch_size: 8\n", "batch_size: 8\n  batch_sise: 4\n"),
        &["unknown.yaml", "8:", "batch_sise"],
    );
    refused(
        d,
        "wrongtype.yaml",
        &BASE.replace("batch_size: 8", "batch_size: many"),
        &["wrongtype.yaml", "data.batch_size", "many"],
    );
    refused(
        d,
        "negative_lr.yaml",
        &format!("{BASE}optimizers:\n  weights: {{name: sgd, params: {{lr: -0.1}}}}\n"),
        &["negative_lr.yaml", "optimizers.weights.params.lr", "-0.1"],
    );
    refused(
        d,
        "zero_batch.yaml",
        &BASE.replace("batch_size: 8", "batch_size: 0"),
        &["zero_batch.yaml", "data.batch_size", "got 0"],
    );
    for (name, portion) in [("portion_high.yaml", "1.5"), ("portion_zero.yaml", "0")] {
        refused(
            d,
            name,
            &BASE.replace(
                "batch_size: 8\n",
                &format!("batch_size: 8\n  train_portion: {portion}\n"),
            ),
            &[name, "data.train_portion", portion],
        );
    }
    refused(
        d,
        "negative_epochs.yaml",
        &BASE.replace("epochs: 1", "epochs: -3"),
        &["negative_epochs.yaml", "budget.epochs", "-3"],
    );
    // A device this build cannot use is refused by validation too, naming file, line and key.
    refused(
        d,
        "cuda.yaml",
        &format!("{BASE}device: cuda\n"),
        &["cuda.yaml", "9:", "device", "built without CUDA"],
    );
    refused(
        d,
        "gpu.yaml",
        &format!("{BASE}device: gpu\n"),
        &["gpu.yaml", "device", "`gpu`"],
    );
    // The trainer's params are checked by validation, before any data is loaded.
    refused(
        d,
        "on_non_finite.yaml",
        &format!("{BASE}trainer: {{name: supernet, params: {{on_non_finite: maybe}}}}\n"),
        &["on_non_finite.yaml", "trainer.params", "maybe"],
    );
    refused(
        d,
        "no_trainer.yaml",
        &format!("{BASE}trainer: {{name: no_such_trainer}}\n"),
        &["no_trainer.yaml", "trainer.name", "no_such_trainer"],
    );
    // A missing file, and a bad --set.
    let t = expect_exit(&nas(&["run", "no/such/file.yaml"]), 2, "missing file");
    assert!(t.contains("no/such/file.yaml"), "{t}");
    let f = write(d, "ok.yaml", BASE);
    let t = expect_exit(
        &nas(&["config", "validate", &f, "--set", "data.batch_size"]),
        2,
        "--set without a value",
    );
    assert!(t.contains("data.batch_size"), "{t}");
}

const NB201_ARCH: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";

#[test]
fn an_architecture_of_another_space_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let darts = "configs/experiments/darts-digits.yaml";
    // The notation itself, and a file holding it.
    let t = expect_exit(
        &nas(&["inspect", NB201_ARCH, "--config", darts]),
        2,
        "inspect nb201 on darts",
    );
    assert!(
        t.contains("space `darts`") && t.contains("NAS-Bench-201"),
        "{t}"
    );
    let f = write(d.path(), "arch.txt", NB201_ARCH);
    let t = expect_exit(
        &nas(&["train", &f, "--config", darts, "--set", "train.epochs=1"]),
        2,
        "train nb201 on darts",
    );
    assert!(t.contains("arch.txt") && t.contains("space `darts`"), "{t}");
    // A DARTS genotype for the NB201 space.
    let nb = write(
        d.path(),
        "nb201.yaml",
        "schema: 1\nspace: {name: nb201}\nstrategy: {name: random}\nestimator: {name: nb201_table}\n",
    );
    let t = expect_exit(
        &nas(&["inspect", nas_space_darts::DARTS_V2, "--config", &nb]),
        2,
        "inspect darts on nb201",
    );
    assert!(t.contains("space `nb201`"), "{t}");
    // Garbage that is neither a file nor a notation.
    let t = expect_exit(
        &nas(&["inspect", "not-an-arch", "--config", darts]),
        2,
        "garbage",
    );
    assert!(t.contains("not-an-arch"), "{t}");
}

/// `n` blank 28x28 images as an IDX file, the last `cut` bytes cut off.
fn idx_images(n: u32, cut: usize) -> Vec<u8> {
    let mut b = nas_data::idx::encode_idx_images(n, 28, 28, &vec![0; 28 * 28 * n as usize]);
    b.truncate(b.len() - cut);
    b
}

/// `n` labels 0 as an IDX file.
fn idx_labels(n: u32) -> Vec<u8> {
    nas_data::idx::encode_idx_labels(&vec![0; n as usize])
}

#[test]
fn truncated_or_corrupt_data_files_fail_the_run_and_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("fashion");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("train-images-idx3-ubyte"), idx_images(10, 100)).unwrap();
    std::fs::write(root.join("train-labels-idx1-ubyte"), idx_labels(10)).unwrap();
    std::fs::write(root.join("t10k-images-idx3-ubyte"), idx_images(10, 0)).unwrap();
    std::fs::write(root.join("t10k-labels-idx1-ubyte"), idx_labels(10)).unwrap();
    let run = |out: &str| {
        nas(&[
            "run",
            "configs/experiments/darts-digits.yaml",
            "--set",
            "data.name=fashion_mnist",
            "--set",
            &format!("data.params.root={}", root.display()),
            "--out",
            d.path().join(out).to_str().unwrap(),
        ])
    };
    let t = expect_exit(&run("truncated"), 1, "truncated idx");
    assert!(
        t.contains("train-images-idx3-ubyte") && t.contains("truncated"),
        "{t}"
    );
    assert_eq!(
        json(&d.path().join("truncated"), "summary.json")["status"],
        "failed"
    );
    // Not an idx file at all.
    std::fs::write(
        root.join("train-images-idx3-ubyte"),
        b"this is not an idx file",
    )
    .unwrap();
    let t = expect_exit(&run("corrupt"), 1, "corrupt idx");
    assert!(t.contains("train-images-idx3-ubyte"), "{t}");
    // Missing.
    std::fs::remove_file(root.join("train-labels-idx1-ubyte")).unwrap();
    let t = expect_exit(&run("missing"), 1, "missing idx");
    assert!(t.contains("train-labels-idx1-ubyte"), "{t}");
}

#[test]
fn a_checkpoint_of_another_config_is_refused_and_resumable_keys_may_change() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let ds = dir.to_str().unwrap().to_string();
    let o = nas(&strs(&darts_args(
        1,
        &["--set", "budget.steps_per_epoch=1", "--out", &ds],
    )));
    expect_exit(&o, 0, "the run");
    // A key outside the resumable ones.
    let t = expect_exit(
        &nas(&["run", "--resume", &ds, "--set", "seed=9"]),
        2,
        "resume with another seed",
    );
    assert!(
        t.contains("different config") && t.contains("`seed` is 0 in the checkpoint, 9 now"),
        "{t}"
    );
    assert!(
        t.contains("optimizers.weights.params.lr"),
        "lists the resumable keys: {t}"
    );
    // The run directory's config edited by hand.
    let cfg = dir.join("config.resolved.yaml");
    let original = std::fs::read_to_string(&cfg).unwrap();
    let edited = original.replace("channels: 4", "channels: 6");
    assert_ne!(edited, original);
    std::fs::write(&cfg, &edited).unwrap();
    let t = expect_exit(&nas(&["run", "--resume", &ds]), 2, "edited config");
    assert!(
        t.contains("config.resolved.yaml") && t.contains("space.params.channels"),
        "{t}"
    );
    std::fs::write(&cfg, &original).unwrap();
    // A checkpoint copied from a run of another config.
    let other = d.path().join("other");
    let o = nas(&strs(&darts_args(
        1,
        &[
            "--set",
            "budget.steps_per_epoch=1",
            "--set",
            "seed=1",
            "--out",
            other.to_str().unwrap(),
        ],
    )));
    expect_exit(&o, 0, "the other run");
    let mixed = d.path().join("mixed");
    std::fs::create_dir_all(mixed.join("checkpoint")).unwrap();
    std::fs::copy(&cfg, mixed.join("config.resolved.yaml")).unwrap();
    for e in std::fs::read_dir(other.join("checkpoint")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), mixed.join("checkpoint").join(e.file_name())).unwrap();
    }
    let t = expect_exit(
        &nas(&["run", "--resume", mixed.to_str().unwrap()]),
        2,
        "a checkpoint of another run",
    );
    assert!(
        t.contains("different config") && t.contains("`seed`"),
        "{t}"
    );
    // Resumable keys may change.
    let o = nas(&[
        "run",
        "--resume",
        &ds,
        "--set",
        "output.log_every=2",
        "--set",
        "optimizers.weights.params.lr=0.01",
        "--set",
        "trainer.params.on_non_finite=skip",
    ]);
    expect_exit(&o, 0, "resume with resumable overrides");
    let resolved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        resolved.contains("lr: 0.01"),
        "the resolved config records the override: {resolved}"
    );
}

#[test]
fn corrupt_or_missing_checkpoints_and_run_directories_are_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let ds = dir.to_str().unwrap().to_string();
    let o = nas(&strs(&darts_args(
        1,
        &["--set", "budget.steps_per_epoch=1", "--out", &ds],
    )));
    expect_exit(&o, 0, "the run");
    // One byte of the strategy state changed.
    let p = dir.join("checkpoint/strategy.json");
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.iter().position(|b| b.is_ascii_digit()).unwrap();
    bytes[i] = if bytes[i] == b'9' { b'8' } else { bytes[i] + 1 };
    std::fs::write(&p, bytes).unwrap();
    let t = expect_exit(&nas(&["run", "--resume", &ds]), 1, "corrupt checkpoint");
    assert!(t.contains("strategy.json") && t.contains("corrupt"), "{t}");
    // No checkpoint at all.
    std::fs::remove_dir_all(dir.join("checkpoint")).unwrap();
    let t = expect_exit(&nas(&["run", "--resume", &ds]), 2, "no checkpoint");
    assert!(t.contains("no checkpoint"), "{t}");
    // Not a run directory.
    let t = expect_exit(
        &nas(&["run", "--resume", d.path().to_str().unwrap()]),
        2,
        "not a run directory",
    );
    assert!(t.contains("not a run directory"), "{t}");
    // A config and --resume together.
    let t = expect_exit(
        &nas(&[
            "run",
            "configs/experiments/darts-digits.yaml",
            "--resume",
            &ds,
        ]),
        2,
        "config and --resume",
    );
    assert!(t.contains("--resume"), "{t}");
}
