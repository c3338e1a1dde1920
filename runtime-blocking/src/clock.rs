//! The one place the blocking runtime reads the clocks and OS randomness; everything
//! else gets them from here and passes them into the core as inputs. Keeping them
//! in one file makes them easy to find, and easy to replace in a test build.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// The monotonic time, for every deadline the core computes.
#[must_use]
pub fn now() -> Instant {
    Instant::now()
}

/// A fixed instant (the first call's), the same for every caller: the epoch
/// stream deadlines are coalesced from (`spout_core::subscriber::coalesce`).
#[must_use]
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The wall-clock time, only for timestamps shown to people (`started_at`).
#[must_use]
pub fn wall() -> SystemTime {
    SystemTime::now()
}

/// 16 bytes of OS randomness for a new job id.
///
/// # Panics
///
/// When the OS gives no randomness (see `spout_sys::os::random_bytes`).
#[must_use]
pub fn job_id_bytes() -> [u8; 16] {
    spout_sys::os::random_bytes()
}
