//! Test support for colloquy, for this workspace and for downstream users.
//!
//! - [`conformance`]: the storage conformance suite every
//!   [`ConversationStore`](colloquy_storage::ConversationStore) backend must pass, with
//!   factories for the built-in backends.
//! - [`timeout_scale`] and [`scaled`]: CI-aware timeouts.
//!
//! # What this crate deliberately does not do
//!
//! - **No sleeps standing in for work and no wall-clock assertions.** Timeouts scale up on
//!   CI so a slow machine cannot fail a correct test; tests that need time use
//!   `tokio::time::pause`.
//! - **No fixed paths or ports.** Files live in temporary directories removed on drop.
//! - **No production use.** Nothing here is needed to run a hub.

pub mod conformance;

use std::time::Duration;

/// The factor by which test timeouts are multiplied: `COLLOQUY_TEST_TIMEOUT_SCALE` if set
/// to a positive number, else 4 when `CI` is set, else 1.
pub fn timeout_scale() -> f64 {
    let explicit = std::env::var("COLLOQUY_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0);
    match explicit {
        Some(scale) => scale,
        None if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => 4.0,
        None => 1.0,
    }
}

/// `base` multiplied by [`timeout_scale`].
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(timeout_scale())
}
