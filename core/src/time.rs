//! [`Timestamp`]: a point in time handed in by the caller. Core never reads a clock.

use std::{fmt, time::Duration};

/// Milliseconds since the Unix epoch, supplied by the caller (core never reads a clock).
///
/// Values are kept within `0..=i64::MAX` so that every timestamp fits a signed 64-bit
/// column; larger inputs are clamped (that is about 292 million years from now).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(from = "u64", into = "u64")]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(i64::MAX as u64);

    /// A timestamp `millis` milliseconds after the epoch (clamped to [`Timestamp::MAX`]).
    pub const fn from_millis(millis: u64) -> Self {
        if millis > Self::MAX.0 {
            Self::MAX
        } else {
            Self(millis)
        }
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch as a signed integer (always non-negative).
    pub const fn as_millis_i64(self) -> i64 {
        // from_millis keeps the value <= i64::MAX, so this cast is lossless.
        self.0 as i64
    }

    /// This time plus `duration`, clamped to [`Timestamp::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self::from_millis(self.0.saturating_add(duration_millis(duration)))
    }

    /// This time minus `duration`, clamped to the epoch.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(duration)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in whole milliseconds, clamped to `i64::MAX` so that it fits a signed
/// 64-bit column (that is still about 292 million years).
pub fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).map_or(Timestamp::MAX.0, |ms| ms.min(Timestamp::MAX.0))
}

impl From<u64> for Timestamp {
    fn from(millis: u64) -> Self {
        Self::from_millis(millis)
    }
}

impl From<Timestamp> for u64 {
    fn from(t: Timestamp) -> u64 {
        t.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
