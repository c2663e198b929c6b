//! Builds the plugin crates once per test run with the same cargo and target directory
//! as the tests, and returns the paths of the shared libraries.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The crates the tests load, by package name.
const PACKAGES: [&str; 4] = [
    "custom-strategy-plugin",
    "wrong-abi-plugin",
    "old-protocol-plugin",
    "nas-plugin-gradient-probe",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory of this test binary (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build_all() -> Result<PathBuf, String> {
    let target = target_dir();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root())
        .arg("build")
        .arg("--target-dir")
        .arg(&target);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target.join("debug"))
}

/// The path of the built library of `package` (built on first use).
pub fn plugin_path(package: &str) -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = match DIR.get_or_init(build_all) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    dir.join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}
