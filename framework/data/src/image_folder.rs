//! `image_folder`: any image-classification set in the ImageNet layout,
//! `root/{train,val}/<class>/*.JPEG`, streamed from disk.
//!
//! Nothing is decoded when the data set is loaded: the directories are listed (classes =
//! the sub-directories of `train`, sorted by name, as torchvision's `ImageFolder`), and each
//! image is decoded when a [`Loader`](crate::Loader) puts it into a batch (in parallel over
//! the batch). So a set of any size runs in the memory of a few batches. Each image goes
//! through the evaluation transform of the ImageNet references (SPOS, ProxylessNAS and
//! FBNet all use torchvision's): the shorter side resized to `resize` (Pillow's antialiased
//! bilinear filter, [`crate::resize`]), the centre `size x size` crop, values in `[0, 1]`;
//! the loader's `augment` (padded crop, flip, cutout) then applies as for every data set.
//! Normalisation: ImageNet's mean and standard deviation unless `mean` / `std` are given.
//!
//! Differences from the references' training transform (planned, not built):
//! `RandomResizedCrop(224)` (a random area and aspect ratio per image), colour jitter and
//! lighting noise; here training images get the centre crop plus `augment`.
//!
//! **Order:** within a class, files are sorted by name; the classes are then interleaved
//! (as `cifar10_folder`), so `limit_train: N` keeps a class-balanced prefix.
use std::path::{Path, PathBuf};

use nas_core::params::ensure;
use nas_core::{decode_params, NasError, Result};
use serde::{Deserialize, Serialize};

use crate::folder::{decode_jpeg, interleave, scan_dir, Entry};
use crate::resize::{center_crop, resize_bilinear, shorter_side_to};
use crate::source::read_file;
use crate::{DataSplits, Dataset};

/// ImageNet's per-channel mean (torchvision's reference scripts).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (torchvision's reference scripts).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Params of `image_folder` (`data.params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageFolderParams {
    /// The directory holding `train/` and the test split's directory (required).
    pub root: Option<String>,
    /// Use only the first N training images (class-interleaved); `null` = all.
    pub limit_train: Option<usize>,
    /// Use only the first N test images; `null` = all.
    pub limit_test: Option<usize>,
    /// The number of class directories expected (ImageNet: 1000); `null` = as many as
    /// `train` holds. When given, the model's shape is known without listing the files
    /// (`nas config validate`), and a different count is an error.
    pub classes: Option<usize>,
    /// Side of the square images the networks see (ImageNet references: 224).
    pub size: usize,
    /// The shorter side is resized to this before the centre crop (references: 256);
    /// `null` = `size * 256 / 224`.
    pub resize: Option<usize>,
    /// Training split directory under `root`.
    pub train_dir: String,
    /// Test split directory under `root` (ImageNet: `val`).
    pub test_dir: String,
    /// Per-channel mean; `null` = ImageNet's.
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation; `null` = ImageNet's.
    pub std: Option<[f32; 3]>,
}

impl Default for ImageFolderParams {
    fn default() -> Self {
        ImageFolderParams {
            root: None,
            limit_train: None,
            limit_test: None,
            classes: None,
            size: 224,
            resize: None,
            train_dir: "train".into(),
            test_dir: "val".into(),
            mean: None,
            std: None,
        }
    }
}

/// The image files of one split and how each becomes a network input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFiles {
    /// One file per image, in data-set order.
    pub paths: Vec<PathBuf>,
    /// Shorter side after resizing.
    pub resize: usize,
    /// Side of the centre crop.
    pub size: usize,
}

impl ImageFiles {
    /// The files at `indices`, in that order (`None` if one is out of range).
    pub fn subset(&self, indices: &[usize]) -> Option<ImageFiles> {
        let paths = indices
            .iter()
            .map(|&i| self.paths.get(i).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(ImageFiles {
            paths,
            ..self.clone()
        })
    }

    /// Image `i` decoded, resized, centre-cropped, as `3 x size x size` values in `[0, 1]`
    /// (CHW). Errors name the file.
    pub fn decode(&self, i: usize) -> Result<Vec<f32>> {
        let path = self
            .paths
            .get(i)
            .ok_or_else(|| NasError::data("image_folder", format!("no image {i}")))?;
        let file = path.display().to_string();
        let img = decode_jpeg(&file, &read_file(path)?)?;
        let (h, w) = (img.height, img.width);
        if h == 0 || w == 0 {
            return Err(NasError::data(&file, "empty image"));
        }
        let mut chw = vec![0f32; 3 * h * w];
        for (p, px) in img.pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * h * w + p] = px[c] as f32 / 255.0;
            }
        }
        let (rh, rw) = shorter_side_to(h, w, self.resize);
        let resized = resize_bilinear(&chw, 3, (h, w), (rh, rw));
        let mut out = center_crop(&resized, 3, (rh, rw), self.size);
        // The triangle filter's weights are positive and sum to 1; clamp f32 rounding.
        out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        Ok(out)
    }
}

fn split(
    root: &Path,
    dir: &str,
    classes: &[String],
    limit: Option<usize>,
    files: &mut crate::folder::ClassFiles,
    transform: (usize, usize),
) -> Result<Dataset> {
    let list = interleave(files, classes, limit.unwrap_or(usize::MAX));
    if list.is_empty() {
        return Err(NasError::data(root.join(dir), "no JPEG images found"));
    }
    let mut paths = Vec::with_capacity(list.len());
    let mut labels = Vec::with_capacity(list.len());
    for (label, _, entry) in list {
        if let Entry::Path(p) = entry {
            paths.push(p);
            labels.push(label);
        }
    }
    let (resize, size) = transform;
    let ds = Dataset {
        name: "image_folder".into(),
        channels: 3,
        height: size,
        width: size,
        num_classes: classes.len(),
        images: Vec::new(),
        labels,
        files: Some(std::sync::Arc::new(ImageFiles {
            paths,
            resize,
            size,
        })),
    };
    ds.validate_shape(&root.join(dir).display().to_string())?;
    Ok(ds)
}

/// Lists `image_folder` from its untyped params (see [`ImageFolderParams`]). Errors name
/// the key (bad params) or the directory (missing, empty, a test class not in training).
pub fn load_image_folder(params: &serde_json::Value) -> Result<DataSplits> {
    const C: &str = "dataset image_folder";
    let p: ImageFolderParams = decode_params(C, params)?;
    let root = p.root.as_deref().ok_or_else(|| NasError::InvalidParams {
        component: C.into(),
        path: "root".into(),
        message: "required: the directory holding train/ and val/ (ImageNet layout)".into(),
    })?;
    ensure(p.size >= 1, C, "size", "must be >= 1")?;
    let resize = p.resize.unwrap_or(p.size * 256 / 224);
    ensure(
        resize >= p.size,
        C,
        "resize",
        format!("must be >= size ({}), got {resize}", p.size),
    )?;
    for (key, v) in [("limit_train", p.limit_train), ("limit_test", p.limit_test)] {
        ensure(v != Some(0), C, key, "must be >= 1 (or null for all)")?;
    }
    if let Some(s) = p.std {
        ensure(
            s.iter().all(|v| v.is_finite() && *v > 0.0),
            C,
            "std",
            "every value must be > 0",
        )?;
    }
    let root = Path::new(root);
    let mut train = scan_dir(&root.join(&p.train_dir))?;
    let mut test = scan_dir(&root.join(&p.test_dir))?;
    let classes: Vec<String> = train.keys().cloned().collect();
    if classes.is_empty() {
        return Err(NasError::data(
            root.join(&p.train_dir),
            "no class directories found",
        ));
    }
    if let Some(k) = p.classes {
        if k != classes.len() {
            return Err(NasError::InvalidParams {
                component: C.into(),
                path: "classes".into(),
                message: format!(
                    "{k} classes expected, {} found in {}",
                    classes.len(),
                    root.join(&p.train_dir).display()
                ),
            });
        }
    }
    if let Some(extra) = test.keys().find(|k| !train.contains_key(*k)) {
        return Err(NasError::data(
            root.join(&p.test_dir).join(extra),
            format!("class `{extra}` is not among the training classes"),
        ));
    }
    let t = (resize, p.size);
    Ok(DataSplits {
        train: split(root, &p.train_dir, &classes, p.limit_train, &mut train, t)?,
        test: split(root, &p.test_dir, &classes, p.limit_test, &mut test, t)?,
        mean: p.mean.unwrap_or(IMAGENET_MEAN).to_vec(),
        std: p.std.unwrap_or(IMAGENET_STD).to_vec(),
    })
}
