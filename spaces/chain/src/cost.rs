//! Parameters and multiply-accumulates (MACs, the "FLOPs" of the SPOS, ProxylessNAS and
//! FBNet papers) computed from shapes.
//!
//! The convention is the one of the SPOS reference code (`flops.py`, `get_flops`):
//! a convolution costs `k * k * (c_in / groups) * c_out * h_out * w_out`, a linear layer its
//! weight count; batch norm, activations, pooling, additions and biases cost nothing.
//! Parameters count every trainable tensor (convolution weights, batch-norm weight and
//! bias, classifier weight and bias), as `sum(p.numel() for p in model.parameters())`.
use nas_core::Cost;

use crate::Shape;

/// A running sum of parameters and MACs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostSum {
    /// Trainable parameters.
    pub params: usize,
    /// Multiply-accumulates for one example.
    pub macs: usize,
}

impl CostSum {
    /// Adds a `k x k` convolution (no bias) from `input` to `c_out` channels with `stride`
    /// and `groups`, optionally followed by an affine batch norm; returns the output shape.
    pub fn conv(
        &mut self,
        input: Shape,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        bn: bool,
    ) -> Shape {
        let out = input.conv(c_out, k, stride);
        let w = k * k * (input.c / groups.max(1)) * c_out;
        self.params += w + if bn { 2 * c_out } else { 0 };
        self.macs += w * out.area();
        out
    }

    /// Adds a linear layer `c_in -> c_out`, with a bias when `bias`.
    pub fn linear(&mut self, c_in: usize, c_out: usize, bias: bool) {
        self.params += c_in * c_out + if bias { c_out } else { 0 };
        self.macs += c_in * c_out;
    }

    /// Adds another sum.
    pub fn add(&mut self, other: CostSum) {
        self.params += other.params;
        self.macs += other.macs;
    }

    /// As a framework [`Cost`] (no latency).
    pub fn to_cost(self) -> Cost {
        Cost {
            params: self.params as f64,
            flops: self.macs as f64,
            latency_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_linear_costs_by_hand() {
        let mut c = CostSum::default();
        // 3x3 stride-2 stem, 3 -> 16 on 224x224: 432 weights + 32 BN, 432 * 112 * 112 MACs.
        let s = c.conv(Shape::new(3, 224, 224), 16, 3, 2, 1, true);
        assert_eq!(s, Shape::new(16, 112, 112));
        assert_eq!(c.params, 464);
        assert_eq!(c.macs, 432 * 112 * 112);
        // Depthwise 5x5 on 8 channels at 4x4: 200 weights, 200 * 16 MACs.
        let mut d = CostSum::default();
        d.conv(Shape::new(8, 4, 4), 8, 5, 1, 8, false);
        assert_eq!((d.params, d.macs), (200, 3200));
        // Grouped 1x1, 2 groups, 8 -> 6: 8/2 * 6 = 24 weights.
        let mut g = CostSum::default();
        g.conv(Shape::new(8, 2, 2), 6, 1, 1, 2, true);
        assert_eq!((g.params, g.macs), (24 + 12, 96));
        g.linear(10, 3, true);
        assert_eq!(g.params, 36 + 33);
    }
}
