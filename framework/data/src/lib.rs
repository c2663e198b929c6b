//! # nas-data
//!
//! Image data sets read from local files (nothing is downloaded), seeded splits, and
//! reproducible augmented batches.
//!
//! * [`load_dataset`] by name: `digits` (embedded, the default set), `fashion_mnist`
//!   (IDX files), `cifar10` / `cifar100` (official binary files), `cifar10_folder`
//!   (JPEG image folders, or a `.tar.gz` of them), `image_folder` (any set in the ImageNet
//!   layout, streamed from disk: [`image_folder`]); [`dataset_infos`] documents them.
//!   Every missing, corrupt or truncated file is a [`nas_core::NasError::Data`] naming it.
//! * [`split_indices`]: the seeded train/validation split of a search.
//! * [`Loader`]: batches from an index list with [`Augment`] (crop, flip, cutout) and
//!   normalisation, reproducible bit for bit and resumable through [`LoaderState`].
//!
//! ```
//! use std::sync::Arc;
//! use nas_data::{load_dataset, split_indices, Augment, Loader};
//! let data = load_dataset("digits", &serde_json::json!({"limit_train": 100}))?;
//! let (train, _valid) = split_indices(data.train.len(), 0.5, 1)?;
//! let mut loader = Loader::new(Arc::new(data.train), train, 16, true, Augment::none(),
//!                              data.mean, data.std, 1)?;
//! let batch = loader.next_batch()?;
//! assert_eq!((batch.n, batch.images.len()), (16, 16 * 64));
//! # Ok::<(), nas_core::NasError>(())
//! ```
#![deny(missing_docs)]

pub mod augment;
pub mod cifar;
mod dataset;
pub mod digits;
pub mod folder;
pub mod idx;
pub mod image_folder;
mod loader;
mod registry;
pub mod resize;
pub mod source;
mod split;

pub use augment::Augment;
pub use dataset::{DataSplits, Dataset};
pub use loader::{Batch, Loader, LoaderState};
pub use registry::{dataset_infos, dataset_names, known_shape, load_dataset, DataParams};
pub use split::{below, shuffle, split_indices};
