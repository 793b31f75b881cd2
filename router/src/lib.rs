//! Routing one colloquy message, backend-agnostic.
//!
//! [`Router::route`] does, for one message: resolve the conversation (hot cache, else the
//! store) -> take that conversation's turn lock (first come, first served) -> let the pure
//! core accept the draft as the next turn -> persist it (only now is it acknowledged) ->
//! deliver it to the target's handler on its own task, within a deadline -> persist the
//! reply (with its context patch, or the end or transfer the handler asked for) as the
//! next turn -> return both messages. [`Router::open`] runs the handshake,
//! [`Router::apply`] applies state changes under the same lock, [`Router::reap`] times out
//! idle conversations and evicts cold ones, [`Router::shutdown`] drains.
//!
//! # What this crate deliberately does not do
//!
//! - **No knowledge of the storage backend.** It talks to
//!   [`ConversationStore`](colloquy_storage::ConversationStore) and
//!   [`ModuleDirectory`](colloquy_registry::ModuleDirectory) trait objects; its dependency
//!   tree contains no rusqlite (checked in CI).
//! - **No background tasks of its own.** The runtime decides when the reaper runs.
//! - **No unbounded memory.** At most `hot_capacity` conversations (each with its lock and
//!   a bounded history window) stay in memory; a newcomer waits for room rather than grow.
//! - **No retries of failed handlers.** A failure, timeout or panic is reported as a typed
//!   [`RouteError`]; the request stays stored and the conversation usable.

mod cache;
mod clock;
mod error;
mod events;
mod liveness;
mod observe;
mod router;
mod types;

pub use clock::{Clock, IdMinter};
pub use error::RouteError;
pub use events::ConversationEvent;
pub use liveness::WriterLiveness;
pub use observe::{ExchangeOutcome, RouterObserver};
pub use router::Router;
pub use types::{
    Change, ConversationSpec, Exchange, FirstExchange, Opened, ReapReport, RouteOptions,
    RouterConfig, RouterStats, ShutdownReport, StoredHook,
};
