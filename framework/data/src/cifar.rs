//! CIFAR-10 and CIFAR-100 from the official binary version (Krizhevsky 2009,
//! <https://www.cs.toronto.edu/~kriz/cifar.html>, "binary version"): each record is the
//! label byte(s) then 3072 pixel bytes, the red, green and blue 32x32 planes in turn.
//! CIFAR-10: 1 label byte, files `data_batch_1.bin`..`data_batch_5.bin` and
//! `test_batch.bin` (in `cifar-10-batches-bin/`). CIFAR-100: a coarse (20) and a fine (100)
//! label byte, files `train.bin` and `test.bin` (in `cifar-100-binary/`); the fine label is
//! used. `root` may be that directory, its parent, or the official `.tar.gz` itself.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nas_core::{NasError, Result};

use crate::source::{is_tar_gz, read_file, read_tar_gz};
use crate::{DataSplits, Dataset};

/// Bytes of one CIFAR image (3 x 32 x 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// CIFAR-10 per-channel mean, as in the DARTS reference code (Liu et al. 2019,
/// `utils._data_transforms_cifar10`).
pub const CIFAR10_MEAN: [f32; 3] = [0.491_399_68, 0.482_158_27, 0.446_531_24];
/// CIFAR-10 per-channel standard deviation, as in the DARTS reference code.
pub const CIFAR10_STD: [f32; 3] = [0.247_032_33, 0.243_485_05, 0.261_587_68];
/// CIFAR-100 per-channel mean, as in the NAS-Bench-201 reference code (Dong & Yang 2020,
/// AutoDL-Projects `get_datasets`: `[129.3, 124.1, 112.4] / 255`).
pub const CIFAR100_MEAN: [f32; 3] = [129.3 / 255.0, 124.1 / 255.0, 112.4 / 255.0];
/// CIFAR-100 per-channel standard deviation (NAS-Bench-201: `[68.2, 65.4, 70.4] / 255`).
pub const CIFAR100_STD: [f32; 3] = [68.2 / 255.0, 65.4 / 255.0, 70.4 / 255.0];

/// The record layout of one CIFAR variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CifarFormat {
    /// Label bytes before the pixels (1 for CIFAR-10, 2 for CIFAR-100).
    pub label_bytes: usize,
    /// Which label byte is the class (0 for CIFAR-10; 1, the fine label, for CIFAR-100).
    pub label_index: usize,
    /// Classes of each label byte (`[10]` or `[20, 100]`), for checking.
    pub classes: &'static [usize],
}

/// CIFAR-10's record layout.
pub const CIFAR10: CifarFormat = CifarFormat {
    label_bytes: 1,
    label_index: 0,
    classes: &[10],
};
/// CIFAR-100's record layout (coarse label, fine label).
pub const CIFAR100: CifarFormat = CifarFormat {
    label_bytes: 2,
    label_index: 1,
    classes: &[20, 100],
};

impl CifarFormat {
    /// Bytes per record.
    pub fn record_bytes(&self) -> usize {
        self.label_bytes + CIFAR_IMAGE_BYTES
    }
}

/// Parses the records of one binary file, at most `limit` of them: returns the pixel
/// bytes (`N * 3072`, CHW) and the class labels. The length must be a whole number of
/// records and every label byte in range.
pub fn parse_cifar_records(
    file: &str,
    bytes: &[u8],
    format: CifarFormat,
    limit: usize,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let rec = format.record_bytes();
    if bytes.is_empty() || bytes.len() / rec * rec != bytes.len() {
        return Err(NasError::data(
            file,
            format!(
                "wrong length {}: not a whole number of {rec}-byte records (truncated?)",
                bytes.len()
            ),
        ));
    }
    let n = (bytes.len() / rec).min(limit);
    let mut pixels = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).take(n).enumerate() {
        for (k, &classes) in format.classes.iter().enumerate() {
            if r[k] as usize >= classes {
                return Err(NasError::data(
                    file,
                    format!(
                        "bad label {} in record {i} (label byte {k}): expected 0..{}",
                        r[k],
                        classes - 1
                    ),
                ));
            }
        }
        labels.push(r[format.label_index] as u32);
        pixels.extend_from_slice(&r[format.label_bytes..]);
    }
    Ok((pixels, labels))
}

/// Where the binary files come from: a directory or a `.tar.gz` read into memory.
enum Files {
    Dir(PathBuf),
    Archive(PathBuf, HashMap<String, Vec<u8>>),
}

impl Files {
    /// `root` itself, `root/<subdir>` when the files are there, or the archive `root`.
    fn open(root: &Path, subdir: &str, names: &[&str]) -> Result<Files> {
        if is_tar_gz(root) {
            let want = |p: &str| names.iter().any(|n| p.rsplit('/').next() == Some(*n));
            let entries = read_tar_gz(root, want)?;
            let map = entries
                .into_iter()
                .map(|(p, b)| (p.rsplit('/').next().unwrap_or_default().to_string(), b))
                .collect();
            return Ok(Files::Archive(root.to_path_buf(), map));
        }
        let nested = root.join(subdir);
        if !root.join(names[0]).exists() && nested.is_dir() {
            return Ok(Files::Dir(nested));
        }
        if !root.exists() {
            return Err(NasError::data(root, "data directory not found"));
        }
        Ok(Files::Dir(root.to_path_buf()))
    }

    /// The bytes of `name` and how to name it in errors.
    fn read(&self, name: &str) -> Result<(String, Vec<u8>)> {
        match self {
            Files::Dir(dir) => {
                let p = dir.join(name);
                Ok((p.display().to_string(), read_file(&p)?))
            }
            Files::Archive(path, map) => {
                let label = format!("{}:{name}", path.display());
                map.get(name)
                    .map(|b| (label.clone(), b.clone()))
                    .ok_or_else(|| NasError::data(label, "not found in the archive"))
            }
        }
    }
}

/// Reads `files` in turn until `limit` images are collected.
fn read_part(
    files: &Files,
    names: &[&str],
    format: CifarFormat,
    dataset: &str,
    num_classes: usize,
    limit: Option<usize>,
) -> Result<Dataset> {
    let mut left = limit.unwrap_or(usize::MAX);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for name in names {
        if left == 0 {
            break;
        }
        let (label, bytes) = files.read(name)?;
        let (p, l) = parse_cifar_records(&label, &bytes, format, left)?;
        left -= l.len();
        pixels.extend(p);
        labels.extend(l);
    }
    let ds = Dataset {
        name: dataset.into(),
        channels: 3,
        height: 32,
        width: 32,
        num_classes,
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels,
        files: None,
    };
    ds.validate(dataset)?;
    Ok(ds)
}

/// CIFAR-10 from the binary version under `root` (see the module doc).
pub fn load_cifar10(
    root: &Path,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
) -> Result<DataSplits> {
    let train_names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ];
    let mut all = train_names.to_vec();
    all.push("test_batch.bin");
    let files = Files::open(root, "cifar-10-batches-bin", &all)?;
    Ok(DataSplits {
        train: read_part(&files, &train_names, CIFAR10, "cifar10", 10, limit_train)?,
        test: read_part(
            &files,
            &["test_batch.bin"],
            CIFAR10,
            "cifar10",
            10,
            limit_test,
        )?,
        mean: CIFAR10_MEAN.to_vec(),
        std: CIFAR10_STD.to_vec(),
    })
}

/// CIFAR-100 (fine labels) from the binary version under `root` (see the module doc).
pub fn load_cifar100(
    root: &Path,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
) -> Result<DataSplits> {
    let files = Files::open(root, "cifar-100-binary", &["train.bin", "test.bin"])?;
    Ok(DataSplits {
        train: read_part(
            &files,
            &["train.bin"],
            CIFAR100,
            "cifar100",
            100,
            limit_train,
        )?,
        test: read_part(&files, &["test.bin"], CIFAR100, "cifar100", 100, limit_test)?,
        mean: CIFAR100_MEAN.to_vec(),
        std: CIFAR100_STD.to_vec(),
    })
}
