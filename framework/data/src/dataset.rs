//! The data set type (in memory, or streamed from image files) and the train/test pair
//! with its normalisation figures.
use std::borrow::Cow;
use std::sync::Arc;

use nas_core::{NasError, Result};
use serde::{Deserialize, Serialize};

/// A labelled image data set, held in memory or streamed from image files.
///
/// **Invariant** (checked by [`Dataset::validate`], which every loader runs): in memory,
/// `images.len() == labels.len() * channels * height * width` and every pixel lies in
/// `[0, 1]`; streamed (`files` set, `images` empty), one file per label, each decoded to
/// `channels * height * width` values in `[0, 1]`; every label is `< num_classes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Registered name of the data set (`digits`, `cifar10`, ...).
    pub name: String,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// `N * C * H * W` pixels in `[0, 1]`, image after image, channel-major within an image.
    pub images: Vec<f32>,
    /// One label per image, `< num_classes`.
    pub labels: Vec<u32>,
    /// Streamed images (`image_folder`): when set, `images` is empty and image `i` is
    /// decoded from `files` when it is needed ([`Dataset::pixels`]).
    #[serde(skip)]
    pub files: Option<Arc<crate::image_folder::ImageFiles>>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the images are decoded from files on demand.
    pub fn is_streamed(&self) -> bool {
        self.files.is_some()
    }

    /// The pixels of image `i` (`channels * height * width` values in `[0, 1]`): borrowed
    /// from memory, or decoded from its file. Errors name the file or the index.
    pub fn pixels(&self, i: usize) -> Result<Cow<'_, [f32]>> {
        match &self.files {
            Some(f) => Ok(Cow::Owned(f.decode(i)?)),
            None => self.image(i).map(Cow::Borrowed).ok_or_else(|| {
                NasError::data(
                    &self.name,
                    format!("index {i} out of range ({} images)", self.len()),
                )
            }),
        }
    }

    /// The pixels of image `i` held in memory, if it exists (`None` for a streamed set:
    /// see [`Dataset::pixels`]).
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        let n = self.image_len();
        self.images.get(i * n..(i + 1) * n)
    }

    /// Checks the invariant; `source` names the file or data set in the error.
    pub fn validate(&self, source: &str) -> Result<()> {
        self.validate_shape(source)?;
        if let Some(i) = self.images.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(NasError::data(
                source,
                format!("pixel value {} at {i} is outside [0, 1]", self.images[i]),
            ));
        }
        Ok(())
    }

    /// The cheap part of [`Dataset::validate`]: sizes and labels, not the pixel range.
    pub fn validate_shape(&self, source: &str) -> Result<()> {
        let bad = |m: String| Err(NasError::data(source, m));
        if self.image_len() == 0 {
            return bad(format!(
                "image shape {}x{}x{} is empty",
                self.channels, self.height, self.width
            ));
        }
        if let Some(f) = &self.files {
            if f.paths.len() != self.len() || !self.images.is_empty() {
                return bad(format!(
                    "{} image files (and {} values in memory) for {} labels",
                    f.paths.len(),
                    self.images.len(),
                    self.len()
                ));
            }
        } else if self.images.len() != self.len() * self.image_len() {
            return bad(format!(
                "{} pixel values for {} images of {} values",
                self.images.len(),
                self.len(),
                self.image_len()
            ));
        }
        if let Some(i) = self
            .labels
            .iter()
            .position(|&l| l as usize >= self.num_classes)
        {
            return bad(format!(
                "label {} of image {i} is not below the {} classes",
                self.labels[i], self.num_classes
            ));
        }
        Ok(())
    }

    /// Keeps only the first `n` images (no-op when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.image_len());
            if let Some(f) = &mut self.files {
                Arc::make_mut(f).paths.truncate(n);
            }
        }
    }

    /// A new data set of the images at `indices`, in that order; an index out of range is
    /// an error.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(f) = &self.files {
            let files = f.subset(indices).ok_or_else(|| {
                NasError::data(
                    &self.name,
                    format!(
                        "an index of the subset is out of range ({} images)",
                        self.len()
                    ),
                )
            })?;
            return Ok(Dataset {
                labels: indices.iter().map(|&i| self.labels[i]).collect(),
                files: Some(Arc::new(files)),
                ..self.empty_like()
            });
        }
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                NasError::data(
                    &self.name,
                    format!("index {i} out of range ({} images)", self.len()),
                )
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            ..self.empty_like()
        })
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Per-channel mean and (population) standard deviation over every pixel in memory,
    /// accumulated in `f64`. An empty (or streamed) set gives means 0 and deviations 1; a
    /// constant channel gives 1. Streamed sets carry their figures in [`DataSplits`].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        if plane > 0 {
            for img in self.images.chunks_exact(self.image_len().max(1)) {
                for (c, ch) in img.chunks_exact(plane).enumerate() {
                    for &v in ch {
                        sum[c] += v as f64;
                        sq[c] += (v as f64) * (v as f64);
                    }
                }
            }
        }
        let count = (self.len() * plane) as f64;
        let mut mean = Vec::with_capacity(self.channels);
        let mut std = Vec::with_capacity(self.channels);
        for c in 0..self.channels {
            if count == 0.0 {
                mean.push(0.0);
                std.push(1.0);
                continue;
            }
            let m = sum[c] / count;
            let var = (sq[c] / count - m * m).max(0.0);
            mean.push(m as f32);
            std.push(if var > 1e-12 { var.sqrt() as f32 } else { 1.0 });
        }
        (mean, std)
    }

    /// A data set with this one's metadata and no images.
    fn empty_like(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
            images: Vec::new(),
            labels: Vec::new(),
            files: None,
        }
    }
}

/// A data set's training and test parts, with the per-channel normalisation figures that
/// loaders apply (`(x - mean[c]) / std[c]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSplits {
    /// The training part (search splits it further with [`split_indices`](crate::split_indices)).
    pub train: Dataset,
    /// The held-out test part.
    pub test: Dataset,
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
}
