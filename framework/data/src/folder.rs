//! CIFAR-10 from an image-folder layout, `root/{train,test}/<class>/*.jpg`, either a
//! directory or a `.tar.gz` of one (such as `shared/data/cifar10-jpg/cifar10-jpg-q75.tar.gz`).
//! Classes are the sub-directories of `train`, sorted by name, which for CIFAR-10 gives the
//! official label indices (airplane = 0 ... truck = 9). JPEGs are decoded with zune-jpeg
//! into RGB.
//!
//! **Order:** within a class, files are sorted by name; the classes are then interleaved
//! (file 0 of every class, then file 1 of every class, ...), so that `limit_train: N`
//! keeps a class-balanced prefix instead of the first class only.
use std::collections::BTreeMap;
use std::path::Path;

use nas_core::{NasError, Result};
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::cifar::{CIFAR10_MEAN, CIFAR10_STD};
use crate::source::{is_tar_gz, read_file, read_tar_gz};
use crate::{DataSplits, Dataset};

/// A decoded image: height, width and RGB bytes in HWC order.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width * 3` bytes, row-major, R G B per pixel.
    pub pixels: Vec<u8>,
}

/// Decodes a JPEG into RGB (grey JPEGs are expanded); `file` names it in errors.
pub fn decode_jpeg(file: &str, bytes: &[u8]) -> Result<RgbImage> {
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(bytes, options);
    let pixels = decoder
        .decode()
        .map_err(|e| NasError::data(file, format!("cannot decode JPEG: {e:?}")))?;
    let info = decoder
        .info()
        .ok_or_else(|| NasError::data(file, "JPEG without image information"))?;
    let (height, width) = (info.height as usize, info.width as usize);
    if pixels.len() != height * width * 3 {
        return Err(NasError::data(
            file,
            format!(
                "decoded {} bytes for a {height}x{width} RGB image",
                pixels.len()
            ),
        ));
    }
    Ok(RgbImage {
        height,
        width,
        pixels,
    })
}

/// One split's files, by class name, each a list of (file name, how to read it).
pub(crate) type ClassFiles = BTreeMap<String, Vec<(String, Entry)>>;

/// Where an image's bytes are: a path to read, or bytes already read from an archive.
#[derive(Debug)]
pub(crate) enum Entry {
    Path(std::path::PathBuf),
    Bytes(Vec<u8>),
}

pub(crate) fn is_jpeg(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".jpg") || n.ends_with(".jpeg")
}

/// Lists `dir/<class>/*.jpg`.
pub(crate) fn scan_dir(dir: &Path) -> Result<ClassFiles> {
    let list = |d: &Path| -> Result<Vec<std::fs::DirEntry>> {
        let rd = std::fs::read_dir(d).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "directory not found".to_string()
            } else {
                format!("cannot list directory: {e}")
            };
            NasError::data(d, what)
        })?;
        rd.collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| NasError::data(d, format!("cannot list directory: {e}")))
    };
    let mut classes = ClassFiles::new();
    for class in list(dir)? {
        if !class.path().is_dir() {
            continue;
        }
        let name = class.file_name().to_string_lossy().into_owned();
        let files = classes.entry(name).or_default();
        for f in list(&class.path())? {
            let fname = f.file_name().to_string_lossy().into_owned();
            if f.path().is_file() && is_jpeg(&fname) {
                files.push((fname, Entry::Path(f.path())));
            }
        }
    }
    Ok(classes)
}

/// Reads the archive once and sorts its JPEGs into `{train, test}` by class. The
/// split directory may sit under a leading folder (`cifar10/train/cat/0001.jpg`).
fn scan_archive(path: &Path) -> Result<(ClassFiles, ClassFiles)> {
    let split_of = |p: &str| -> Option<(usize, String, String)> {
        let parts: Vec<&str> = p
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let k = parts.len().checked_sub(3)?;
        let split = ["train", "test"].iter().position(|s| *s == parts[k])?;
        is_jpeg(parts[k + 2]).then(|| (split, parts[k + 1].to_string(), parts[k + 2].to_string()))
    };
    let mut out = (ClassFiles::new(), ClassFiles::new());
    for (p, bytes) in read_tar_gz(path, |p| split_of(p).is_some())? {
        if let Some((split, class, file)) = split_of(&p) {
            let target = if split == 0 { &mut out.0 } else { &mut out.1 };
            target
                .entry(class)
                .or_default()
                .push((file, Entry::Bytes(bytes)));
        }
    }
    Ok(out)
}

/// Class-interleaved order (see the module doc) of at most `limit` files.
pub(crate) fn interleave(
    classes: &mut ClassFiles,
    names: &[String],
    limit: usize,
) -> Vec<(u32, String, Entry)> {
    let mut lists: Vec<std::vec::IntoIter<(String, Entry)>> = Vec::new();
    for name in names {
        let mut files = classes.remove(name).unwrap_or_default();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        lists.push(files.into_iter());
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let before = out.len();
        for (c, it) in lists.iter_mut().enumerate() {
            if out.len() == limit {
                break;
            }
            if let Some((file, e)) = it.next() {
                out.push((c as u32, format!("{}/{file}", names[c]), e));
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Decodes one split's files into a data set; all images must share the first one's size.
fn decode_split(
    source: &Path,
    split: &str,
    files: Vec<(u32, String, Entry)>,
    num_classes: usize,
) -> Result<Dataset> {
    let mut ds = Dataset {
        name: "cifar10_folder".into(),
        channels: 3,
        height: 0,
        width: 0,
        num_classes,
        images: Vec::new(),
        labels: Vec::new(),
        files: None,
    };
    for (label, rel, entry) in files {
        let (file, bytes) = match entry {
            Entry::Path(p) => (p.display().to_string(), read_file(&p)?),
            Entry::Bytes(b) => (format!("{}:{split}/{rel}", source.display()), b),
        };
        let img = decode_jpeg(&file, &bytes)?;
        if ds.labels.is_empty() {
            ds.height = img.height;
            ds.width = img.width;
            ds.images.reserve(ds.image_len() * 64);
        } else if (img.height, img.width) != (ds.height, ds.width) {
            return Err(NasError::data(
                &file,
                format!(
                    "image is {}x{}, but the first image was {}x{}",
                    img.height, img.width, ds.height, ds.width
                ),
            ));
        }
        // HWC bytes -> CHW floats in [0, 1]
        for c in 0..3 {
            ds.images.extend(
                img.pixels
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&p| p as f32 / 255.0),
            );
        }
        ds.labels.push(label);
    }
    if ds.labels.is_empty() {
        return Err(NasError::data(source.join(split), "no JPEG images found"));
    }
    ds.validate(&source.display().to_string())?;
    Ok(ds)
}

/// CIFAR-10 from the image-folder layout under `root` (a directory or a `.tar.gz`); see
/// the module doc. Normalised with the CIFAR-10 figures of DARTS (for JPEG copies they are
/// close, not exact).
pub fn load_cifar10_folder(
    root: &Path,
    limit_train: Option<usize>,
    limit_test: Option<usize>,
) -> Result<DataSplits> {
    let (mut train, mut test) = if is_tar_gz(root) {
        scan_archive(root)?
    } else {
        (
            scan_dir(&root.join("train"))?,
            scan_dir(&root.join("test"))?,
        )
    };
    let classes: Vec<String> = train.keys().cloned().collect();
    if classes.is_empty() {
        return Err(NasError::data(
            root.join("train"),
            "no class directories found",
        ));
    }
    if let Some(extra) = test.keys().find(|k| !train.contains_key(*k)) {
        return Err(NasError::data(
            root.join("test").join(extra),
            format!("class `{extra}` is not among the training classes {classes:?}"),
        ));
    }
    let n = classes.len();
    let train_files = interleave(&mut train, &classes, limit_train.unwrap_or(usize::MAX));
    let test_files = interleave(&mut test, &classes, limit_test.unwrap_or(usize::MAX));
    Ok(DataSplits {
        train: decode_split(root, "train", train_files, n)?,
        test: decode_split(root, "test", test_files, n)?,
        mean: CIFAR10_MEAN.to_vec(),
        std: CIFAR10_STD.to_vec(),
    })
}
