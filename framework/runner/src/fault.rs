//! Fault injection for the crash tests (`framework/cli/tests/resume.rs`): the environment
//! variable `NAS_DEBUG_STALL` makes the process stop at a chosen point and sleep until it is
//! killed, so that a test can SIGKILL it at a known place:
//! - `step:N`: after global step `N` (1-based) and its metrics line;
//! - `process_step:N`: after the `N`-th search step of the process, counted over all its
//!   runs (a sweep's runs one after another: which run is stopped, and where);
//! - `retrain_epoch:N`: in a retraining, after epoch `N`'s metrics line (1-based) and before
//!   its checkpoint;
//! - `checkpoint:K`: inside the `K`-th checkpoint write of the process (1-based), after the
//!   previous checkpoint was moved aside and before the new one is renamed into place.
//!
//! Unset (always, outside tests), it costs one cached environment lookup.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static STALL: OnceLock<Option<String>> = OnceLock::new();
static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);
static PROCESS_STEPS: AtomicU64 = AtomicU64::new(0);

/// Counts a search step of the process; stalls at `process_step:N`.
pub(crate) fn count_process_step() {
    let n = PROCESS_STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    stall_at("process_step", n);
}

/// Sleeps forever when `NAS_DEBUG_STALL` is `{kind}:{n}`.
pub(crate) fn stall_at(kind: &str, n: u64) {
    let target = STALL.get_or_init(|| std::env::var("NAS_DEBUG_STALL").ok());
    if target.as_deref() == Some(format!("{kind}:{n}").as_str()) {
        eprintln!("NAS_DEBUG_STALL: stalled at {kind}:{n}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Counts a checkpoint write; returns the hook to run at its fragile moment.
pub(crate) fn checkpoint_hook() -> impl FnOnce() {
    let k = CHECKPOINTS.fetch_add(1, Ordering::SeqCst) + 1;
    move || stall_at("checkpoint", k)
}
