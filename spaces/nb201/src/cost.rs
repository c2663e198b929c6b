//! Parameters and FLOPs of the benchmark's CIFAR-10 network, split into the part each
//! operation choice adds and the fixed rest.
//!
//! The network is NAS-Bench-201's `TinyNetwork` (AutoDL-Projects,
//! `xautodl/models/cell_infers/tiny_network.py`) with `C = 16`, `N = 5`, 10 classes:
//!
//! * stem: `Conv2d(3, 16, 3, padding 1, bias=False)` + `BatchNorm2d(16)`;
//! * three stages of `N = 5` cells at 16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps;
//! * between stages a `ResNetBasicblock(C, 2C, stride 2)`: `ReLUConvBN(C, 2C, 3, stride 2)`,
//!   `ReLUConvBN(2C, 2C, 3)` and a shortcut `AvgPool2d(2, 2)` + `Conv2d(C, 2C, 1, bias=False)`;
//! * a final `BatchNorm2d(64)` + ReLU, global average pooling and `Linear(64, 10)`.
//!
//! Inside a cell (`xautodl/models/cell_operations.py`), `none` (zero), `skip_connect`
//! (identity) and `avg_pool_3x3` (no preprocessing when the channel counts agree) have no
//! parameters; `nor_conv_kxk` is ReLU-Conv-BN: `k*k*C*C` weights (no bias) plus an affine
//! BN (`2C`). Every parameter is counted, BN running statistics are not.
//!
//! FLOPs are counted the way the benchmark's own counter does
//! (`xautodl/utils/flop_benchmark.py`): multiply-accumulates of convolutions
//! (`k*k*C_in*C_out` per output position) and linear layers (`in*out`, plus `out` for the
//! bias), for one 32x32 input; pooling, BN and ReLU are not counted.
//!
//! The parameter split is checked in the tests against the exact counts of all 15,625
//! cells in the benchmark table.
use nas_core::Cost;

/// Channels of the first stage (`C`).
pub const BASE_CHANNELS: usize = 16;
/// Cells per stage (`N`).
pub const CELLS_PER_STAGE: usize = 5;
/// Input side of CIFAR-10 images.
pub const INPUT_SIDE: usize = 32;
/// Classes of CIFAR-10.
pub const NUM_CLASSES: usize = 10;

/// `(channels, feature-map side)` of the three stages.
fn stages() -> [(usize, usize); 3] {
    [
        (BASE_CHANNELS, INPUT_SIDE),
        (2 * BASE_CHANNELS, INPUT_SIDE / 2),
        (4 * BASE_CHANNELS, INPUT_SIDE / 4),
    ]
}

/// Parameters and MACs of a bias-free `k x k` convolution from `cin` to `cout` channels
/// producing a `side x side` map, plus an affine BN when `bn`.
fn conv(cin: usize, cout: usize, k: usize, side: usize, bn: bool) -> Cost {
    let weights = k * k * cin * cout;
    let bn_params = if bn { 2 * cout } else { 0 };
    Cost {
        params: (weights + bn_params) as f64,
        flops: (weights * side * side) as f64,
        latency_ms: None,
    }
}

/// What choosing `op` on one edge adds to the network, summed over the 15 cells (one edge
/// position in every cell). Unknown names cost nothing.
pub fn op_cost(op: &str) -> Cost {
    let k = match op {
        "nor_conv_1x1" => 1,
        "nor_conv_3x3" => 3,
        _ => return Cost::default(),
    };
    stages().iter().fold(Cost::default(), |acc, &(c, side)| {
        let one = conv(c, c, k, side, true);
        acc.add(&Cost {
            params: one.params * CELLS_PER_STAGE as f64,
            flops: one.flops * CELLS_PER_STAGE as f64,
            latency_ms: None,
        })
    })
}

/// Everything outside the searched cells: stem, the two residual reduction blocks, the
/// final BN and the classifier.
pub fn fixed_cost() -> Cost {
    let mut total = conv(3, BASE_CHANNELS, 3, INPUT_SIDE, true); // stem
    let st = stages();
    for w in st.windows(2) {
        let ((cin, _), (cout, side)) = (w[0], w[1]);
        total = total
            .add(&conv(cin, cout, 3, side, true)) // conv_a, stride 2
            .add(&conv(cout, cout, 3, side, true)) // conv_b
            .add(&conv(cin, cout, 1, side, false)); // shortcut after AvgPool2d(2, 2)
    }
    let (last, _) = st[2];
    let classifier = Cost {
        params: (2 * last + last * NUM_CLASSES + NUM_CLASSES) as f64,
        flops: (last * NUM_CLASSES + NUM_CLASSES) as f64,
        latency_ms: None,
    };
    total.add(&classifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_counts() {
        // conv 1x1: 5 * ((16^2 + 32) + (32^2 + 64) + (64^2 + 128)) = 5 * 5600.
        assert_eq!(op_cost("nor_conv_1x1").params, 28_000.0);
        // conv 3x3: 5 * ((9*16^2 + 32) + (9*32^2 + 64) + (9*64^2 + 128)) = 5 * 48608.
        assert_eq!(op_cost("nor_conv_3x3").params, 243_040.0);
        for op in ["none", "skip_connect", "avg_pool_3x3"] {
            assert_eq!(op_cost(op), Cost::default(), "{op}");
        }
        // stem 432+32, block1 4608+64 + 9216+64 + 512, block2 18432+128 + 36864+128 + 2048,
        // last BN 128, classifier 650.
        assert_eq!(fixed_cost().params, 73_306.0);
        // Each 3x3 conv edge costs 9*C^2*side^2 = 2,359,296 MACs in every stage.
        assert_eq!(op_cost("nor_conv_3x3").flops, 15.0 * 2_359_296.0);
        assert_eq!(op_cost("nor_conv_1x1").flops, 15.0 * 262_144.0);
        // 442368 (stem) + 1179648 + 2359296 + 131072 + 1179648 + 2359296 + 131072 + 650.
        assert_eq!(fixed_cost().flops, 7_783_050.0);
    }
}
