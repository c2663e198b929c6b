//! The checkpoint directory on disk: written whole into `checkpoint.tmp/`, sealed with a
//! manifest of every file's size and hash, then swapped in by renames, so that a crash at
//! any moment leaves at least one complete, verifiable checkpoint.
//!
//! The swap, with `cur = checkpoint/`, `old = checkpoint.old/`, `tmp = checkpoint.tmp/`:
//! 1. fill `tmp`, fsync every file, write `manifest.json` last, fsync it and `tmp`;
//! 2. if `cur` exists: remove `old`, rename `cur -> old` (if `cur` is missing, a crash
//!    interrupted an earlier swap and `old` is the last good checkpoint: keep it);
//! 3. rename `tmp -> cur`, fsync the run directory, remove `old`.
//!
//! At every point between these steps `cur` or `old` holds a complete checkpoint, and
//! [`open`] takes `cur` if it verifies, else `old`.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};
use serde::{Deserialize, Serialize};

/// Name of the checkpoint directory inside a run directory.
pub const CURRENT: &str = "checkpoint";
/// The directory a checkpoint is written to before it is swapped in.
pub const TEMPORARY: &str = "checkpoint.tmp";
/// Where the previous checkpoint waits during a swap.
pub const PREVIOUS: &str = "checkpoint.old";
/// The manifest, written last: its presence marks a complete checkpoint.
pub const MANIFEST: &str = "manifest.json";
/// Version of the checkpoint layout.
pub const FORMAT: u32 = 1;

/// FNV-1a, 64 bits, as 16 hex digits (Fowler, Noll and Vo; offset basis and prime of the
/// published 64-bit parameters). Detects torn or edited files; not a defence against
/// deliberate tampering.
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One file of a checkpoint, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Size in bytes.
    pub bytes: u64,
    /// [`fnv1a64`] of the contents.
    pub fnv1a64: String,
}

/// `manifest.json`: the layout version and every other file of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] of the writer.
    pub format: u32,
    /// File name -> size and hash.
    pub files: BTreeMap<String, FileEntry>,
}

fn sync_dir(dir: &Path) {
    // Directory fsync makes renames durable on Linux; elsewhere it may be refused, and
    // the rename is then as durable as the platform makes it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `contents` to `path` and fsyncs it.
pub fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| NasError::io(path, e))?;
    f.write_all(contents).map_err(|e| NasError::io(path, e))?;
    f.sync_all().map_err(|e| NasError::io(path, e))
}

/// Starts a checkpoint: an empty `checkpoint.tmp/` in `run_dir` (a stale one, left by a
/// crash, is removed first). Write the files into the returned directory, then [`commit`].
pub fn begin(run_dir: &Path) -> Result<PathBuf> {
    let tmp = run_dir.join(TEMPORARY);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| NasError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| NasError::io(&tmp, e))?;
    Ok(tmp)
}

/// Seals `checkpoint.tmp/` (fsyncs its files and writes the manifest) and swaps it in as
/// `checkpoint/`, keeping the previous checkpoint until the new one is in place.
/// `before_swap` runs after the previous checkpoint has been moved aside and before the new
/// one is renamed into place: the most fragile moment (the fault-injection tests stop there).
pub fn commit(run_dir: &Path, before_swap: impl FnOnce()) -> Result<()> {
    let tmp = run_dir.join(TEMPORARY);
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&tmp).map_err(|e| NasError::io(&tmp, e))? {
        let entry = entry.map_err(|e| NasError::io(&tmp, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == MANIFEST || !path.is_file() {
            continue;
        }
        let mut f = File::open(&path).map_err(|e| NasError::io(&path, e))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| NasError::io(&path, e))?;
        f.sync_all().map_err(|e| NasError::io(&path, e))?;
        files.insert(
            name,
            FileEntry {
                bytes: bytes.len() as u64,
                fnv1a64: fnv1a64(&bytes),
            },
        );
    }
    let manifest = Manifest {
        format: FORMAT,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| NasError::Other(format!("serialising the checkpoint manifest: {e}")))?;
    write_synced(&tmp.join(MANIFEST), &text)?;
    sync_dir(&tmp);
    let cur = run_dir.join(CURRENT);
    let old = run_dir.join(PREVIOUS);
    if cur.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| NasError::io(&old, e))?;
        }
        fs::rename(&cur, &old).map_err(|e| NasError::io(&cur, e))?;
        sync_dir(run_dir);
    }
    before_swap();
    fs::rename(&tmp, &cur).map_err(|e| NasError::io(&tmp, e))?;
    sync_dir(run_dir);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| NasError::io(&old, e))?;
    }
    Ok(())
}

/// Checks a sealed checkpoint directory: its manifest, and every file it lists (size and
/// hash). Returns the manifest.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST);
    let text = fs::read(&mpath).map_err(|e| {
        NasError::data(
            &mpath,
            format!("cannot read the manifest ({e}): the checkpoint is incomplete"),
        )
    })?;
    let m: Manifest = serde_json::from_slice(&text)
        .map_err(|e| NasError::data(&mpath, format!("corrupt manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(NasError::data(
            &mpath,
            format!(
                "checkpoint format {} (this build reads format {FORMAT})",
                m.format
            ),
        ));
    }
    for (name, want) in &m.files {
        let p = dir.join(name);
        let bytes = fs::read(&p).map_err(|e| NasError::io(&p, e))?;
        if bytes.len() as u64 != want.bytes || fnv1a64(&bytes) != want.fnv1a64 {
            return Err(NasError::data(
                &p,
                format!(
                    "corrupt checkpoint file: {} bytes with hash {}, the manifest records {} bytes with hash {}",
                    bytes.len(),
                    fnv1a64(&bytes),
                    want.bytes,
                    want.fnv1a64
                ),
            ));
        }
    }
    Ok(m)
}

/// The checkpoint directory to resume from: `checkpoint/` when it verifies, else
/// `checkpoint.old/` (left by a crash during a swap). An error says why neither serves.
pub fn open(run_dir: &Path) -> Result<PathBuf> {
    let mut problems = Vec::new();
    for name in [CURRENT, PREVIOUS] {
        let d = run_dir.join(name);
        if !d.is_dir() {
            continue;
        }
        match verify(&d) {
            Ok(_) => {
                if !problems.is_empty() {
                    tracing::warn!(
                        "using the previous checkpoint {}: {}",
                        d.display(),
                        problems.join("; ")
                    );
                }
                return Ok(d);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Err(NasError::Config {
            file: run_dir.display().to_string(),
            location: None,
            message: format!(
                "no checkpoint to resume from (no `{CURRENT}/` directory): not a run directory, \
                 or the run was stopped before its first checkpoint"
            ),
        })
    } else {
        Err(NasError::data(run_dir.join(CURRENT), problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(run: &Path, body: &str) {
        let tmp = begin(run).unwrap();
        write_synced(&tmp.join("state.json"), body.as_bytes()).unwrap();
        commit(run, || {}).unwrap();
    }

    fn state(dir: &Path) -> String {
        fs::read_to_string(dir.join("state.json")).unwrap()
    }

    #[test]
    fn fnv1a64_matches_published_vectors() {
        // Test vectors of the FNV reference page (64-bit FNV-1a).
        assert_eq!(fnv1a64(b""), "cbf29ce484222325");
        assert_eq!(fnv1a64(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a64(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn commit_replaces_and_leaves_no_side_directories() {
        let d = tempfile::tempdir().unwrap();
        checkpoint(d.path(), "one");
        checkpoint(d.path(), "two");
        assert_eq!(state(&open(d.path()).unwrap()), "two");
        let mut names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![CURRENT.to_string()]);
        let m = verify(&d.path().join(CURRENT)).unwrap();
        assert_eq!(m.files["state.json"].bytes, 3);
        assert_eq!(m.files["state.json"].fnv1a64, fnv1a64(b"two"));
    }

    #[test]
    fn a_crash_while_filling_the_new_checkpoint_keeps_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        checkpoint(d.path(), "good");
        // Killed while writing: files in checkpoint.tmp, no manifest, no swap.
        let tmp = begin(d.path()).unwrap();
        fs::write(tmp.join("state.json"), "half").unwrap();
        assert_eq!(state(&open(d.path()).unwrap()), "good");
        // The next checkpoint clears the stale temporary directory.
        checkpoint(d.path(), "next");
        assert_eq!(state(&open(d.path()).unwrap()), "next");
    }

    #[test]
    fn a_crash_between_the_renames_falls_back_to_the_previous_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        checkpoint(d.path(), "good");
        let tmp = begin(d.path()).unwrap();
        write_synced(&tmp.join("state.json"), b"newer").unwrap();
        // Simulate the crash: the swap stops right after `checkpoint/` was moved aside.
        let crashed = std::panic::catch_unwind(|| {
            commit(d.path(), || panic!("killed")).ok();
        });
        assert!(crashed.is_err());
        assert!(!d.path().join(CURRENT).exists());
        let dir = open(d.path()).unwrap();
        assert_eq!(dir, d.path().join(PREVIOUS));
        assert_eq!(state(&dir), "good");
        // A later commit keeps `checkpoint.old` (the only good one) until it is replaced.
        checkpoint(d.path(), "after");
        assert_eq!(state(&open(d.path()).unwrap()), "after");
        assert!(!d.path().join(PREVIOUS).exists());
    }

    #[test]
    fn corrupt_or_missing_checkpoints_are_named() {
        let d = tempfile::tempdir().unwrap();
        let e = open(d.path()).unwrap_err().to_string();
        assert!(e.contains("no checkpoint"), "{e}");
        checkpoint(d.path(), "good");
        fs::write(d.path().join(CURRENT).join("state.json"), "evil").unwrap();
        let e = open(d.path()).unwrap_err().to_string();
        assert!(e.contains("state.json") && e.contains("corrupt"), "{e}");
        fs::remove_file(d.path().join(CURRENT).join(MANIFEST)).unwrap();
        let e = open(d.path()).unwrap_err().to_string();
        assert!(e.contains("incomplete"), "{e}");
    }
}
