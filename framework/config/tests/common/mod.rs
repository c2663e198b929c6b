//! Helpers shared by the integration tests: YAML files in a temporary directory.
#![allow(dead_code)]
use std::path::PathBuf;

use nas_core::NasError;

/// A temporary directory of config files.
pub struct Dir(tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().expect("temp dir"))
    }

    /// Writes `text` to `name` (sub-directories created) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// The path `name` would have, as the loader names it in messages.
    pub fn name(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

/// The parts of a [`NasError::Config`]; panics on any other error.
pub fn config_parts(e: NasError) -> (String, String, String) {
    match e {
        NasError::Config {
            file,
            location,
            message,
        } => (file, location.unwrap_or_default(), message),
        other => panic!("expected a config error, got {other:?}"),
    }
}
