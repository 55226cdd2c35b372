//! labpipe patch: a process-wide count of the operations dispatched through `Storage` (and zero fills), so a
//! caller can count the device operations a piece of work issues. See LABPIPE-PATCH.md.

use std::sync::atomic::{AtomicU64, Ordering};

static OPS: AtomicU64 = AtomicU64::new(0);

#[inline]
pub(crate) fn bump() {
    OPS.fetch_add(1, Ordering::Relaxed);
}

/// Operations dispatched since the process started or the last [`reset`].
pub fn get() -> u64 {
    OPS.load(Ordering::Relaxed)
}

/// Set the count back to zero.
pub fn reset() {
    OPS.store(0, Ordering::Relaxed);
}
