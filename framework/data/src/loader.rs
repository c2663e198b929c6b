//! Batches of normalised, optionally augmented images drawn from an index list.
use std::sync::Arc;

use nas_core::params::ensure;
use nas_core::{component_rng, Result};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::{cutout, hflip, pad_crop, Shape};
use crate::split::{below, shuffle};
use crate::{Augment, Dataset};

/// One batch: `n` images, normalised, `N * C * H * W`, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `n * C * H * W` values: `(pixel - mean[c]) / std[c]`, augmented.
    pub images: Vec<f32>,
    /// `n` labels.
    pub labels: Vec<u32>,
    /// Number of images (the last batch of an epoch may be short).
    pub n: usize,
}

/// Where a loader stands, for checkpoints: restoring it continues with the same batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Current epoch.
    pub epoch: usize,
    /// Position within the epoch's order of the next image.
    pub cursor: usize,
}

/// Cycles over `indices` of a data set in batches.
///
/// Reproducible bit for bit: an epoch's order is a function of `(seed, epoch)` (stream
/// `data.loader.shuffle.<epoch>`), and the augmentation of a batch a function of
/// `(seed, epoch, position)` (stream `data.loader.augment.<epoch>.<cursor>`), so a restored
/// [`LoaderState`] continues exactly. `drop_last` is false: the last batch of an epoch
/// may be short; the next call starts the next epoch.
#[derive(Debug, Clone)]
pub struct Loader {
    data: Arc<Dataset>,
    indices: Vec<usize>,
    batch_size: usize,
    shuffle: bool,
    augment: Augment,
    mean: Vec<f32>,
    std: Vec<f32>,
    seed: u64,
    epoch: usize,
    cursor: usize,
    order: Vec<usize>,
}

impl Loader {
    /// A loader over `indices` of `data`, starting at epoch 0. Fails when the data set's
    /// sizes or labels are inconsistent, `indices` is empty or out of range, `batch_size`
    /// is 0, or `mean`/`std` do not have one finite (std: positive) value per channel.
    /// Cheap: the images are shared, not copied or scanned.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: Arc<Dataset>,
        indices: Vec<usize>,
        batch_size: usize,
        shuffle: bool,
        augment: Augment,
        mean: Vec<f32>,
        std: Vec<f32>,
        seed: u64,
    ) -> Result<Self> {
        const C: &str = "data loader";
        data.validate_shape(&data.name)?;
        ensure(batch_size > 0, C, "batch_size", "must be >= 1")?;
        ensure(!indices.is_empty(), C, "indices", "no images to load")?;
        if let Some(&i) = indices.iter().find(|&&i| i >= data.len()) {
            ensure(
                false,
                C,
                "indices",
                format!("index {i} out of range ({} images)", data.len()),
            )?;
        }
        ensure(
            mean.len() == data.channels && mean.iter().all(|m| m.is_finite()),
            C,
            "mean",
            format!("needs {} finite values, got {mean:?}", data.channels),
        )?;
        ensure(
            std.len() == data.channels && std.iter().all(|s| s.is_finite() && *s > 0.0),
            C,
            "std",
            format!("needs {} positive values, got {std:?}", data.channels),
        )?;
        let mut loader = Loader {
            data,
            indices,
            batch_size,
            shuffle,
            augment,
            mean,
            std,
            seed,
            epoch: 0,
            cursor: 0,
            order: Vec::new(),
        };
        loader.start_epoch(0);
        Ok(loader)
    }

    /// Batches per epoch: `ceil(indices / batch_size)`.
    pub fn batches_per_epoch(&self) -> usize {
        self.indices.len().div_ceil(self.batch_size)
    }

    /// Images per epoch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Never true (a loader has at least one index); for symmetry with [`Loader::len`].
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The current epoch.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The data set.
    pub fn data(&self) -> &Arc<Dataset> {
        &self.data
    }

    /// Starts `epoch` from its beginning; its order depends only on `(seed, epoch)`.
    pub fn start_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
        self.cursor = 0;
        self.order = self.indices.clone();
        if self.shuffle {
            let mut rng = component_rng(self.seed, &format!("data.loader.shuffle.{epoch}"));
            shuffle(&mut self.order, &mut rng);
        }
    }

    /// The next batch; at the end of an epoch the next epoch starts (reshuffled). Streamed
    /// images are decoded here, in parallel over the batch; a file that cannot be read or
    /// decoded is an error naming it (the loader has then moved past the batch).
    pub fn next_batch(&mut self) -> Result<Batch> {
        if self.cursor >= self.order.len() {
            self.start_epoch(self.epoch + 1);
        }
        let start = self.cursor;
        let end = (start + self.batch_size).min(self.order.len());
        self.cursor = end;
        let mut rng = component_rng(
            self.seed,
            &format!("data.loader.augment.{}.{start}", self.epoch),
        );
        let d = &*self.data;
        let shape = Shape {
            c: d.channels,
            h: d.height,
            w: d.width,
        };
        let len = d.image_len();
        let n = end - start;
        let picked = &self.order[start..end];
        let decoded: Option<Vec<Vec<f32>>> = if d.is_streamed() {
            Some(
                picked
                    .par_iter()
                    .map(|&i| d.pixels(i).map(|p| p.into_owned()))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let mut images = vec![0f32; n * len];
        let mut labels = Vec::with_capacity(n);
        for (k, &i) in picked.iter().enumerate() {
            let out = &mut images[k * len..(k + 1) * len];
            let src = match &decoded {
                Some(v) => &v[k][..],
                None => &d.images[i * len..(i + 1) * len],
            };
            self.augment_one(src, out, shape, &mut rng);
            labels.push(d.labels[i]);
        }
        Ok(Batch { images, labels, n })
    }

    /// Crop, flip, normalise, cutout: the DARTS order. Draws, in this order and only for
    /// the augmentations enabled: crop offsets `dy`, `dx`; the flip; the cutout centre.
    fn augment_one(&self, src: &[f32], out: &mut [f32], s: Shape, rng: &mut ChaCha8Rng) {
        let a = self.augment;
        if a.crop_padding > 0 {
            let dy = below(rng, 2 * a.crop_padding + 1);
            let dx = below(rng, 2 * a.crop_padding + 1);
            pad_crop(src, s, a.crop_padding, dy, dx, out);
        } else {
            out.copy_from_slice(src);
        }
        if a.hflip && below(rng, 2) == 1 {
            hflip(out, s);
        }
        let plane = s.h * s.w;
        for (c, ch) in out.chunks_exact_mut(plane).enumerate() {
            let (m, sd) = (self.mean[c], self.std[c]);
            for v in ch {
                *v = (*v - m) / sd;
            }
        }
        if a.cutout > 0 {
            let cy = below(rng, s.h);
            let cx = below(rng, s.w);
            cutout(out, s, cy, cx, a.cutout);
        }
    }

    /// Where the loader stands.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            epoch: self.epoch,
            cursor: self.cursor,
        }
    }

    /// Continues from a saved state. A cursor past the end of the epoch (a state saved for
    /// a longer index list) is clamped, so the next batch starts the next epoch.
    pub fn restore(&mut self, s: &LoaderState) {
        self.start_epoch(s.epoch);
        self.cursor = s.cursor.min(self.order.len());
    }
}
