//! A writer for NumPy's `.npy` format, version 1.0: little-endian `float32` and `int64` arrays.
//!
//! Format (NumPy's `numpy/lib/format.py` and its "NPY format" NEP 1): the magic
//! `\x93NUMPY`, the version bytes `1, 0`, a little-endian `u16` header length, then an ASCII
//! Python-dict header (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`) padded
//! with spaces and ended by `\n` so that magic + version + length + header is a multiple of
//! 64 bytes; then the data in C order. Writing it takes twenty lines, so no crate is used.
use std::path::Path;

use nas_core::{NasError, Result};

use nas_rundir::files::write_atomic;

/// The bytes of an `.npy` file holding `data` (C order) of `shape` with dtype `descr`
/// (`<f4`, `<i8`); `data` is the already encoded little-endian payload.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // 6 magic + 2 version + 2 length bytes, then the header and its closing newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY");
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let want: usize = shape.iter().product();
    if want != len {
        return Err(NasError::Other(format!(
            "npy: shape {shape:?} needs {want} values, got {len}"
        )));
    }
    Ok(())
}

/// The `.npy` bytes of a `float32` array.
pub fn f32_npy(shape: &[usize], values: &[f32]) -> Result<Vec<u8>> {
    check_len(shape, values.len())?;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(npy_bytes("<f4", shape, &data))
}

/// The `.npy` bytes of an `int64` array.
pub fn i64_npy(shape: &[usize], values: &[i64]) -> Result<Vec<u8>> {
    check_len(shape, values.len())?;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(npy_bytes("<i8", shape, &data))
}

/// Writes a `float32` array to `path` (atomically).
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    write_atomic(path, &f32_npy(shape, values)?)
}

/// Writes an `int64` array to `path` (atomically).
pub fn write_i64(path: &Path, shape: &[usize], values: &[i64]) -> Result<()> {
    write_atomic(path, &i64_npy(shape, values)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payload_match_the_format_by_hand() {
        let b = f32_npy(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 1.5]).unwrap();
        // Magic and version.
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        // The preamble is a multiple of 64 bytes and the header ends with a newline.
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        let data = &b[10 + hlen..];
        assert_eq!(data.len(), 6 * 4);
        // 1.5f32 = 0x3FC00000, little-endian.
        assert_eq!(&data[20..24], &[0x00, 0x00, 0xC0, 0x3F]);
        // 1.0f32 = 0x3F800000.
        assert_eq!(&data[4..8], &[0x00, 0x00, 0x80, 0x3F]);
    }

    #[test]
    fn one_dimensional_shape_has_a_trailing_comma_and_wrong_lengths_fail() {
        let b = i64_npy(&[3], &[-1, 0, 7]).unwrap();
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'descr': '<i8'"), "{header}");
        assert!(header.contains("'shape': (3,)"), "{header}");
        assert_eq!(&b[10 + hlen..10 + hlen + 8], &[0xFF; 8]);
        assert!(f32_npy(&[2, 2], &[1.0]).is_err());
    }
}
