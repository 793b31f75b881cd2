//! Durable storage for colloquy: the [`ConversationStore`] trait and its backends.
//!
//! - [`ConversationStore`]: create, append (messages and the new state in one atomic
//!   transaction, idempotent on message id), update, read by turn range, list with filters
//!   and cursors, analytics computed by the backend, prune, ping, module registrations.
//! - [`MemoryStore`]: always available; for tests and hubs that need no durability.
//! - [`SqliteStore`] (feature `sqlite`, on by default): one SQLite file in WAL mode, a
//!   single write connection with group commit, an r2d2 pool of read connections, migrations by
//!   `PRAGMA user_version`.
//! - `PostgresStore` (feature `postgres`): tokio-postgres with a deadpool-postgres pool, in a
//!   schema of its own; migrations in a version table under an advisory lock; appends as
//!   one statement where they can be.
//! - `FaultyStore` (feature `faults`): wraps any store and fails, delays or disconnects it
//!   on command, to test what sits above a store.
//! - [`Membership`]: what a store several hubs share keeps for their cluster, as three
//!   narrow traits ([`Members`], [`Claims`], [`TurnQueue`]), on PostgreSQL and on
//!   [`MemoryStore::cluster`].
//!
//! Every backend must pass the conformance suite in `colloquy-testkit`
//! (`colloquy_testkit::conformance`); that suite, not this crate's examples, is the
//! executable definition of the trait's contract.
//!
//! # What this crate deliberately does not do
//!
//! - **No routing, no delivery, no clock for the model.** Stores persist what the router
//!   decided; timestamps arrive inside the values they are given. The [`TurnQueue`] keeps
//!   turns queued between hubs as rows and wakes their readers; claiming one, running its
//!   module and answering it is the cluster's (`colloquy-cluster`). Liveness is judged on
//!   the database server's clock (or, in memory, the clock the caller gives).
//! - **No caching of conversations.** The runtime holds the hot set; a store always
//!   answers from its durable state.
//! - **No SQL built from values.** Every value is a bound parameter.
//! - **No stalled runtime.** SQLite work runs on the writer thread, in `block_in_place`
//!   (which first hands the worker's other tasks to another thread) or in
//!   `spawn_blocking`; PostgreSQL is async all the way down. Without the `sqlite` and
//!   `postgres` features the crate pulls in no tokio and no database driver, which is how
//!   `colloquy-router` stays backend-agnostic.

mod batch;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod committed;
mod error;
mod exchanges;
#[cfg(feature = "faults")]
mod faults;
mod forward;
mod membership;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod queries;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
mod search;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

pub use error::StoreError;
pub use exchanges::{ExchangeTally, ModuleExchanges, EXCHANGE_BUCKETS_MS};
#[cfg(feature = "faults")]
pub use faults::{Faults, FaultyStore};
pub use membership::{
    Claims, Member, MemberRecord, Members, Membership, QueuedTurn, Signal, TurnQueue, TurnWriter,
};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore, POSTGRES_SCHEMA_VERSION};
pub use search::{SearchHit, TextSearch};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous, SCHEMA_VERSION};
pub use store::{
    Analytics, AnalyticsTally, AppendOutcome, ConversationPage, ConversationStore, ListCursor,
    ListFilter, MessageRange, ModuleActivity, ModuleRecord, StatusCounts, TimeRange, MAX_PAGE,
};
