//! Feature-map shapes of one example.
use serde::{Deserialize, Serialize};

/// Channels, height and width of one example's feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Shape {
    /// A shape.
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }

    /// The shape after a `k x k` convolution (or pool) with `stride` and padding `k / 2`
    /// (the "same" padding of every op of these spaces) to `c` channels:
    /// `floor((h + 2 * (k / 2) - k) / stride) + 1`, as PyTorch computes it.
    pub fn conv(&self, c: usize, k: usize, stride: usize) -> Shape {
        let o = |x: usize| (x + 2 * (k / 2) - k) / stride.max(1) + 1;
        Shape {
            c,
            h: o(self.h),
            w: o(self.w),
        }
    }

    /// Pixels per channel.
    pub fn area(&self) -> usize {
        self.h * self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_halves_with_stride_two() {
        // 224 -> 112 (3x3, stride 2, pad 1), 7 -> 4 (odd sizes round up), 1 -> 1.
        let s = Shape::new(3, 224, 7);
        assert_eq!(s.conv(16, 3, 2), Shape::new(16, 112, 4));
        assert_eq!(Shape::new(8, 1, 1).conv(8, 7, 2), Shape::new(8, 1, 1));
        assert_eq!(Shape::new(8, 32, 32).conv(4, 1, 1), Shape::new(4, 32, 32));
    }
}
