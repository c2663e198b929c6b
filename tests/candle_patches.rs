//! The candle patches that `scripts/build-cuda.sh` applies to its copy of candle-core
//! (`scripts/candle-patches/*.patch`, docs/gpu.md): checked here, where CI runs, so that a
//! candle upgrade that a patch no longer fits fails the tests, not a later CUDA build.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root (this crate is its `tests/` folder).
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("tests/ lies inside the workspace")
        .to_path_buf()
}

/// The source folder of the candle-core this workspace builds with, found as
/// `scripts/build-cuda.sh` finds it (`cargo metadata`).
fn candle_core_source(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(root)
        .output()
        .expect("cargo metadata starts");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .find(|p| p["name"] == "candle-core")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("candle-core is a dependency");
    Path::new(manifest)
        .parent()
        .expect("a manifest lies in its package's folder")
        .to_path_buf()
}

#[test]
fn every_candle_patch_applies_to_the_candle_core_in_use() {
    let root = workspace_root();
    let candle = candle_core_source(&root);
    let mut patches: Vec<PathBuf> = std::fs::read_dir(root.join("scripts/candle-patches"))
        .expect("scripts/candle-patches exists")
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    assert!(!patches.is_empty(), "no patch in scripts/candle-patches");
    for patch in &patches {
        // `git apply` outside a repository applies to the working folder; the ceiling keeps
        // it from finding a repository above candle's source (a vendored or checked-out one).
        let parent = candle.parent().unwrap_or(&candle);
        let out = Command::new("git")
            .args(["apply", "--check", "-p1"])
            .arg(patch)
            .current_dir(&candle)
            .env("GIT_CEILING_DIRECTORIES", parent)
            .output()
            .expect("git starts");
        assert!(
            out.status.success(),
            "{} does not apply to {}: {}",
            patch.display(),
            candle.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
