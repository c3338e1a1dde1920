//! The one place the smol runtime reads the clocks and OS randomness; everything
//! else gets them from here and passes them into the core as inputs. Keeping them
//! in one file makes them easy to find, and easy to replace in a test build.

use std::time::{Instant, SystemTime};

/// The monotonic time, for every deadline the core computes.
#[must_use]
pub fn now() -> Instant {
    Instant::now()
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
/// When the OS gives no randomness (see `spout_blocking::os::random_bytes`).
#[must_use]
pub fn job_id_bytes() -> [u8; 16] {
    spout_blocking::os::random_bytes()
}

/// A random number for the per-connection `retry` jitter; the core maps it into
/// its ±20 % range.
///
/// # Panics
///
/// When the OS gives no randomness (see `spout_blocking::os::random_bytes`).
#[must_use]
pub fn jitter() -> u32 {
    let bytes = spout_blocking::os::random_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_moves_forward() {
        let a = now();
        let b = now();
        assert!(b >= a);
    }

    #[test]
    fn wall_is_after_2020() {
        let secs = wall()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(secs > 1_577_836_800, "{secs}");
    }

    #[test]
    fn randomness_differs_between_calls() {
        assert_ne!(job_id_bytes(), job_id_bytes());
        // Four draws of 32 bits all equal would mean a broken source.
        let draws = [jitter(), jitter(), jitter(), jitter()];
        assert!(draws.iter().any(|&d| d != draws[0]), "{draws:?}");
    }
}
