//! Image resizing with Pillow's antialiased bilinear resampling (`Image.resize(...,
//! BILINEAR)`, the filter torchvision's `Resize` uses on PIL images), and the centre crop of
//! torchvision's `CenterCrop`.
//!
//! The resampling is separable, rows then columns. For an output coordinate `x` the input
//! centre is `c = (x + 0.5) * scale` with `scale = in / out`; the filter is the triangle
//! `max(0, 1 - |t|)` stretched by `f = max(scale, 1)` (so a downscale averages over the
//! whole footprint, the antialiasing), its taps are the input pixels `j` in
//! `[trunc(c - f + 0.5), trunc(c + f + 0.5))` clipped to the image, weighted
//! `tri((j - c + 0.5) / f)` and normalised to sum 1 (Pillow `libImaging/Resample.c`,
//! `precompute_coeffs`). Difference: Pillow rounds to 8 bits after each pass; here the
//! values stay `f32` throughout.

/// The taps of one output coordinate: first input index and normalised weights.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// Pillow's coefficients for resampling `in_size` samples to `out_size` (see the module doc).
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let f = scale.max(1.0);
    (0..out_size)
        .map(|x| {
            let c = (x as f64 + 0.5) * scale;
            let lo = ((c - f + 0.5) as i64).max(0) as usize;
            let hi = ((c + f + 0.5) as i64).min(in_size as i64).max(lo as i64) as usize;
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 - c + 0.5) / f).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            Taps {
                first: lo,
                weights: w.into_iter().map(|v| v as f32).collect(),
            }
        })
        .collect()
}

/// Resizes a `channels x h x w` image (CHW) to `channels x out_h x out_w`.
pub fn resize_bilinear(
    img: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    let cx = coefficients(w, out_w);
    let cy = coefficients(h, out_h);
    // Rows first: channels x h x out_w.
    let mut mid = vec![0f32; channels * h * out_w];
    for c in 0..channels {
        for y in 0..h {
            let row = &img[(c * h + y) * w..(c * h + y + 1) * w];
            let out = &mut mid[(c * h + y) * out_w..(c * h + y + 1) * out_w];
            for (o, t) in out.iter_mut().zip(&cx) {
                *o = t
                    .weights
                    .iter()
                    .zip(&row[t.first..])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
    }
    // Then columns.
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        let plane = &mid[c * h * out_w..(c + 1) * h * out_w];
        for (y, t) in cy.iter().enumerate() {
            let dst = &mut out[(c * out_h + y) * out_w..(c * out_h + y + 1) * out_w];
            for (k, wgt) in t.weights.iter().enumerate() {
                let src = &plane[(t.first + k) * out_w..(t.first + k + 1) * out_w];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += wgt * s;
                }
            }
        }
    }
    out
}

/// The size whose shorter side is `short` with the aspect ratio of `(h, w)` kept
/// (torchvision `Resize(int)`: the longer side is `int(short * long / shorter)`).
pub fn shorter_side_to(h: usize, w: usize, short: usize) -> (usize, usize) {
    if h <= w {
        (short, (short as f64 * w as f64 / h as f64) as usize)
    } else {
        ((short as f64 * h as f64 / w as f64) as usize, short)
    }
}

/// The centre `size x size` crop of a CHW image (torchvision `CenterCrop`: top
/// `int(round((h - size) / 2))` with Python's round-half-to-even, left likewise). The image
/// must be at least `size` on each side.
pub fn center_crop(img: &[f32], channels: usize, (h, w): (usize, usize), size: usize) -> Vec<f32> {
    let top = ((h - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w - size) as f64 / 2.0).round_ties_even() as usize;
    let mut out = Vec::with_capacity(channels * size * size);
    for c in 0..channels {
        for y in top..top + size {
            let row = (c * h + y) * w;
            out.extend_from_slice(&img[row + left..row + left + size]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_four_samples_matches_the_hand_computed_triangle_weights() {
        // scale 2, filter support 2: output 0 has centre 1 and taps 0, 1, 2 with weights
        // tri(-0.25), tri(0.25), tri(0.75) = 0.75, 0.75, 0.25; output 1 is its mirror.
        let row = [1.0f32, 2.0, 4.0, 8.0];
        let out = resize_bilinear(&row, 1, (1, 4), (1, 2));
        let want0 = (0.75 * 1.0 + 0.75 * 2.0 + 0.25 * 4.0) / 1.75;
        let want1 = (0.25 * 2.0 + 0.75 * 4.0 + 0.75 * 8.0) / 1.75;
        assert!((out[0] - want0).abs() < 1e-6, "{out:?}");
        assert!((out[1] - want1).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn upscaling_interpolates_linearly_and_constants_stay_constant() {
        // Upscale x2 of a ramp: interior outputs lie on the ramp (bilinear interpolation
        // at centres (x + 0.5) / 2 - 0.5 in input pixel units).
        let ramp: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let out = resize_bilinear(&ramp, 1, (1, 8), (1, 16));
        for (x, v) in out.iter().enumerate().take(15).skip(1) {
            let want = (x as f32 + 0.5) / 2.0 - 0.5;
            assert!((v - want).abs() < 1e-5, "x {x}: {v} vs {want}");
        }
        let flat = vec![0.3f32; 2 * 7 * 5];
        for v in resize_bilinear(&flat, 2, (7, 5), (3, 9)) {
            assert!((v - 0.3).abs() < 1e-6);
        }
    }

    #[test]
    fn shorter_side_and_centre_crop_follow_torchvision() {
        assert_eq!(shorter_side_to(375, 500, 256), (256, 341));
        assert_eq!(shorter_side_to(500, 375, 256), (341, 256));
        // 1 x 4 x 5 image of its indices; crop 3: top = Python's round(0.5) = 0 (half to
        // even), left = round(1.0) = 1.
        let img: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let c = center_crop(&img, 1, (4, 5), 3);
        assert_eq!(c, vec![1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 11.0, 12.0, 13.0]);
    }
}
