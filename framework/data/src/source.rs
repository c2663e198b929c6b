//! Reading raw bytes from local files: plain or gzipped files, and `.tar.gz` archives.
//! Every failure is a [`NasError::Data`] naming the file.
use std::io::Read;
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

/// Reads the whole file; a missing or unreadable file is a data error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "file not found".to_string()
        } else {
            format!("cannot read: {e}")
        };
        NasError::data(path, what)
    })
}

/// True when `bytes` start with the gzip magic number `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses `bytes` when they are gzipped (by content, not by name); `path` names the
/// file in errors (a truncated or corrupt stream).
pub fn gunzip_if_needed(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| NasError::data(path, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(out)
}

/// Reads `path`, decompressing it if it is gzipped.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    gunzip_if_needed(path, read_file(path)?)
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists; otherwise a data error
/// naming both.
pub fn find_plain_or_gz(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(NasError::data(
        &plain,
        format!("file not found (nor {})", gz.display()),
    ))
}

/// True when `path` names a gzipped tar archive (`.tar.gz` or `.tgz`).
pub fn is_tar_gz(path: &Path) -> bool {
    let s = path.to_string_lossy().to_ascii_lowercase();
    s.ends_with(".tar.gz") || s.ends_with(".tgz")
}

/// Every regular file of the `.tar.gz` archive at `path` for which `keep(entry path)` is
/// true, as `(entry path, bytes)` in archive order. Errors name the archive (and entry).
pub fn read_tar_gz(
    path: &Path,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let file = std::fs::File::open(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "archive not found".to_string()
        } else {
            format!("cannot open archive: {e}")
        };
        NasError::data(path, what)
    })?;
    let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let bad =
        |e: std::io::Error| NasError::data(path, format!("corrupt or truncated archive: {e}"));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        if !keep(&name) {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| NasError::data(path, format!("corrupt or truncated entry {name}: {e}")))?;
        out.push((name, bytes));
    }
    Ok(out)
}
