//! The launch geometry of `csrc/device.cu`'s kernels: how many blocks of how many threads each
//! launch takes, and the limits the kernels are written for.
//!
//! One source for both users: `nas-ops` turns these into cudarc launch configurations on a
//! GPU, and the host emulation of the device build ([`crate::emulated`]) runs the kernels
//! with exactly the same grids and blocks, so the tests of the emulation cover the indexing
//! the GPU will see.

/// Threads per block of every launch of `device.cu`.
pub const THREADS: u32 = 256;

/// Threads per block of the reductions (`NAS_REDUCTION_THREADS` in `nas_kernels.cuh`): the
/// batch-norm, mixing-weight and weight-gradient kernels must be launched with exactly this
/// many.
pub const REDUCTION_THREADS: u32 = 256;

/// The most options one weighted-sum launch takes (`NAS_MAX_OPTIONS` in `device.cu`; the
/// options' pointers travel by value in an array of this size).
pub const MAX_OPTIONS: usize = 32;

/// The most tensors one gather or scatter takes (one grid row each; CUDA's limit on
/// `gridDim.y`).
pub const MAX_SPANS: usize = 65_535;

/// Elements of the weighted sum's backward each block reduces at most (before the cap on the
/// number of chunks).
const MIXED_CHUNK: usize = 4096;

/// The most chunks the weighted sum's backward splits its elements into.
const MAX_MIXED_CHUNKS: usize = 1024;

/// The most blocks of a grid-stride launch (each thread then covers several elements).
const MAX_GRID_STRIDE_BLOCKS: usize = 1 << 16;

/// The most blocks along x of a multi-tensor gather or scatter.
const MAX_SPAN_CHUNKS: usize = 1024;

/// A grid and a block, as CUDA's `gridDim` and `blockDim` (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Blocks along x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block along x, y, z.
    pub block: (u32, u32, u32),
}

/// Grid-stride launch over `total` elements: [`THREADS`] threads a block, at most 65,536
/// blocks (every element kernel: convolutions, pooling, ReLU, the weighted sum's forward).
pub fn elementwise(total: usize) -> Launch {
    let blocks = total
        .div_ceil(THREADS as usize)
        .clamp(1, MAX_GRID_STRIDE_BLOCKS);
    Launch {
        grid: (blocks as u32, 1, 1),
        block: (THREADS, 1, 1),
    }
}

/// The most weight elements one weight-gradient launch takes (a block each along x: CUDA's
/// limit on `gridDim.x`).
pub const MAX_WEIGHT_BLOCKS: usize = (1 << 31) - 1;

/// A weight gradient as block reductions (`conv_bwd_weight`, `fr_bwd_weight`): one block of
/// [`REDUCTION_THREADS`] per weight element (`blockIdx.x`, at most [`MAX_WEIGHT_BLOCKS`]) and
/// chunk of output positions (`blockIdx.y`, [`crate::reduction_chunks`]).
pub fn weight_blocks(nw: usize, chunks: usize) -> Launch {
    Launch {
        grid: (
            nw.clamp(1, MAX_WEIGHT_BLOCKS) as u32,
            chunks.clamp(1, u16::MAX as usize) as u32,
            1,
        ),
        block: (REDUCTION_THREADS, 1, 1),
    }
}

/// The per-channel reductions (`bn_fwd_train`, `bn_bwd_train`): one block of
/// [`REDUCTION_THREADS`] per channel.
pub fn per_channel(c: usize) -> Launch {
    Launch {
        grid: (c as u32, 1, 1),
        block: (REDUCTION_THREADS, 1, 1),
    }
}

/// The side of a pointwise weight gradient's tile (`NAS_PW_TILE` in `nas_kernels.cuh`): a
/// block of `PW_TILE^2` threads per tile.
pub const PW_TILE: usize = 16;

/// The pointwise weight gradient (`pw_bwd_weight`) of a `[cout, cin]` weight over `chunks`
/// chunks of positions ([`crate::pw_weight_chunks`]): a grid of tiles (`cout` / [`PW_TILE`] x
/// `cin` / [`PW_TILE`], rounded up) x chunks of [`PW_TILE`]^2 threads.
pub fn pw_tiles(cout: usize, cin: usize, chunks: usize) -> Launch {
    let tiles = cout.div_ceil(PW_TILE) * cin.div_ceil(PW_TILE);
    Launch {
        grid: (
            tiles.clamp(1, MAX_WEIGHT_BLOCKS) as u32,
            chunks.clamp(1, u16::MAX as usize) as u32,
            1,
        ),
        block: ((PW_TILE * PW_TILE) as u32, 1, 1),
    }
}

/// Bytes of shared memory the fused unit convolution (`unit_conv_fwd`) holds its tile of
/// depthwise outputs in (`NAS_UNIT_SHARED_BYTES` in `nas_kernels.cuh`).
pub const UNIT_SHARED_BYTES: usize = 16_384;

/// Output positions per block of the fused unit convolution at most.
const MAX_UNIT_TILE: usize = 32;

/// Values per thread of a [`THREADS`]-thread block the fused unit convolution aims at in each
/// of its two phases (the tile is `UNIT_WORK / max(channels)` positions, within 1 ..
/// [`MAX_UNIT_TILE`]).
const UNIT_WORK: usize = 2 * THREADS as usize;

/// The separable unit's depthwise and pointwise convolutions in one launch (`unit_conv_fwd`):
/// `Some((launch, tile))` for `c` depthwise channels, `co` pointwise outputs, `positions`
/// output positions per example and `n` examples, with elements of `elem_bytes`: a grid of
/// tiles of `tile` positions x examples of [`THREADS`] threads, the tile chosen so that each
/// thread computes about two values per phase and the tile's `c` depthwise outputs fit in
/// [`UNIT_SHARED_BYTES`]. `None` when they cannot (more channels than the shared memory holds
/// for one position) or `n` exceeds CUDA's 65,535 on `gridDim.y`: the two convolutions are
/// then launched one after the other.
pub fn unit_conv(
    c: usize,
    co: usize,
    positions: usize,
    n: usize,
    elem_bytes: usize,
) -> Option<(Launch, usize)> {
    let capacity = UNIT_SHARED_BYTES / elem_bytes.max(1) / c.max(1);
    let tile = (UNIT_WORK / c.max(co).max(1))
        .clamp(1, MAX_UNIT_TILE)
        .min(capacity)
        .min(positions);
    if tile == 0 || n == 0 || n > u16::MAX as usize {
        return None;
    }
    let tiles = positions.div_ceil(tile);
    if tiles > i32::MAX as usize {
        return None;
    }
    Some((
        Launch {
            grid: (tiles as u32, n as u32, 1),
            block: (THREADS, 1, 1),
        },
        tile,
    ))
}

/// The batch norm over several blocks per channel (`bn_moments`, `bn_grad_sums`): a grid of
/// `chunks` ([`crate::reduction_chunks`] of the channel's values) x `c` channels (at most
/// 65,535: CUDA's limit on `gridDim.y`) of [`REDUCTION_THREADS`].
pub fn channel_chunks(chunks: usize, c: usize) -> Launch {
    Launch {
        grid: (
            chunks.clamp(1, u16::MAX as usize) as u32,
            c.clamp(1, u16::MAX as usize) as u32,
            1,
        ),
        block: (REDUCTION_THREADS, 1, 1),
    }
}

/// How a training batch norm over `m` values per channel and `c` channels is laid out on the
/// GPU: `Some((chunks, values per chunk))` for a grid of chunks x channels ([`channel_chunks`];
/// `bn_moments` + `bn_apply` forward, `bn_grad_sums` + `bn_bwd_apply` backward, two launches
/// each), `None` for one block per channel (`bn_fwd_train`, `bn_bwd_train`, one launch each).
///
/// The chunks are [`crate::reduction_chunks`]' (8,192 values each), or of `chunk_values` values
/// when given (grown when more than 65,535 chunks would be needed, CUDA's limit on
/// `gridDim.x` as [`channel_chunks`] takes it); several blocks per channel when there are
/// `min_chunks` chunks or more (and at most 65,535 channels, the limit on `gridDim.y`).
/// `nas-ops` passes its defaults or the environment's overrides (`NAS_BN_CHUNK`,
/// `NAS_BN_MIN_CHUNKS`; docs/gpu.md).
pub fn bn_chunking(
    m: usize,
    c: usize,
    chunk_values: Option<usize>,
    min_chunks: usize,
) -> Option<(usize, usize)> {
    let (chunks, per) = match chunk_values {
        None => crate::reduction_chunks(m),
        Some(v) => {
            let per = v.max(1).max(m.div_ceil(u16::MAX as usize));
            (m.div_ceil(per).max(1), per)
        }
    };
    (chunks >= min_chunks.max(1) && c <= u16::MAX as usize).then_some((chunks, per))
}

/// A launch-tuning setting from the environment (`var`'s `value`): a positive integer, or an
/// error that names the variable and the value.
pub fn positive_setting(var: &str, value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{var}={value:?}: want a positive integer")),
    }
}

/// A launch-tuning switch from the environment (`var`'s `value`): `0` (off) or `1` (on), or an
/// error that names the variable and the value.
pub fn switch_setting(var: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{var}={value:?}: want 0 or 1")),
    }
}

/// The number of chunks the weighted sum's backward splits `numel` elements into (the partial
/// sums per option that its last block adds).
pub fn mixed_chunks(numel: usize) -> usize {
    numel.div_ceil(MIXED_CHUNK).clamp(1, MAX_MIXED_CHUNKS)
}

/// The weighted sum's backward (`mixed_bwd`) over `numel` elements and `options` options: a
/// grid of [`mixed_chunks`] x options blocks of [`REDUCTION_THREADS`].
pub fn mixed_bwd(numel: usize, options: usize) -> Launch {
    Launch {
        grid: (mixed_chunks(numel) as u32, options as u32, 1),
        block: (REDUCTION_THREADS, 1, 1),
    }
}

/// A multi-tensor gather or scatter over `count` tensors the longest of which has `longest`
/// elements: a grid of chunks x tensors of [`THREADS`] (grid-stride within a tensor).
pub fn over_spans(longest: usize, count: usize) -> Launch {
    Launch {
        grid: (
            longest.div_ceil(THREADS as usize).clamp(1, MAX_SPAN_CHUNKS) as u32,
            count as u32,
            1,
        ),
        block: (THREADS, 1, 1),
    }
}

/// Elements each thread of a multi-tensor reduction sums at least (before the cap on chunks).
const REDUCE_PER_THREAD: usize = 16;

/// The most blocks along x of a multi-tensor reduction.
const MAX_REDUCE_CHUNKS: usize = 64;

/// A multi-tensor reduction (`sum_squares`) over `count` tensors the longest of which has
/// `longest` elements: a grid of chunks x tensors of [`REDUCTION_THREADS`] (`block_sum2`'s
/// size), each thread summing a strided share of at least 16 elements of its tensor, so that
/// few blocks carry partial sums for the last block to add.
pub fn reduce_over_spans(longest: usize, count: usize) -> Launch {
    let per_block = REDUCTION_THREADS as usize * REDUCE_PER_THREAD;
    Launch {
        grid: (
            longest.div_ceil(per_block).clamp(1, MAX_REDUCE_CHUNKS) as u32,
            count as u32,
            1,
        ),
        block: (REDUCTION_THREADS, 1, 1),
    }
}

/// The entry point `nas_<base>_<f32|f64>` of `device.cu`.
pub fn entry(base: &str, f64: bool) -> String {
    format!("nas_{base}_{}", if f64 { "f64" } else { "f32" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_their_elements_within_cuda_limits() {
        assert_eq!(elementwise(0).grid.0, 1);
        assert_eq!(elementwise(257).grid.0, 2);
        assert_eq!(elementwise(usize::MAX / 2).grid.0, 1 << 16);
        assert_eq!(weight_blocks(10, 3).grid, (10, 3, 1));
        assert_eq!(weight_blocks(10, 3).block.0, REDUCTION_THREADS);
        assert_eq!(
            weight_blocks(usize::MAX, 1 << 20).grid,
            (i32::MAX as u32, 65_535, 1)
        );
        assert_eq!(pw_tiles(16, 16, 3).grid, (1, 3, 1));
        assert_eq!(pw_tiles(17, 33, 1).grid, (6, 1, 1));
        assert_eq!(pw_tiles(1, 1, 1).block.0, 256);
        assert_eq!(channel_chunks(5, 16).grid, (5, 16, 1));
        assert_eq!(channel_chunks(5, 16).block.0, REDUCTION_THREADS);
        assert_eq!(mixed_chunks(1), 1);
        assert_eq!(mixed_chunks(4097), 2);
        assert_eq!(mixed_chunks(1 << 40), 1024);
        assert_eq!(over_spans(1 << 30, 5).grid, (1024, 5, 1));
        assert_eq!(reduce_over_spans(4096, 3).grid, (1, 3, 1));
        assert_eq!(reduce_over_spans(4097, 3).grid, (2, 3, 1));
        assert_eq!(reduce_over_spans(1 << 30, 2).grid, (64, 2, 1));
        assert_eq!(reduce_over_spans(1, 1).block.0, REDUCTION_THREADS);
        assert_eq!(entry("relu_fwd", true), "nas_relu_fwd_f64");
    }

    #[test]
    fn the_unit_convolution_tiles_fit_shared_memory_and_cover_every_position() {
        // A DARTS search at batch 64: 16 channels at 32 x 32, 32 at 16 x 16, 64 at 8 x 8.
        let (l, tile) = unit_conv(16, 16, 1024, 64, 4).unwrap();
        assert_eq!((l.grid, l.block.0, tile), ((32, 64, 1), THREADS, 32));
        assert_eq!(unit_conv(32, 32, 256, 64, 4).unwrap().1, 16);
        let (l, tile) = unit_conv(64, 64, 64, 64, 4).unwrap();
        assert_eq!((l.grid, tile), ((8, 64, 1), 8));
        // Fewer positions than a tile; a partial last tile; more outputs than inputs.
        assert_eq!(
            unit_conv(4, 4, 10, 2, 8).unwrap(),
            (
                Launch {
                    grid: (1, 2, 1),
                    block: (THREADS, 1, 1)
                },
                10
            )
        );
        assert_eq!(unit_conv(40, 40, 49, 2, 8).unwrap().0.grid, (5, 2, 1));
        assert_eq!(unit_conv(8, 128, 100, 1, 4).unwrap().1, 4);
        // Shared memory: f64 holds half the channels f32 does.
        for (c, bytes) in [(4096, 4), (2048, 8), (1000, 8), (3, 4)] {
            let (_, tile) = unit_conv(c, c, 1 << 20, 1, bytes).unwrap();
            assert!(
                tile * c * bytes <= UNIT_SHARED_BYTES,
                "{c} x {tile} x {bytes}"
            );
        }
        assert_eq!(unit_conv(4097, 8, 64, 1, 4), None);
        assert_eq!(unit_conv(2049, 8, 64, 1, 8), None);
        assert_eq!(unit_conv(16, 16, 64, 65_536, 4), None);
        assert_eq!(unit_conv(16, 16, 64, 0, 4), None);
        assert_eq!(unit_conv(16, 16, 0, 1, 4), None);
        assert_eq!(UNIT_SHARED_BYTES, crate::host::unit_shared_bytes());
    }

    #[test]
    fn batch_norm_chunking_follows_its_settings() {
        // The default chunks (8,192 values): a DARTS search's first cells at batch 64 and
        // 32 x 32 (65,536 values per channel) split in 8 from 4 chunks up, the 16 x 16 ones
        // (16,384) stay at one block per channel.
        assert_eq!(bn_chunking(65_536, 16, None, 4), Some((8, 8192)));
        assert_eq!(bn_chunking(16_384, 32, None, 4), None);
        assert_eq!(bn_chunking(16_384, 32, None, 2), Some((2, 8192)));
        // Chunks of a given size: the last one shorter, every value in one chunk.
        assert_eq!(bn_chunking(4096, 64, Some(1024), 2), Some((4, 1024)));
        assert_eq!(bn_chunking(4097, 64, Some(1024), 2), Some((5, 1024)));
        assert_eq!(bn_chunking(1000, 64, Some(1024), 2), None);
        assert_eq!(bn_chunking(1000, 64, Some(1024), 1), Some((1, 1024)));
        // Never more than 65,535 chunks or channels; a chunk of 0 is taken as 1.
        let (chunks, per) = bn_chunking(1 << 20, 1, Some(1), 1).unwrap();
        assert!(
            chunks <= 65_535 && chunks * per >= 1 << 20,
            "{chunks} x {per}"
        );
        assert_eq!(bn_chunking(10, 1, Some(0), 1), Some((10, 1)));
        assert_eq!(bn_chunking(1 << 20, 65_536, None, 1), None);
        // A threshold of 0 is taken as 1.
        assert_eq!(bn_chunking(10, 1, Some(5), 0), Some((2, 5)));
    }

    #[test]
    fn switches_are_0_or_1_or_errors_naming_the_variable() {
        assert_eq!(switch_setting("NAS_UNIT_FUSED", "0"), Ok(false));
        assert_eq!(switch_setting("NAS_UNIT_FUSED", " 1\n"), Ok(true));
        for bad in ["", "2", "yes", "on"] {
            let e = switch_setting("NAS_UNIT_FUSED", bad).unwrap_err();
            assert!(e.contains("NAS_UNIT_FUSED=") && e.contains("0 or 1"), "{e}");
        }
    }

    #[test]
    fn settings_are_positive_integers_or_errors_naming_the_variable() {
        assert_eq!(positive_setting("NAS_BN_CHUNK", " 2048 "), Ok(2048));
        for bad in ["0", "-3", "abc", "", "1.5"] {
            let e = positive_setting("NAS_BN_CHUNK", bad).unwrap_err();
            assert!(
                e.contains("NAS_BN_CHUNK=") && e.contains("positive integer"),
                "{e}"
            );
        }
    }
}
