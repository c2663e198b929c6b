//! The IDX format of MNIST and Fashion-MNIST (LeCun et al., "THE MNIST DATABASE" file
//! format; Xiao et al. 2017 reuse it): a big-endian header `00 00 <type> <ndims>`, then
//! `ndims` big-endian `u32` sizes, then the data. Only unsigned bytes (type `0x08`) occur.
use std::path::Path;

use nas_core::{NasError, Result};

use crate::source::read_maybe_gz;
use crate::{DataSplits, Dataset};

/// Unsigned-byte images of an IDX file (`ndims = 3`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` bytes.
    pub pixels: Vec<u8>,
}

/// Encodes images as an IDX file: magic `00 00 08 03`, the big-endian sizes `count`, `rows`,
/// `cols`, then `pixels` row-major, as the Fashion-MNIST `*-images-idx3-ubyte` files are
/// written. The sizes are written as given (not checked against `pixels.len()`), so a
/// malformed file can be made on purpose.
pub fn encode_idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, 3];
    for size in [count, rows, cols] {
        bytes.extend_from_slice(&size.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    bytes
}

/// Encodes labels as an IDX file: magic `00 00 08 01`, the big-endian count, then the
/// labels, as the Fashion-MNIST `*-labels-idx1-ubyte` files are written.
pub fn encode_idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, 1];
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

/// Parses the header: checks the magic number and returns the sizes and the data offset.
fn header(file: &Path, bytes: &[u8], ndims: u8) -> Result<(Vec<usize>, usize)> {
    let magic_want = 0x0000_0800u32 | ndims as u32;
    if bytes.len() < 4 {
        return Err(NasError::data(
            file,
            format!("{} bytes: too short for an IDX header", bytes.len()),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != magic_want {
        return Err(NasError::data(
            file,
            format!("wrong magic number {magic:#010x}, expected {magic_want:#010x} (IDX unsigned bytes, {ndims} dimensions)"),
        ));
    }
    let offset = 4 + 4 * ndims as usize;
    if bytes.len() < offset {
        return Err(NasError::data(
            file,
            format!("{} bytes: truncated IDX header", bytes.len()),
        ));
    }
    let dims = (0..ndims as usize)
        .map(|d| {
            let b = &bytes[4 + 4 * d..8 + 4 * d];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    Ok((dims, offset))
}

/// Checks that the data after the header has exactly `want` bytes.
fn check_len(file: &Path, bytes: &[u8], offset: usize, want: usize, what: &str) -> Result<()> {
    let have = bytes.len() - offset;
    if have != want {
        return Err(NasError::data(
            file,
            format!(
                "wrong length: the header promises {want} bytes of {what} but the file has {have}{}",
                if have < want { " (truncated?)" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// Parses an IDX image file (magic `0x00000803`); `file` names it in errors.
pub fn parse_idx_images(file: &Path, bytes: &[u8]) -> Result<IdxImages> {
    let (dims, offset) = header(file, bytes, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let want = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| NasError::data(file, "image sizes overflow"))?;
    check_len(file, bytes, offset, want, "pixels")?;
    if rows == 0 || cols == 0 {
        return Err(NasError::data(
            file,
            format!("empty image size {rows}x{cols}"),
        ));
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[offset..].to_vec(),
    })
}

/// Parses an IDX label file (magic `0x00000801`); every label must be `< num_classes`.
pub fn parse_idx_labels(file: &Path, bytes: &[u8], num_classes: usize) -> Result<Vec<u32>> {
    let (dims, offset) = header(file, bytes, 1)?;
    check_len(file, bytes, offset, dims[0], "labels")?;
    let labels = &bytes[offset..];
    if let Some(i) = labels.iter().position(|&l| l as usize >= num_classes) {
        return Err(NasError::data(
            file,
            format!(
                "bad label {} at index {i}: expected 0..{}",
                labels[i],
                num_classes - 1
            ),
        ));
    }
    Ok(labels.iter().map(|&l| l as u32).collect())
}

/// Reads one split (`train` or `t10k`) from `root`, files plain or gzipped.
fn read_split(
    root: &Path,
    prefix: &str,
    name: &str,
    num_classes: usize,
    limit: Option<usize>,
) -> Result<Dataset> {
    let img_path = crate::source::find_plain_or_gz(root, &format!("{prefix}-images-idx3-ubyte"))?;
    let lbl_path = crate::source::find_plain_or_gz(root, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = parse_idx_images(&img_path, &read_maybe_gz(&img_path)?)?;
    let labels = parse_idx_labels(&lbl_path, &read_maybe_gz(&lbl_path)?, num_classes)?;
    if labels.len() != images.count {
        return Err(NasError::data(
            &lbl_path,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                images.count,
                img_path.display()
            ),
        ));
    }
    let n = limit.map_or(images.count, |l| l.min(images.count));
    let plane = images.rows * images.cols;
    let ds = Dataset {
        name: name.into(),
        channels: 1,
        height: images.rows,
        width: images.cols,
        num_classes,
        images: images.pixels[..n * plane]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect(),
        labels: labels[..n].to_vec(),
        files: None,
    };
    ds.validate(&img_path.display().to_string())?;
    Ok(ds)
}

/// Fashion-MNIST's per-pixel mean and standard deviation, computed here from the 60,000
/// original training images (they agree with the commonly published 0.2860 / 0.3530).
pub const FASHION_MNIST_MEAN: [f32; 1] = [0.286_040_6];
/// See [`FASHION_MNIST_MEAN`].
pub const FASHION_MNIST_STD: [f32; 1] = [0.353_024_2];

/// Fashion-MNIST (Xiao et al. 2017) from the four original IDX files under `root`
/// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`, each plain or with `.gz`): 28x28 grey, 10 classes.
pub fn load_fashion_mnist(
    root: &Path,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
) -> Result<DataSplits> {
    let train = read_split(root, "train", "fashion_mnist", 10, limit_train)?;
    let test = read_split(root, "t10k", "fashion_mnist", 10, limit_test)?;
    Ok(DataSplits {
        train,
        test,
        mean: FASHION_MNIST_MEAN.to_vec(),
        std: FASHION_MNIST_STD.to_vec(),
    })
}
