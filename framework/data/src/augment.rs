//! Training-time augmentation of CHW images: random crop with zero padding, horizontal
//! flip, and cutout, as in the DARTS CIFAR pipeline (Liu et al. 2019, reference code
//! `utils._data_transforms_cifar10`: `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`,
//! normalisation, then `Cutout(16)` when enabled).
use serde::{Deserialize, Serialize};

/// Which augmentations a [`Loader`](crate::Loader) applies to each training image.
/// The default is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Zero padding on each side before a random crop back to the original size
    /// (0 = no crop; DARTS: 4).
    pub crop_padding: usize,
    /// Flip horizontally with probability 0.5.
    pub hflip: bool,
    /// Side of the square zeroed by cutout after normalisation (DeVries & Taylor 2017;
    /// 0 = off; DARTS retraining: 16).
    pub cutout: usize,
}

impl Augment {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        Augment::default()
    }

    /// DARTS' CIFAR training augmentation: crop with padding 4, flip, and cutout of side
    /// `cutout` (0 during search, 16 when retraining).
    pub fn darts_cifar(cutout: usize) -> Self {
        Augment {
            crop_padding: 4,
            hflip: true,
            cutout,
        }
    }

    /// True when nothing is applied.
    pub fn is_none(&self) -> bool {
        *self == Augment::default()
    }
}

/// The shape of one image, `channels x height x width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// Crops `img` (CHW) at offset `(dy, dx)` from its zero-padded version (padding `pad` on
/// every side), writing an image of the same size into `out`: `out[y][x] = img[y + dy -
/// pad][x + dx - pad]`, or 0 outside the image. `dy, dx` lie in `0..=2*pad`; `pad` gives
/// the original position.
pub fn pad_crop(img: &[f32], s: Shape, pad: usize, dy: usize, dx: usize, out: &mut [f32]) {
    for c in 0..s.c {
        for y in 0..s.h {
            let sy = (y + dy).wrapping_sub(pad);
            for x in 0..s.w {
                let sx = (x + dx).wrapping_sub(pad);
                out[(c * s.h + y) * s.w + x] = if sy < s.h && sx < s.w {
                    img[(c * s.h + sy) * s.w + sx]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Mirrors `img` (CHW) left to right, in place.
pub fn hflip(img: &mut [f32], s: Shape) {
    for row in img.chunks_exact_mut(s.w).take(s.c * s.h) {
        row.reverse();
    }
}

/// Zeroes, in every channel, the square of side `size` whose top-left corner is
/// `(cy - size/2, cx - size/2)`, clipped at the border (DeVries & Taylor 2017; the DARTS
/// reference code draws the centre uniformly over the image). For even sizes this is
/// exactly the reference's `[cy - size/2, cy + size/2)`.
pub fn cutout(img: &mut [f32], s: Shape, cy: usize, cx: usize, size: usize) {
    let y0 = cy.saturating_sub(size / 2);
    let y1 = (cy + size - size / 2).min(s.h);
    let x0 = cx.saturating_sub(size / 2);
    let x1 = (cx + size - size / 2).min(s.w);
    for c in 0..s.c {
        for y in y0..y1 {
            let row = (c * s.h + y) * s.w;
            img[row + x0..row + x1].fill(0.0);
        }
    }
}
