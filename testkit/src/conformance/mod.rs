//! The storage conformance suite: the executable contract of
//! [`ConversationStore`].
//!
//! Every backend runs the same plain `async fn` checks (as `object_store`'s backends share
//! one suite). A downstream author of a backend implements [`StoreFactory`] for it and
//! calls [`run_all`] from an integration test:
//!
//! ```no_run
//! use colloquy_testkit::conformance::{self, StoreFactory};
//! use colloquy_storage::{MemoryStore, StoreError};
//!
//! /// Hands out handles on one fresh store; a real backend would open a new database here.
//! struct MyBackend(MemoryStore);
//!
//! #[async_trait::async_trait]
//! impl StoreFactory for MyBackend {
//!     type Store = MemoryStore;
//!     async fn open(&self) -> Result<MemoryStore, StoreError> {
//!         Ok(self.0.clone())
//!     }
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_backend_conforms() {
//!     conformance::run_all(|| async { MyBackend(MemoryStore::new()) }).await.assert_passed();
//! }
//! ```
//!
//! Each check gets a new factory, so checks never see each other's data. Checks return a
//! [`Failure`] instead of panicking, and [`run_all`] runs every check before reporting, so
//! one run lists everything a backend gets wrong.
//!
//! A backend author needs nothing else of this crate: depend on it with
//! `default-features = false` and it compiles the suite alone (no hub, no router, no
//! SQLite, no multi-threaded runtime).
//!
//! **Not yet semver-stable.** Checks are added as the contract is sharpened (issue by
//! issue), and a check's name or fixtures may change between minor versions; pin the exact
//! version in a backend's dev-dependencies.

mod checks;
mod fixtures;

#[cfg(feature = "sqlite")]
use std::path::PathBuf;
use std::{fmt, future::Future, time::Duration};

use async_trait::async_trait;
use colloquy_core::CoreError;
use colloquy_storage::{ConversationStore, MemoryStore, StoreError};
#[cfg(feature = "sqlite")]
use colloquy_storage::{SqliteOptions, SqliteStore};

/// Opens handles on one backing store (a database, a directory, a memory region).
///
/// Every handle opened from the same factory must see the same data, like two processes
/// opening one database: the reopen and two-handle checks rely on it.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The backend under test.
    type Store: ConversationStore;

    /// Opens a new handle on this factory's data.
    async fn open(&self) -> Result<Self::Store, StoreError>;
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(format!("unexpected store error: {e}"))
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Failure(format!("fixture error (a testkit bug): {e}"))
    }
}

/// The result of one check.
pub type CheckResult = Result<(), Failure>;

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err($crate::conformance::Failure(format!($($msg)+)));
        }
    };
}

/// Fails the check unless `left == right`, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err($crate::conformance::Failure(format!(
                "{}\n  got:      {:?}\n  expected: {:?}",
                format!($($msg)+),
                left,
                right
            )));
        }
    }};
}

/// Fails the check unless `result` is an error matching `pattern`.
macro_rules! ensure_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?, $($msg:tt)+) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => {
                return Err($crate::conformance::Failure(format!(
                    "{}: expected {}, got {:?}",
                    format!($($msg)+),
                    stringify!($pattern),
                    other
                )))
            }
        }
    };
}

pub(crate) use {ensure, ensure_eq, ensure_err};

/// What [`run_all`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks that failed, with why.
    pub failed: Vec<(&'static str, Failure)>,
}

impl Report {
    /// Panics with every failure listed unless all checks passed (for use in tests).
    #[allow(clippy::panic)] // Failing the calling test is this method's purpose.
    pub fn assert_passed(&self) {
        if !self.failed.is_empty() {
            let details: Vec<String> = self
                .failed
                .iter()
                .map(|(name, why)| format!("--- {name}\n{why}"))
                .collect();
            panic!(
                "{} of {} conformance checks failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed.len(),
                details.join("\n")
            );
        }
    }
}

/// How long one check may take before it counts as hung (scaled by
/// [`crate::timeout_scale`]).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The one place a check is registered: it is exported, listed in [`CHECKS`] and run by
/// [`run_all`] from here, and `checks/` keeps its functions private to this module, so a
/// check written but not listed is dead code (a lint error) and a unit test compares the
/// list with the functions.
macro_rules! suite {
    ($($name:ident),+ $(,)?) => {
        pub use checks::{$($name),+};

        /// The name of every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),+];

        /// Runs every check, each on a new factory from `make`, and reports them all.
        ///
        /// Call it from a multi-threaded tokio runtime so the concurrency checks really
        /// run in parallel.
        pub async fn run_all<F, Fut>(mut make: impl FnMut() -> Fut) -> Report
        where
            F: StoreFactory,
            Fut: Future<Output = F>,
        {
            let mut report = Report::default();
            let limit = crate::scaled(CHECK_TIMEOUT);
            $(
                let factory = make().await;
                let outcome = match tokio::time::timeout(limit, checks::$name(&factory)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure(format!("did not finish within {limit:?}"))),
                };
                match outcome {
                    Ok(()) => report.passed.push(stringify!($name)),
                    Err(why) => report.failed.push((stringify!($name), why)),
                }
            )+
            report
        }
    };
}

suite!(
    create_then_read_back,
    create_twice_is_already_exists,
    create_with_turns_is_invalid,
    unknown_conversation_reads_nothing,
    append_stores_messages_and_state,
    append_in_several_batches,
    append_is_idempotent_on_message_id,
    turn_collision_is_conflict,
    turn_gap_is_conflict,
    reused_message_id_is_conflict,
    failed_append_writes_nothing,
    append_checks_batch_consistency,
    append_to_unknown_conversation_is_not_found,
    message_ranges,
    content_round_trips_exactly,
    update_stores_state,
    update_unknown_is_not_found,
    stale_update_is_conflict,
    write_from_a_stale_read_is_conflict,
    conflict_then_reload_succeeds,
    an_ended_conversation_is_final,
    mixed_batch_inserts_only_the_new_messages,
    writes_after_close_are_closed,
    failure_reason_round_trips,
    transfer_updates_participant_filter,
    state_changes_are_stored_with_their_writes,
    a_message_is_found_by_its_id,
    list_filters_by_status,
    list_filters_by_participant,
    list_filters_by_start_range,
    list_pages_cover_everything_once,
    search_finds_turns_by_text_newest_first,
    analytics_matches_hand_computed,
    analytics_count_a_module_transferred_out,
    analytics_respects_time_range,
    analytics_of_empty_store_is_zero,
    exchanges_count_answers_by_time_and_requests_without_one,
    prune_removes_only_ended_before,
    ping_answers,
    modules_recorded_and_replaced,
    reopen_finds_everything,
    concurrent_appends_to_100_conversations,
    two_handles_append_concurrently,
    racing_appends_to_one_turn_conflict_cleanly,
    large_batch_append,
    the_context_follows_the_appends_that_change_it,
);

pub mod membership;

/// A [`StoreFactory`] for [`MemoryStore`]: every handle is a clone sharing one store.
#[derive(Debug, Default)]
pub struct MemoryFactory(MemoryStore);

impl MemoryFactory {
    /// A factory over a new, empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StoreFactory for MemoryFactory {
    type Store = MemoryStore;
    async fn open(&self) -> Result<MemoryStore, StoreError> {
        Ok(self.0.clone())
    }
}

#[cfg(feature = "sqlite")]
/// A [`StoreFactory`] for [`SqliteStore`]: every handle is a separate `SqliteStore` (its
/// own writer thread and read pool) on one file in a temporary directory, as two processes
/// would be. The directory is removed when the factory is dropped.
#[derive(Debug)]
pub struct SqliteFactory {
    dir: tempfile::TempDir,
    options: SqliteOptions,
}

#[cfg(feature = "sqlite")]
impl SqliteFactory {
    /// A factory over a new database file with the given options.
    pub fn new(options: SqliteOptions) -> std::io::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
            options,
        })
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("conformance.db")
    }
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl StoreFactory for SqliteFactory {
    type Store = SqliteStore;
    async fn open(&self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(self.path(), self.options.clone()).await
    }
}

/// A [`StoreFactory`] for [`MemoryStore::cluster`](colloquy_storage::MemoryStore::cluster):
/// every handle writes as its own member of one in-memory cluster, on tokio's clock (so a
/// paused clock fences without waiting). What the membership suite runs on in memory.
#[derive(Debug, Clone)]
pub struct MemoryClusterFactory {
    store: colloquy_storage::MemoryStore,
}

impl MemoryClusterFactory {
    /// A factory over a new, empty cluster, whose clock starts now (tokio's).
    pub fn new() -> Self {
        let start = tokio::time::Instant::now();
        Self {
            store: colloquy_storage::MemoryStore::cluster(move || {
                // A plausible wall time that moves with tokio's clock.
                let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                colloquy_core::Timestamp::from_millis(1_767_225_600_000_u64.saturating_add(elapsed))
            }),
        }
    }
}

impl Default for MemoryClusterFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl StoreFactory for MemoryClusterFactory {
    type Store = colloquy_storage::MemoryStore;
    async fn open(&self) -> Result<colloquy_storage::MemoryStore, StoreError> {
        Ok(self.store.handle())
    }
}

#[cfg(feature = "postgres")]
/// A [`StoreFactory`] for [`PostgresStore`](colloquy_storage::PostgresStore): every handle
/// is a separate store (its own pool) on one fresh schema of the database at the URL, as
/// two hubs would be. The schema's name is unique to the factory; it is dropped, with all
/// it holds, when the factory is dropped.
#[derive(Debug)]
pub struct PostgresFactory {
    url: String,
    options: colloquy_storage::PostgresOptions,
}

#[cfg(feature = "postgres")]
impl PostgresFactory {
    /// A factory over a new schema (named `colloquy_test_<unique>`) of the database at
    /// `url`.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let schema = format!(
            "colloquy_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        );
        Ok(Self {
            url: url.to_owned(),
            options: colloquy_storage::PostgresOptions::new()
                .schema(&schema)?
                .pool_size(4),
        })
    }

    /// The schema this factory's stores use.
    pub fn schema(&self) -> &str {
        &self.options.schema
    }
}

#[cfg(feature = "postgres")]
#[async_trait]
impl StoreFactory for PostgresFactory {
    type Store = colloquy_storage::PostgresStore;
    async fn open(&self) -> Result<colloquy_storage::PostgresStore, StoreError> {
        colloquy_storage::PostgresStore::connect(&self.url, self.options.clone()).await
    }
}

#[cfg(feature = "postgres")]
impl Drop for PostgresFactory {
    // A test tool: a schema it could not drop is worth a line on the test's stderr.
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        // Drop runs outside any async context the factory can rely on: a thread of its own,
        // with a runtime of its own, removes the schema.
        let (url, schema) = (self.url.clone(), self.options.schema.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend {
                    backend: "postgres",
                    message: format!("no runtime to drop the schema with: {e}"),
                })?;
            runtime.block_on(colloquy_storage::PostgresStore::drop_schema(&url, &schema))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            // A leftover schema costs disk, not correctness; say so and carry on.
            eprintln!(
                "could not drop the test schema {}: {e}",
                self.options.schema
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every public check in `checks/` is registered in the suite, and every registered
    /// check exists: a check written but left out of [`super::CHECKS`] fails here.
    #[test]
    fn every_check_is_registered_once() {
        let source = concat!(
            include_str!("checks/analytics.rs"),
            include_str!("checks/append.rs"),
            include_str!("checks/concurrency.rs"),
            include_str!("checks/create.rs"),
            include_str!("checks/list.rs"),
            include_str!("checks/maintenance.rs"),
            include_str!("checks/update.rs"),
        );
        let mut defined: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split(['<', '(']).next())
            .collect();
        let mut registered = super::CHECKS.to_vec();
        defined.sort_unstable();
        registered.sort_unstable();
        assert_eq!(defined, registered);
    }
}
