//! Time, behind one seam so that tests can move it.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

/// The wall clock, plus an offset that only a test server may move.
///
/// Thresholds (auto-delete, alerts) and cost accrual read time only through
/// this type, so a test can jump an hour ahead instead of sleeping.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    /// Whether [`Clock::advance`] is allowed; off in production.
    movable: bool,
    /// Whether time stands still but for [`Clock::advance`] (the offset is
    /// then the time itself).
    stopped: bool,
}

impl Clock {
    /// A clock that follows the system time and cannot be moved.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock a test may move forward with [`Clock::advance`].
    pub fn movable() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            movable: true,
            stopped: false,
        }
    }

    /// A clock that reads `at_ms` until a test moves it, for tests that
    /// assert exact times.
    pub fn stopped_at(at_ms: i64) -> Self {
        Self {
            offset_ms: AtomicI64::new(at_ms),
            movable: true,
            stopped: true,
        }
    }

    /// Whether this clock accepts [`Clock::advance`].
    pub fn is_movable(&self) -> bool {
        self.movable
    }

    /// Now, truncated to milliseconds (the precision the store keeps).
    pub fn now(&self) -> DateTime<Utc> {
        from_millis(self.now_ms())
    }

    /// Now in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        if self.stopped {
            return offset;
        }
        Utc::now().timestamp_millis() + offset
    }

    /// Moves the clock forward; refused (false) on a system clock.
    pub fn advance(&self, ms: i64) -> bool {
        if !self.movable || ms < 0 {
            return false;
        }
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        true
    }
}

/// Milliseconds since the epoch to a UTC timestamp.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
