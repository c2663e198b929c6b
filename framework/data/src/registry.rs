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
}

const ENTRIES: [Entry; 5] = [
    Entry {
        name: "cifar10",
        summary: "CIFAR-10 (Krizhevsky 2009) from the official binary files: 50000/10000 RGB 32x32, 10 classes",
        default_root: Some("data/cifar-10-batches-bin"),
    },
    Entry {
        name: "cifar100",
        summary: "CIFAR-100 (Krizhevsky 2009) from the official binary files, fine labels: 50000/10000 RGB 32x32, 100 classes",
        default_root: Some("data/cifar-100-binary"),
    },
    Entry {
        name: "cifar10_folder",
        summary: "CIFAR-10 from root/{train,test}/<class>/*.jpg, a directory or a .tar.gz (classes sorted = official indices)",
        default_root: Some("../shared/data/cifar10-jpg/cifar10-jpg-q75.tar.gz"),
    },
    Entry {
        name: "digits",
        summary: "embedded UCI handwritten digits (1797 grey 8x8, 10 classes), fixed stratified 80/20 split",
        default_root: None,
    },
    Entry {
        name: "fashion_mnist",
        summary: "Fashion-MNIST (Xiao et al. 2017) from the original idx files: 60000/10000 grey 28x28, 10 classes",
        default_root: Some("/usr/share/datasets/fashion-mnist"),
    },
];

/// Registered data set names, sorted.
pub fn dataset_names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

/// Loads the data set `name` (`digits`, `fashion_mnist`, `cifar10`, `cifar100`,
/// `cifar10_folder`) with `params` (see [`DataParams`]). Bad params are
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

/// What `nas list` / `nas describe` show about each data set, sorted by name.
pub fn dataset_infos() -> Vec<ComponentInfo> {
    ENTRIES
        .iter()
        .map(|e| {
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
