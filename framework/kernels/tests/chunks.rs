//! The chunks of output positions a weight gradient sums over (`nas::reduction_chunks`), which
//! the host build and the CUDA launch share: every position in exactly one chunk, about 32
//! positions per thread of a block, within CUDA's limit on a grid's y.
use nas_kernels::reduction_chunks;

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
