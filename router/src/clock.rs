//! Time and ids for the router: the only places the clock is read.

use std::{
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use colloquy_core::{ConversationId, MessageId, Timestamp};

/// Wall-clock time that advances with tokio's clock.
///
/// The wall time is read once, at creation; after that time advances by
/// `tokio::time::Instant`, so under `tokio::time::pause()` idle timeouts, handler deadlines
/// and the reaper all run on virtual time, instantly and deterministically.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_origin: Timestamp,
    origin: tokio::time::Instant,
}

impl Clock {
    /// Starts at the system's current wall time.
    pub fn system() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, colloquy_core::duration_millis);
        Self::starting_at(Timestamp::from_millis(millis))
    }

    /// Starts at `start` (for reproducible tests).
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            wall_origin: start,
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.wall_origin.saturating_add(self.origin.elapsed())
    }

    /// The monotonic time, for measuring how long something took (tokio's, so that it
    /// stands still while the clock is paused).
    pub fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// How long ago `t` was (zero if it is in the future).
    pub fn since(&self, t: Timestamp) -> Duration {
        self.now().saturating_duration_since(t)
    }
}

/// Mints UUID v7 ids: the clock's time, a per-process random prefix and a counter, so ids
/// are unique across processes sharing a database and ordered within one.
#[derive(Debug)]
pub struct IdMinter {
    prefix: [u8; 3],
    counter: AtomicU64,
}

impl Default for IdMinter {
    fn default() -> Self {
        Self::new()
    }
}

impl IdMinter {
    /// A minter with a random prefix and a random counter start.
    pub fn new() -> Self {
        // std's RandomState is seeded from the OS's randomness; hashing the time on top
        // keeps two minters in one process apart too.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let seed = hasher.finish().to_be_bytes();
        Self {
            prefix: [seed[0], seed[1], seed[2]],
            counter: AtomicU64::new(u64::from_be_bytes([
                0, 0, 0, seed[3], seed[4], seed[5], seed[6], seed[7],
            ])),
        }
    }

    fn bytes(&self) -> [u8; 10] {
        // 56 counter bits land in the UUID's last 7 bytes, which version and variant bits
        // never overwrite; at a billion ids a second the counter lasts two years.
        let c = self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let p = self.prefix;
        [p[0], p[1], p[2], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
    }

    /// A new message id for time `now`.
    pub fn message(&self, now: Timestamp) -> MessageId {
        MessageId::from_parts(now, self.bytes())
    }

    /// A new conversation id for time `now`.
    pub fn conversation(&self, now: Timestamp) -> ConversationId {
        ConversationId::from_parts(now, self.bytes())
    }
}
