//! The process's allocator policy: keep freed memory for reuse instead of handing it back to
//! the operating system after every step.
//!
//! A search step allocates and frees gigabytes of activations (peak RSS 6.7 GB for the DARTS
//! search network at batch 64). With glibc's defaults, buffers above the (dynamic) mmap
//! threshold are mapped and unmapped one by one and the heap's free top is trimmed, so each
//! step faults its activations in again and the kernel clears every page: 3.7 M minor faults
//! for warm-up and two steps, `clear_page_erms` 30% of the CPU samples (`perf`, 2026-12-06).
//! With the threshold fixed at its maximum (32 MiB; larger buffers are still mapped) and no
//! trimming, the heap keeps its pages: 1.78 M faults, the first touch of the peak only. The
//! kernels then clear their outputs themselves, in parallel (`nas-ops`' `fresh` module),
//! instead of `calloc` on the calling thread. PyTorch's CUDA caching allocator keeps memory
//! for the same reason.
//!
//! Nothing is changed where the user tuned glibc's allocator (`GLIBC_TUNABLES` naming
//! `glibc.malloc`) or set `NAS_RETAIN_MEMORY=0`, nor on other C libraries or 32-bit targets.

/// The largest mmap threshold glibc accepts on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;

/// Whether the environment leaves the allocator policy to us.
fn policy_wanted(tunables: Option<&str>, retain: Option<&str>) -> bool {
    let user_tuned = tunables.is_some_and(|t| t.contains("glibc.malloc"));
    let opted_out = retain.is_some_and(|v| matches!(v.trim(), "0" | "false" | "no" | "off"));
    !user_tuned && !opted_out
}

/// Applies the policy (see the module doc) once, at the start of the process; returns whether
/// it did.
pub(crate) fn retain_freed_memory() -> bool {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let retain = std::env::var("NAS_RETAIN_MEMORY").ok();
    if !policy_wanted(tunables.as_deref(), retain.as_deref()) {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn apply() -> bool {
    // SAFETY: `mallopt` only sets allocator parameters; it is safe to call at any time. A trim
    // threshold of -1 turns trimming off (`man mallopt`).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::policy_wanted;

    #[test]
    fn the_users_allocator_settings_win() {
        assert!(policy_wanted(None, None));
        assert!(policy_wanted(Some("glibc.rtld.nns=2"), Some("1")));
        assert!(!policy_wanted(Some("glibc.malloc.arena_max=1"), None));
        assert!(!policy_wanted(None, Some("0")));
        assert!(!policy_wanted(None, Some(" off")));
    }
}
