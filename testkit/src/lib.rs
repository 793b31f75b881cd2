//! Test support for colloquy, for this workspace and for downstream users.
//!
//! - [`conformance`]: the storage conformance suite every
//!   [`ConversationStore`](colloquy_storage::ConversationStore) backend must pass, with
//!   factories for the built-in backends.
//! - [`TestHub`]: a hub on memory or on a temporary SQLite file removed on drop.
//! - [`modules`]: [`Echo`](modules::Echo), [`Scripted`](modules::Scripted),
//!   [`Slow`](modules::Slow), [`Failing`](modules::Failing),
//!   [`Panicking`](modules::Panicking), [`Silent`](modules::Silent) and
//!   [`Recorder`](modules::Recorder).
//! - [`mock`]: a module whose turns the test receives and answers by hand
//!   ([`MockHandle`], tower-test style), failing the test if a turn is left unexamined.
//! - [`FaultyStore`]: wraps any store and fails, delays or disconnects it on command.
//! - [`timeout_scale`], [`scaled`] and [`eventually`]: CI-aware timeouts and polling.
//! - [`postgres_url`]: the PostgreSQL server a test may use, or why it skips.
//!
//! Features: `hub` (default) brings everything above; without it
//! (`default-features = false`) the crate is the conformance suite alone, for backend
//! authors: no hub, no router, no SQLite, no multi-threaded runtime. `sqlite` adds
//! [`conformance::SqliteFactory`].
//!
//! A downstream test of your own module:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use colloquy_testkit::{TestHub, modules::{Echo, Recorder}};
//! use colloquy_runtime::ConversationSpec;
//!
//! let hub = TestHub::sqlite().await?;              // temp file, removed on drop
//! hub.register(Echo::new("my-module".parse()?)).await?;   // your module here
//! let (client, seen) = Recorder::new("client".parse()?);
//! hub.register(client).await?;
//! let conv = hub.start_conversation(ConversationSpec::between("client", "my-module")?).await?;
//! let exchange = conv.send(serde_json::json!({"ask": 1})).await?;
//! assert_eq!(exchange.reply.unwrap().content, serde_json::json!({"ask": 1}));
//! assert!(seen.is_empty());                         // the client was never addressed
//! # Ok(()) }
//! ```
//!
//! # Paused time is exact
//!
//! Under `#[tokio::test(start_paused = true)]` tokio's clock moves only when the test
//! advances it or when the runtime has nothing to do but wait for a timer. colloquy keeps
//! the second from happening behind your back: the router reads time only from tokio's
//! clock, handlers run as tasks on the same runtime, and every SQLite read and every wait
//! for the SQLite writer runs as a blocking task, during which tokio does not auto-advance a
//! paused clock. So no store operation moves the clock: N instant exchanges leave
//! `tokio::time::Instant::now()` where it was, on memory and on SQLite, with the reaper on
//! (`testkit/tests/promises.rs`). Only your own timers (a [`Slow`](modules::Slow) module,
//! an idle timeout that really elapses) move it.
//!
//! # What this crate deliberately does not do
//!
//! - **No sleeps standing in for work and no wall-clock assertions.** Timeouts scale up on
//!   CI so a slow machine cannot fail a correct test; tests that need time use
//!   `tokio::time::pause`.
//! - **No fixed paths or ports.** Files live in temporary directories removed on drop.
//! - **No production use.** Nothing here is needed to run a hub.

#[cfg(feature = "hub")]
mod cluster;
pub mod conformance;
#[cfg(feature = "hub")]
mod hub;
#[cfg(feature = "hub")]
mod mock;
#[cfg(feature = "hub")]
pub mod modules;

/// The PostgreSQL server for tests, from `COLLOQUY_TEST_POSTGRES`
/// (`postgres://user@host:port/database`); `None`, after printing why, where it is unset, so
/// the test can return early.
///
/// Where `COLLOQUY_REQUIRE_SERVICES` is set (CI sets it), a missing server is not a reason
/// to skip: this panics instead, so a CI run can never pass by skipping.
///
/// ```
/// if let Some(url) = colloquy_testkit::postgres_url() {
///     // run against the server at `url`, in a schema of the test's own
/// #   let _ = url;
/// }
/// ```
#[allow(clippy::panic, clippy::print_stderr)] // failing or explaining the test is the point
pub fn postgres_url() -> Option<String> {
    match std::env::var("COLLOQUY_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_some() => panic!(
            "COLLOQUY_TEST_POSTGRES is not set but COLLOQUY_REQUIRE_SERVICES is: the PostgreSQL tests must run (see .ci/run)"
        ),
        Err(_) => {
            eprintln!(
                "skipped: set COLLOQUY_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run it"
            );
            None
        }
    }
}

#[cfg(feature = "hub")]
pub use cluster::TestCluster;
#[cfg(feature = "hub")]
pub use colloquy_storage::{Faults, FaultyStore};
#[cfg(feature = "hub")]
pub use hub::TestHub;
#[cfg(feature = "hub")]
pub use mock::{mock, MockHandle, MockModule, PendingTurn};

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

/// Polls `condition` until it is true or `timeout` (scaled by [`timeout_scale`]) passes on
/// tokio's clock. Returns whether it became true. Use it for effects of background tasks
/// (the reaper); under `tokio::time::pause` the waiting takes no real time.
pub async fn eventually<F, Fut>(mut condition: F, timeout: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + scaled(timeout);
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
