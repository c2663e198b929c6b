//! The chunks a block reduction splits its terms into (`nas::reduction_chunks`: a weight
//! gradient's output positions, a batch norm's values of one channel) and the chunks of the
//! pointwise weight gradient (`nas::pw_weight_chunks`), which the host build and the CUDA
//! launch share: every term in exactly one chunk, within CUDA's limit on a grid's y.
use nas_kernels::{pw_weight_chunks, reduction_chunks, weight_chunks};

#[test]
fn every_position_falls_in_exactly_one_chunk() {
    for positions in [
        0,
        1,
        2,
        255,
        8_191,
        8_192,
        8_193,
        65_536,
        1 << 20,
        1 << 31,
        1 << 40,
    ] {
        let (chunks, per) = reduction_chunks(positions);
        let covered = positions.max(1);
        assert!(chunks >= 1 && per >= 1, "{positions}: {chunks} x {per}");
        assert!(
            chunks * per >= covered,
            "{positions}: {chunks} x {per} misses positions"
        );
        assert!(
            (chunks - 1) * per < covered,
            "{positions}: chunk {chunks} is empty"
        );
        assert!(
            chunks <= 65_535,
            "{positions}: {chunks} chunks exceed a grid's y"
        );
    }
}

#[test]
fn chunks_hold_about_32_positions_per_thread() {
    // 256 threads x 32 positions = 8,192 positions a chunk.
    assert_eq!(reduction_chunks(8_192), (1, 8_192));
    assert_eq!(reduction_chunks(8_193), (2, 4_097));
    // A DARTS search batch at 32 x 32: 64 x 1,024 positions -> 8 chunks of 8,192.
    assert_eq!(reduction_chunks(64 * 32 * 32), (8, 8_192));
    // The last cells at 8 x 8: 4,096 positions, one chunk.
    assert_eq!(reduction_chunks(64 * 8 * 8), (1, 4_096));
    // Beyond 65,535 chunks, longer chunks.
    assert_eq!(reduction_chunks(1 << 31).0, 65_535);
    assert_eq!(reduction_chunks(1), (1, 1));
}

#[test]
fn pointwise_chunks_cover_every_position_and_cap_the_partial_sums() {
    for positions in [0, 1, 511, 512, 513, 4_096, 65_536, 1 << 20, 1 << 33] {
        for nw in [1, 256, 4_096, 20_736, 1 << 20] {
            let (chunks, per) = pw_weight_chunks(positions, nw);
            let covered = positions.max(1);
            let what = format!("{positions} positions, {nw} weights: {chunks} x {per}");
            assert!(chunks >= 1 && per >= 1, "{what}");
            assert!(chunks * per >= covered, "{what}: misses positions");
            assert!((chunks - 1) * per < covered, "{what}: an empty chunk");
            assert!(chunks <= 65_535, "{what}: beyond a grid's y");
            assert!(
                chunks == 1 || chunks * nw <= 262_144,
                "{what}: more partial sums than the last block adds"
            );
        }
    }
    // A 16 x 16 weight over a DARTS search batch at 32 x 32: 128 chunks of 512.
    assert_eq!(pw_weight_chunks(64 * 32 * 32, 256), (128, 512));
    // A 144 x 144 retraining weight at 8 x 8, batch 96: capped at 12 chunks of 512.
    assert_eq!(pw_weight_chunks(96 * 8 * 8, 144 * 144), (12, 512));
}

#[test]
fn weight_chunks_cover_every_position_and_cap_the_partial_sums() {
    for positions in [0, 1, 8_191, 8_193, 65_536, 1 << 20, 1 << 31] {
        for nw in [1, 400, 20_736, 589_824, 1 << 30] {
            let (chunks, per) = weight_chunks(positions, nw);
            let covered = positions.max(1);
            let what = format!("{positions} positions, {nw} weights: {chunks} x {per}");
            assert!(chunks >= 1 && per >= 1, "{what}");
            assert!(chunks * per >= covered, "{what}: positions missed");
            assert!((chunks - 1) * per < covered, "{what}: an empty chunk");
            assert!(chunks <= 65_535, "{what}: beyond a grid's y");
            assert!(
                chunks == 1 || chunks * nw <= 262_144,
                "{what}: too many partial sums"
            );
            // Never more chunks than the uncapped reduction's.
            assert!(chunks <= reduction_chunks(positions).0, "{what}");
        }
    }
    // A DARTS search: the depthwise 5x5 over 16 channels keeps reduction_chunks' 8 chunks.
    assert_eq!(
        weight_chunks(64 * 32 * 32, 400),
        reduction_chunks(64 * 32 * 32)
    );
    // A dense 3x3 of 256 channels into 256 at batch 256, 32 x 32: one chunk per element
    // (32 would leave 18.9 M partial sums to one block).
    assert_eq!(weight_chunks(256 * 32 * 32, 589_824), (1, 262_144));
    // 20,736 weights (a dense 3x3 of 48 into 48): at most 12 chunks.
    assert_eq!(weight_chunks(1 << 20, 20_736), (12, 87_382));
}
