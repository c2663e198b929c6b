//! Opt-in wall-clock accounting per kernel and per phase, for `nas bench --profile`.
//!
//! Per thread and off by default: a [`scope`] then costs one thread-local read. When
//! [`enable`]d on a thread, every kernel of this crate that the thread calls (forward and
//! backward, by its candle op name; a kernel's own parallel work is inside its call) and every
//! phase it marks with [`scope`] adds its elapsed time to the thread's table, which [`take`]
//! returns and clears. Scopes nest (a phase contains the kernels it ran), so the figures are
//! per name, not a partition of the step.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Instant;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static TABLE: RefCell<BTreeMap<&'static str, Entry>> = const { RefCell::new(BTreeMap::new()) };
}

/// Time and calls recorded under one name.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Entry {
    /// Calls.
    pub calls: u64,
    /// Total wall-clock seconds over all calls.
    pub seconds: f64,
}

/// Turns the accounting on or off on this thread.
pub fn enable(on: bool) {
    ENABLED.with(|e| e.set(on));
}

/// Whether the accounting is on on this thread.
pub fn enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// This thread's table so far, by name, and clears it.
pub fn take() -> BTreeMap<&'static str, Entry> {
    TABLE.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// A running measurement; adds its time to `name` when dropped (nothing when disabled).
#[must_use = "the time is recorded when the guard is dropped"]
pub struct Scope {
    start: Option<(&'static str, Instant)>,
}

/// Starts timing `name` until the returned guard is dropped.
pub fn scope(name: &'static str) -> Scope {
    Scope {
        start: enabled().then(|| (name, Instant::now())),
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((name, t)) = self.start {
            let s = t.elapsed().as_secs_f64();
            TABLE.with(|table| {
                let mut table = table.borrow_mut();
                let e = table.entry(name).or_default();
                e.calls += 1;
                e.seconds += s;
            });
        }
    }
}
