//! Allocator tuning for training processes.
//!
//! A training step frees and reallocates the same large activation and gradient buffers every batch. By
//! default mimalloc hands freed pages back to the OS after a delay, so the next step faults them in again and
//! the kernel zeroes them. `perf` put the kernel's `clear_page_erms` at 14 % of the samples of a SimpleCNN
//! `labpipe bench` with mimalloc's default 1 s delay and at 5.5 % with purging off; in wall time that was
//! 0–10 % more training images/s on a loaded 2-core machine (BENCHMARKS.md). The price is a higher resident
//! peak (SimpleCNN b128: up to +45 MiB).

/// mimalloc v3's `mi_option_purge_delay` (`mi_option_e` in mimalloc.h; the Rust bindings name no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory in the process instead of returning it to the OS, unless the user chose otherwise with
/// `MIMALLOC_PURGE_DELAY`. Takes effect for memory freed from then on; call it first thing in `main`.
pub fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mimalloc's option setters are thread-safe and take any value; -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// mimalloc's current purge delay in milliseconds (-1: never).
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reading an option has no preconditions.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_the_purge_delay_and_keep_freed_pages_turns_purging_off() {
        // v3's documented default (options.c): 1000 ms, unless the environment set another value. This
        // catches a renumbered option enum in a future mimalloc.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                purge_delay_ms(),
                1000,
                "option {MI_OPTION_PURGE_DELAY} is not the purge delay"
            );
            keep_freed_pages();
            assert_eq!(purge_delay_ms(), -1);
        }
    }
}
