//! Output buffers of the CPU kernels, cleared where they are filled.
//!
//! `vec![0.0; n]` is a `calloc`. Once the allocator reuses memory, as it does from one search
//! step to the next, that is a serial `memset` of the whole buffer on the calling thread while
//! the rayon workers wait (6% of a DARTS step's CPU samples, measured with `perf` on
//! 2026-12-06, all of it on the one thread that runs the graph). The helpers here allocate the
//! buffer without clearing it and hand it to the workers chunk by chunk; each worker zeroes its
//! chunk, in its own cache, right before the kernel fills it. The kernels see exactly what
//! they saw before: a zeroed chunk.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// How a fresh output buffer is cut for the workers: `len` elements in chunks of `chunk`
/// (the last may be shorter), at least `min_chunks` chunks per rayon task, followed by `tail`
/// more elements that are only zeroed (room the caller fills afterwards, e.g. a weight
/// gradient behind the input gradient).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    /// Elements handed to the workers.
    pub len: usize,
    /// Elements per chunk (one plane, one example); 0 means no chunks (all zeros).
    pub chunk: usize,
    /// Chunks per rayon task at least (`with_min_len`).
    pub min_chunks: usize,
    /// Zeroed elements after the `len` handed out.
    pub tail: usize,
}

impl Split {
    /// `len` elements in `chunk`-sized pieces, grouped so one task has about 4k elements of
    /// work (the grouping of [`crate::cpu::par_planes`]), nothing behind.
    pub(crate) fn planes(len: usize, chunk: usize) -> Self {
        Split {
            len,
            chunk,
            min_chunks: crate::cpu::planes_per_task(chunk),
            tail: 0,
        }
    }

    /// `len` elements in `chunk`-sized pieces (one example, typically), as few as one chunk
    /// per rayon task, nothing behind.
    pub(crate) fn chunks(len: usize, chunk: usize) -> Self {
        Split {
            len,
            chunk,
            min_chunks: 1,
            tail: 0,
        }
    }

    /// The same with `tail` zeroed elements behind.
    pub(crate) fn with_tail(self, tail: usize) -> Self {
        Split { tail, ..self }
    }
}

/// Element types of fresh buffers: plain values whose `Default` is zero (`f32`, `f64`, `u32`).
pub(crate) trait Plain: Copy + Default + Send + Sync {}
impl<T: Copy + Default + Send + Sync> Plain for T {}

/// Zeroes `chunk` (fills it with `T::default()`) and returns it as initialised.
fn zeroed<T: Plain>(chunk: &mut [MaybeUninit<T>]) -> &mut [T] {
    chunk.fill(MaybeUninit::new(T::default()));
    // SAFETY: every element was initialised on the line above, and `MaybeUninit<T>` has the
    // layout of `T`.
    unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Allocates `split.len + split.tail` elements without clearing them, runs `body` over the
/// first `split.len` (it returns whether its chunks initialised all of them; if not, they are
/// zeroed here) and returns the buffer once every element is initialised.
///
/// # Safety
///
/// `body` may return `true` only if it initialised every element of the slice it was given.
unsafe fn fresh<T: Plain>(
    split: Split,
    body: impl FnOnce(&mut [MaybeUninit<T>]) -> bool,
) -> Vec<T> {
    let total = split.len + split.tail;
    let mut out: Vec<T> = Vec::with_capacity(total);
    let spare = &mut out.spare_capacity_mut()[..total];
    let (head, tail) = spare.split_at_mut(split.len);
    zeroed(tail);
    if !body(head) {
        zeroed(head);
    }
    // SAFETY: the first `total` elements are initialised: the tail above, the head either
    // above or by `body`, which reported that its chunks covered all of it (the caller's
    // promise).
    unsafe { out.set_len(total) };
    out
}

/// A fresh buffer (see the module doc) filled by `f(state, chunk_index, chunk)` in parallel,
/// `state` made by `init` once per rayon task (scratch space), each chunk zeroed first.
pub(crate) fn par_chunks_zeroed<T: Plain, S>(
    split: Split,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    // SAFETY: `par_chunks_mut` hands out every element of `head` in some chunk, and each
    // chunk is zeroed before `f` sees it; with no chunks the body returns false.
    unsafe {
        fresh(split, |head| {
            if split.chunk == 0 {
                return false;
            }
            head.par_chunks_mut(split.chunk)
                .enumerate()
                .with_min_len(split.min_chunks.max(1))
                .for_each_init(&init, |s, (i, c)| f(s, i, zeroed(c)));
            true
        })
    }
}

/// [`par_chunks_zeroed`] with a second, caller-owned buffer cut alongside: chunk `i` of the
/// fresh buffer comes with `side`'s chunk `i` of `side_chunk` elements (per-example partial
/// weight gradients). With `side_chunk == 0` (an empty weight) the buffer is all zeros and
/// `f` is not run. Panics if `side` has fewer chunks than the fresh buffer: callers size it to
/// match, and a silent mismatch would lose gradients.
pub(crate) fn par_chunks_zeroed_with<T: Plain, U: Send, S>(
    split: Split,
    side: &mut [U],
    side_chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T], &mut [U]) + Sync + Send,
) -> Vec<T> {
    let chunks = split.len.div_ceil(split.chunk.max(1));
    let side_chunks = side.len().div_ceil(side_chunk.max(1));
    assert!(
        side_chunk == 0 || side_chunks >= chunks,
        "side buffer has {side_chunks} < {chunks} chunks"
    );
    // SAFETY: as in `par_chunks_zeroed`; the zip with `side` drops no chunk of `head`, since
    // `side` has at least as many (checked above, else the body returns false).
    unsafe {
        fresh(split, |head| {
            if split.chunk == 0 || side_chunk == 0 || side_chunks < chunks {
                return false;
            }
            head.par_chunks_mut(split.chunk)
                .zip(side.par_chunks_mut(side_chunk))
                .enumerate()
                .with_min_len(split.min_chunks.max(1))
                .for_each_init(&init, |s, (i, (c, sc))| f(s, i, zeroed(c), sc));
            true
        })
    }
}

/// [`par_chunks_zeroed_with`] with a second fresh buffer cut alongside: chunk `i` of the first
/// comes with chunk `i` of the second (`second_chunk` elements each, one per chunk of the
/// first) and chunk `i` of `side`: `f(state, i, first_chunk, second_chunk, side_chunk)`, both
/// fresh chunks zeroed. With any chunk size 0 both buffers are all zeros and `f` is not run.
/// Panics if `side` has fewer chunks than the first buffer (as [`par_chunks_zeroed_with`]).
pub(crate) fn par_chunks_zeroed_two<T: Plain, U: Send, S>(
    split: Split,
    second_chunk: usize,
    side: &mut [U],
    side_chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T], &mut [T], &mut [U]) + Sync + Send,
) -> (Vec<T>, Vec<T>) {
    let chunks = split.len.div_ceil(split.chunk.max(1));
    let side_chunks = side.len().div_ceil(side_chunk.max(1));
    assert!(
        side_chunk == 0 || side_chunks >= chunks,
        "side buffer has {side_chunks} < {chunks} chunks"
    );
    let run = split.chunk > 0 && second_chunk > 0 && side_chunk > 0 && side_chunks >= chunks;
    let second_split = Split {
        len: chunks * second_chunk,
        chunk: second_chunk,
        min_chunks: 1,
        tail: 0,
    };
    let mut first = Vec::new();
    // SAFETY: the second buffer's body reports it initialised only when the zip below ran,
    // which hands out every chunk of both heads (the second has exactly one chunk per chunk
    // of the first, `side` at least as many: checked above), each zeroed before `f` sees it;
    // the first buffer's body likewise.
    let second = unsafe {
        fresh(second_split, |head2| {
            first = fresh(split, |head1| {
                if !run {
                    return false;
                }
                head1
                    .par_chunks_mut(split.chunk)
                    .zip(head2.par_chunks_mut(second_chunk))
                    .zip(side.par_chunks_mut(side_chunk))
                    .enumerate()
                    .with_min_len(split.min_chunks.max(1))
                    .for_each_init(&init, |s, (i, ((c1, c2), sc))| {
                        f(s, i, zeroed(c1), zeroed(c2), sc)
                    });
                true
            });
            run
        })
    };
    (first, second)
}

/// [`par_chunks_zeroed`] over `plane`-sized chunks grouped as [`crate::cpu::par_planes`] groups
/// them, without per-task state: `f(plane_index, zeroed_plane)`.
pub(crate) fn par_planes_zeroed<T: Plain>(
    len: usize,
    plane: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    par_chunks_zeroed(Split::planes(len, plane), || (), |_, p, c| f(p, c))
}

/// `len` zeros, written in parallel blocks on the rayon workers (for buffers the kernels add
/// into).
pub(crate) fn zeros<T: Plain>(len: usize) -> Vec<T> {
    par_chunks_zeroed(Split::planes(len, 1 << 14), || (), |_, _, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element is handed out once, zeroed, with its chunk index; the tail is zero.
    #[test]
    fn chunks_cover_the_buffer_once_and_start_at_zero() {
        for (len, chunk, tail) in [(10, 3, 2), (12, 4, 0), (0, 5, 3), (7, 0, 1), (5, 9, 0)] {
            let split = Split {
                len,
                chunk,
                min_chunks: 1,
                tail,
            };
            let v: Vec<f32> = par_chunks_zeroed(
                split,
                || (),
                |_, i, c| {
                    for (j, x) in c.iter_mut().enumerate() {
                        assert_eq!(*x, 0.0);
                        *x = (i * chunk + j) as f32 + 1.0;
                    }
                },
            );
            assert_eq!(v.len(), len + tail);
            for (k, &x) in v.iter().enumerate() {
                let want = if k < len && chunk > 0 {
                    k as f32 + 1.0
                } else {
                    0.0
                };
                assert_eq!(x, want, "len {len} chunk {chunk} tail {tail} at {k}");
            }
        }
    }

    #[test]
    fn zeros_are_zeros() {
        let z: Vec<u32> = zeros(40_000);
        assert_eq!(z.len(), 40_000);
        assert!(z.iter().all(|&v| v == 0));
    }

    /// Both fresh buffers and the side buffer come in matching chunks, each fresh one zeroed;
    /// a zero chunk size runs nothing and gives zeros.
    #[test]
    fn two_fresh_buffers_pair_their_chunks() {
        let mut side = vec![0u32; 4];
        let (a, b): (Vec<f32>, Vec<f32>) = par_chunks_zeroed_two(
            Split::planes(6, 2).with_tail(1),
            3,
            &mut side,
            1,
            || (),
            |_, i, c1, c2, s| {
                assert!(c1.iter().chain(c2.iter()).all(|&v| v == 0.0));
                c1.fill(i as f32);
                c2.fill(10.0 + i as f32);
                s[0] = i as u32 + 1;
            },
        );
        assert_eq!(a, [0., 0., 1., 1., 2., 2., 0.]);
        assert_eq!(b, [10., 10., 10., 11., 11., 11., 12., 12., 12.]);
        assert_eq!(side, [1, 2, 3, 0]);
        let (a, b): (Vec<f32>, Vec<f32>) = par_chunks_zeroed_two(
            Split::planes(4, 2),
            0,
            &mut side,
            1,
            || (),
            |_, _, _, _, _| panic!("run with an empty chunk"),
        );
        assert_eq!((a, b), (vec![0.0; 4], vec![]));
    }

    /// The side buffer's chunk `i` arrives with the fresh buffer's chunk `i`.
    #[test]
    fn side_chunks_pair_with_the_fresh_chunks() {
        let mut side = vec![0u32; 8];
        let v: Vec<f64> = par_chunks_zeroed_with(
            Split::planes(12, 3).with_tail(1),
            &mut side,
            2,
            || (),
            |_, i, c, s| {
                c.fill(i as f64);
                s.fill(i as u32 * 10);
            },
        );
        assert_eq!(v, [0., 0., 0., 1., 1., 1., 2., 2., 2., 3., 3., 3., 0.]);
        assert_eq!(side, [0, 0, 10, 10, 20, 20, 30, 30]);
    }
}
