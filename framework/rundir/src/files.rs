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

/// The largest integer below which every whole `f64` is exact (2^53).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A count (parameters, FLOPs, queries) as JSON: an integer when `x` is a whole number that
/// an `f64` holds exactly (`3349342`, not `3349342.0`), else the number itself (`7.78` for
/// a count in millions; `null` when not finite). Readers accept both forms: serde reads an
/// integer into an `f64` field, so files written before this (with `3349342.0`) still load.
pub fn count_json(x: f64) -> serde_json::Value {
    if !x.is_finite() {
        return serde_json::Value::Null;
    }
    if x.fract() == 0.0 && x.abs() < EXACT_INT {
        return serde_json::Value::from(x as i64);
    }
    serde_json::Value::from(x)
}

/// Whether a metric named `key` is a count that [`count_json`] should write.
pub fn is_count_key(key: &str) -> bool {
    matches!(
        key,
        "params" | "flops" | "arch_params" | "samples" | "queries" | "estimator_queries"
    )
}

/// `serialize_with` for a count field ([`count_json`]).
pub fn serialize_count<S: serde::Serializer>(
    x: &f64,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::Serialize;
    count_json(*x).serialize(s)
}

/// `serialize_with` for an optional count field ([`count_json`]).
pub fn serialize_count_opt<S: serde::Serializer>(
    x: &Option<f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::Serialize;
    x.map(count_json).serialize(s)
}

#[cfg(test)]
mod count_tests {
    use super::*;

    #[test]
    fn whole_counts_are_integers_and_fractions_stay() {
        assert_eq!(
            serde_json::to_string(&count_json(3_349_342.0)).unwrap(),
            "3349342"
        );
        assert_eq!(
            serde_json::to_string(&count_json(7.78305)).unwrap(),
            "7.78305"
        );
        assert_eq!(count_json(f64::NAN), serde_json::Value::Null);
        // Above 2^53 a whole f64 is not an exact integer: kept as a float.
        assert!(count_json(1e300).is_f64());
        // Old files (floats) and new ones (integers) read back into the same f64.
        let old: f64 = serde_json::from_str("3349342.0").unwrap();
        let new: f64 = serde_json::from_str("3349342").unwrap();
        assert_eq!(old, new);
    }
}
