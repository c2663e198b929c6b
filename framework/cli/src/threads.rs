//! The threads of a command that computes one experiment (`run`, `train`, `bench`).
//!
//! By default the main thread is not a rayon worker: every parallel kernel (tens of thousands
//! per DARTS step) injects its job into the global pool, wakes both workers and puts the main
//! thread to sleep until they finish, and the serial work between kernels runs on a third
//! thread. Here the main thread joins the pool as worker 0 (`use_current_thread`): a kernel
//! splits its work on the main thread's own deque and the other worker steals half, so one
//! thread fewer is woken per kernel and `RAYON_NUM_THREADS` counts every computing thread.
//!
//! Commands that run experiments on threads of their own (`sweep`, `family`) keep the default:
//! a main thread that waits for those threads must not be a worker they need.
//!
//! candle's own element-wise pool (used by its binary ops, e.g. the gradient sums of
//! `backward`) busy-waits 25,000 spin iterations after each op before parking, on a core the
//! kernels need; `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set to [`CANDLE_SPIN_LIMIT`] unless the
//! user set it.

/// candle's spin budget after an op, down from its default 25,000: the kernels between two
/// candle ops take milliseconds, so the pool thread parks instead of spinning through them.
pub(crate) const CANDLE_SPIN_LIMIT: &str = "1000";

/// Shortens candle's pool spin (see the module doc) unless the environment sets it. Call it
/// before any other thread starts: it writes the process environment.
pub(crate) fn quiet_candle_pool() {
    const KEY: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(KEY).is_none() {
        std::env::set_var(KEY, CANDLE_SPIN_LIMIT);
    }
}

/// Makes the calling thread worker 0 of rayon's global pool; false if the pool already
/// exists (then nothing changes).
pub(crate) fn join_compute_pool() -> bool {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .is_ok()
}
