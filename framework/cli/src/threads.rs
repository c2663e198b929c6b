//! The threads of a command that computes one experiment (`run`, `train`, `bench`).
//!
//! By default the main thread is not a rayon worker: every parallel kernel (tens of thousands
//! per DARTS step) injects its job into the global pool, wakes the workers and puts the main
//! thread to sleep until they finish, while the serial work between kernels runs on the main
//! thread, one more thread than the pool. Here the main thread joins the pool as worker 0
//! (`use_current_thread`): a kernel splits its work on the main thread's own deque and the
//! other workers steal from it, so fewer threads are woken per kernel and the pool's
//! `RAYON_NUM_THREADS` threads include the one that runs the graph.
//!
//! Only when the pool has at least two threads: a main thread that is the pool's only worker
//! and waits for threads of its own (a user's component might spawn some) would leave their
//! kernels no worker. Commands that run experiments on threads of their own (`sweep`,
//! `family`) keep the default for the same reason.
//!
//! candle's own element-wise pool (its binary ops, e.g. the gradient sums of `backward`)
//! busy-waits 25,000 spin iterations after each op before parking, on a core the kernels
//! need; `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set to [`CANDLE_SPIN_LIMIT`] unless the user set
//! it.

/// candle's spin budget after an op, down from its default 25,000: the kernels between two
/// candle ops take milliseconds, so the pool thread parks instead of spinning through them.
pub(crate) const CANDLE_SPIN_LIMIT: &str = "1000";

/// Shortens candle's pool spin (see the module doc) unless the environment sets it. It writes
/// the process environment: call it before any other thread starts (first thing in `main`).
pub(crate) fn quiet_candle_pool() {
    const KEY: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(KEY).is_none() {
        std::env::set_var(KEY, CANDLE_SPIN_LIMIT);
    }
}

/// The number of threads rayon's global pool will have: `RAYON_NUM_THREADS` when it is a
/// positive number, else the available parallelism (rayon's own rule).
fn pool_size() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Makes the calling thread worker 0 of rayon's global pool when the pool will have at least
/// two threads; false if it did not (one thread, or the pool already exists).
pub(crate) fn join_compute_pool() -> bool {
    pool_size() >= 2
        && rayon::ThreadPoolBuilder::new()
            .use_current_thread()
            .build_global()
            .is_ok()
}
