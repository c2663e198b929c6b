//! Atomic writes and append-only logs of a run directory.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

/// Writes `contents` to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the target, so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = File::create(&tmp).map_err(|e| NasError::io(&tmp, e))?;
    f.write_all(contents).map_err(|e| NasError::io(&tmp, e))?;
    f.sync_all().map_err(|e| NasError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| NasError::io(path, e))
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| NasError::Other(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, format!("{s}\n").as_bytes())
}

/// An append-only JSON-lines file; each line is flushed as it is written.
pub struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| NasError::io(path, e))?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one JSON value as a line.
    pub fn push(&mut self, v: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_string(v)
            .map_err(|e| NasError::Other(format!("serialising a metrics line: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| NasError::io(&self.path, e))
    }
}

/// A plain-text log (`log.txt`), without colour.
pub struct TextLog {
    path: PathBuf,
    file: File,
}

impl TextLog {
    /// Opens (appending) `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| NasError::io(path, e))?;
        Ok(TextLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line.
    pub fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.file, "{s}").map_err(|e| NasError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("summary.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
