//! Loading a data set by name from an untyped `params` block, and the documentation of
//! every data set for `nas list` / `nas describe`.
use std::path::Path;

use nas_core::params::ensure;
use nas_core::{decode_params, ComponentInfo, ComponentKind, NasError, ParamDoc, Result};
use serde::{Deserialize, Serialize};

use crate::DataSplits;

/// Params shared by every data set. Nothing is ever downloaded: files must be local.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataParams {
    /// Where the files are (a directory, or a `.tar.gz` where supported); `null` means the
    /// data set's default. For `digits`, a CSV file replacing the embedded copy.
    pub root: Option<String>,
    /// Use only the first N training images (for tiny runs); `null` = all.
    pub limit_train: Option<usize>,
    /// Use only the first N test images; `null` = all.
    pub limit_test: Option<usize>,
}

/// A data set's name, summary and default root.
struct Entry {
    name: &'static str,
    summary: &'static str,
    default_root: Option<&'static str>,
    /// `[channels, height, width, classes]` when fixed by the data set.
    shape: Option<[usize; 4]>,
}

const ENTRIES: [Entry; 6] = [
    Entry {
        name: "cifar10",
        summary: "CIFAR-10 (Krizhevsky 2009) from the official binary files: 50000/10000 RGB 32x32, 10 classes",
        default_root: Some("data/cifar-10-batches-bin"),
        shape: Some([3, 32, 32, 10]),
    },
    Entry {
        name: "cifar100",
        summary: "CIFAR-100 (Krizhevsky 2009) from the official binary files, fine labels: 50000/10000 RGB 32x32, 100 classes",
        default_root: Some("data/cifar-100-binary"),
        shape: Some([3, 32, 32, 100]),
    },
    Entry {
        name: "cifar10_folder",
        summary: "CIFAR-10 from root/{train,test}/<class>/*.jpg, a directory or a .tar.gz (classes sorted = official indices)",
        default_root: Some("../shared/data/cifar10-jpg/cifar10-jpg-q75.tar.gz"),
        shape: Some([3, 32, 32, 10]),
    },
    Entry {
        name: "digits",
        summary: "embedded UCI handwritten digits (1797 grey 8x8, 10 classes), fixed stratified 80/20 split",
        default_root: None,
        shape: Some([1, 8, 8, 10]),
    },
    Entry {
        name: "fashion_mnist",
        summary: "Fashion-MNIST (Xiao et al. 2017) from the original idx files: 60000/10000 grey 28x28, 10 classes",
        default_root: Some("/usr/share/datasets/fashion-mnist"),
        shape: Some([1, 28, 28, 10]),
    },
    Entry {
        name: "image_folder",
        summary: "any set in the ImageNet layout root/{train,val}/<class>/*.JPEG, streamed from disk: shorter side resized, centre crop (224 from 256 by default)",
        default_root: None,
        shape: None,
    },
];

/// Registered data set names, sorted.
pub fn dataset_names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

/// Loads the data set `name` (`digits`, `fashion_mnist`, `cifar10`, `cifar100`,
/// `cifar10_folder` with `params` as [`DataParams`]; `image_folder` with
/// [`ImageFolderParams`](crate::image_folder::ImageFolderParams), listed, not decoded). Bad params are
/// [`NasError::InvalidParams`] naming the key, missing or corrupt files
/// [`NasError::Data`] naming the file, an unknown name [`NasError::UnknownComponent`].
pub fn load_dataset(name: &str, params: &serde_json::Value) -> Result<DataSplits> {
    let entry =
        ENTRIES
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| NasError::UnknownComponent {
                kind: ComponentKind::Dataset.to_string(),
                name: name.to_string(),
                known: dataset_names().join(", "),
            })?;
    if entry.name == "image_folder" {
        return crate::image_folder::load_image_folder(params);
    }
    let component = format!("dataset {name}");
    let p: DataParams = decode_params(&component, params)?;
    for (key, v) in [("limit_train", p.limit_train), ("limit_test", p.limit_test)] {
        ensure(
            v != Some(0),
            &component,
            key,
            "must be >= 1 (or null for all)",
        )?;
    }
    let root = p.root.as_deref().or(entry.default_root);
    let (lt, le) = (p.limit_train, p.limit_test);
    let root_path = root.map(Path::new);
    match (name, root_path) {
        ("digits", csv) => crate::digits::load_digits(csv, lt, le),
        ("fashion_mnist", Some(r)) => crate::idx::load_fashion_mnist(r, lt, le),
        ("cifar10", Some(r)) => crate::cifar::load_cifar10(r, lt, le),
        ("cifar100", Some(r)) => crate::cifar::load_cifar100(r, lt, le),
        ("cifar10_folder", Some(r)) => crate::folder::load_cifar10_folder(r, lt, le),
        _ => Err(NasError::Other(format!("dataset {name}: no root"))),
    }
}

/// The `[channels, height, width, classes]` of data set `name` with `params`, when it is
/// known without reading any file: fixed for the built-in sets, from `size` and `classes`
/// for `image_folder` (`None` when `classes` is not given or the name is unknown).
pub fn known_shape(name: &str, params: &serde_json::Value) -> Option<[usize; 4]> {
    let entry = ENTRIES.iter().find(|e| e.name == name)?;
    if entry.name == "image_folder" {
        let p: crate::image_folder::ImageFolderParams =
            decode_params("dataset image_folder", params).ok()?;
        return p.classes.map(|k| [3, p.size, p.size, k]);
    }
    entry.shape
}

/// What `nas list` / `nas describe` show about each data set, sorted by name.
pub fn dataset_infos() -> Vec<ComponentInfo> {
    ENTRIES
        .iter()
        .map(|e| {
            if e.name == "image_folder" {
                return image_folder_info(e);
            }
            let root_doc = match e.default_root {
                Some(_) => "directory of the files (or a .tar.gz of them, for the CIFAR sets); relative paths are taken from the working directory",
                None => "optional CSV file (plain or gzipped) in the digits format, replacing the embedded copy",
            };
            ComponentInfo {
                kind: ComponentKind::Dataset,
                name: e.name.into(),
                summary: e.summary.into(),
                defaults: serde_json::json!({
                    "root": e.default_root,
                    "limit_train": null,
                    "limit_test": null,
                }),
                params: vec![
                    ParamDoc::new("root", root_doc),
                    ParamDoc::new("limit_train", "use only the first N training images (null = all)"),
                    ParamDoc::new("limit_test", "use only the first N test images (null = all)"),
                ],
                origin: "built-in".into(),
            }
        })
        .collect()
}

fn image_folder_info(e: &Entry) -> ComponentInfo {
    let defaults = crate::image_folder::ImageFolderParams::default();
    ComponentInfo {
        kind: ComponentKind::Dataset,
        name: e.name.into(),
        summary: e.summary.into(),
        defaults: serde_json::to_value(defaults).unwrap_or_default(),
        params: vec![
            ParamDoc::new("root", "directory holding train/ and val/ (required)"),
            ParamDoc::new(
                "limit_train",
                "use only the first N training images, class-interleaved (null = all)",
            ),
            ParamDoc::new(
                "limit_test",
                "use only the first N test images (null = all)",
            ),
            ParamDoc::new(
                "classes",
                "expected number of class directories (null = as found); lets a config be checked without the files",
            ),
            ParamDoc::new(
                "size",
                "side of the square centre crop the networks see (224)",
            ),
            ParamDoc::new(
                "resize",
                "shorter side before the crop (null = size * 256 / 224)",
            ),
            ParamDoc::new("train_dir", "training split directory under root (train)"),
            ParamDoc::new("test_dir", "test split directory under root (val)"),
            ParamDoc::new(
                "mean",
                "per-channel mean (null = ImageNet's 0.485, 0.456, 0.406)",
            ),
            ParamDoc::new(
                "std",
                "per-channel std (null = ImageNet's 0.229, 0.224, 0.225)",
            ),
        ],
        origin: "built-in".into(),
    }
}
