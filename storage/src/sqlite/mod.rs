//! [`SqliteStore`]: the durable backend, on one SQLite file in WAL mode.
//!
//! One write connection, used by one writer at a time, commits everything queued as one
//! transaction (group commit), acknowledging each write only after that commit. When no
//! other write is in progress, the caller commits its own write inline (through
//! `block_in_place`); otherwise the write queues for the writer thread. Reads run
//! on an r2d2 pool of query-only connections, through `block_in_place` on a multi-threaded
//! runtime (the worker hands its other tasks to another thread first, so the runtime never
//! stalls) and `spawn_blocking` elsewhere.

mod checkpointer;
mod group;
mod open;
mod read;
mod rows;
mod schema;
mod turnstile;
mod write;
mod writer;

use open::cannot_open;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, Timestamp};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

pub use schema::SCHEMA_VERSION;

use crate::{
    batch::{check_append, check_create, check_state},
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StatusCounts, StoreError, TimeRange,
};
use writer::Writer;

/// How hard SQLite syncs commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// A commit survives a process crash; after a power loss or OS crash the most recent
    /// commits may be rolled back (never corrupted). The default: fast, one fsync per
    /// checkpoint instead of per commit.
    #[default]
    Normal,
    /// A commit also survives power loss: the log is synced on every (group) commit.
    Full,
}

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Sync level. Default [`Synchronous::Normal`].
    pub synchronous: Synchronous,
    /// How long one SQLite call waits for a lock held by another connection. Default 5 s.
    pub busy_timeout: Duration,
    /// How long the writer keeps retrying to take the write lock before a write fails with
    /// [`StoreError::Busy`]. Default 60 s.
    pub lock_wait: Duration,
    /// Read connections in the pool. Default 4.
    pub read_connections: u32,
    /// Most writes committed in one transaction. Default 1024.
    pub max_batch: usize,
    /// Writes that may wait for the writer before callers wait for room. Default 8192.
    pub queue_capacity: usize,
    /// Prepared statements cached per connection. Default 64.
    pub statement_cache: usize,
    /// Create the file if it does not exist. Default true; inspection tools set false.
    pub create_if_missing: bool,
    /// Size limit in pages (`PRAGMA max_page_count`); writes beyond it fail with
    /// [`StoreError::Full`]. Default none.
    pub max_page_count: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            lock_wait: Duration::from_secs(60),
            read_connections: 4,
            max_batch: 1024,
            queue_capacity: 8192,
            statement_cache: 64,
            create_if_missing: true,
            max_page_count: None,
        }
    }
}

impl SqliteOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the sync level.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Open only an existing file (for inspection tools).
    pub fn existing_only(mut self) -> Self {
        self.create_if_missing = false;
        self
    }

    /// Sets the size limit in pages.
    pub fn max_page_count(mut self, pages: u64) -> Self {
        self.max_page_count = Some(pages);
        self
    }

    /// Sets how long any operation (open, write, read) waits for a lock held by another
    /// process before it fails with [`StoreError::Busy`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Sets how long SQLite itself waits inside one attempt before the store retries (up
    /// to [`lock_wait`](Self::lock_wait) in all).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

/// A [`ConversationStore`] on one SQLite file.
///
/// Clones share the writer and the read pool. Two `SqliteStore`s (in one process or two)
/// may open the same file: their writers take turns on SQLite's write lock, waiting up to
/// [`SqliteOptions::lock_wait`], so "database is locked" never reaches the caller.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use colloquy_storage::{ConversationStore, SqliteStore, SqliteOptions};
/// let dir = tempfile::tempdir()?;
/// let store = SqliteStore::open(dir.path().join("conversations.db"), SqliteOptions::new()).await?;
/// store.ping().await?;
/// assert_eq!(store.modules().await?.len(), 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    site: Arc<Site>,
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// `None` when opened read-only.
    writer: Option<Writer>,
    options: SqliteOptions,
    /// The context last committed for each recently written conversation.
    contexts: crate::committed::CommittedContexts,
    // Dropped last: it only stops after the writer has had its chance to finish.
    _checkpointer: Option<checkpointer::Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.site.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Where errors happen, to name the file in them.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) path: PathBuf,
    pub(crate) busy_timeout: Duration,
    pub(crate) lock_wait: Duration,
}

impl Site {
    fn new(path: &Path, options: &SqliteOptions) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            busy_timeout: options.busy_timeout,
            lock_wait: options.lock_wait,
        })
    }

    /// Runs `op` again while it fails with [`StoreError::Busy`] (SQLite already waited
    /// `busy_timeout` inside each try), until `lock_wait` has passed: every path that can
    /// meet a lock held by another process (opening, migrating, reading) waits as long as
    /// a write does, instead of failing after one `busy_timeout`.
    pub(crate) fn retry_busy<T>(
        &self,
        mut op: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match op() {
                Err(StoreError::Busy { .. }) if started.elapsed() < self.lock_wait => {
                    tracing::debug!(target: "colloquy_storage", path = %self.path.display(), "database busy, waiting");
                    // busy_timeout may be tiny; never spin.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(StoreError::Busy { .. }) => {
                    return Err(StoreError::Busy {
                        waited: started.elapsed(),
                    })
                }
                other => return other,
            }
        }
    }

    /// Maps a rusqlite error into the backend-neutral [`StoreError`].
    pub(crate) fn err(&self, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode as Code;
        let path = self.path.clone();
        if let rusqlite::Error::SqliteFailure(failure, message) = &e {
            let detail = message.clone().unwrap_or_else(|| failure.to_string());
            return match failure.code {
                Code::DatabaseBusy | Code::DatabaseLocked => StoreError::Busy {
                    waited: self.busy_timeout,
                },
                Code::DiskFull => StoreError::Full { detail },
                Code::ReadOnly => StoreError::ReadOnly { path, detail },
                Code::NotADatabase => StoreError::NotADatabase { path, detail },
                Code::DatabaseCorrupt => StoreError::Corrupt {
                    location: format!("database file {}", path.display()),
                    detail,
                },
                Code::CannotOpen => StoreError::Backend {
                    backend: "sqlite",
                    message: cannot_open(&path),
                },
                _ => StoreError::Backend {
                    backend: "sqlite",
                    message: format!("{}: {detail}", path.display()),
                },
            };
        }
        StoreError::Backend {
            backend: "sqlite",
            message: format!("{}: {e}", path.display()),
        }
    }
}

/// Runs blocking SQLite work without stalling the async runtime: on a multi-threaded
/// runtime in place (`block_in_place`), elsewhere on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Backend {
        backend: "sqlite",
        message: "SqliteStore must be used inside a tokio runtime".into(),
    })?;
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        // The worker hands its other tasks to another thread and runs the query itself:
        // no thread wake-up on the request's path, and the runtime keeps making progress.
        return tokio::task::block_in_place(work);
    }
    handle
        .spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!("blocking task failed: {e}"),
        })?
}

impl SqliteStore {
    /// The writer, or [`StoreError::ReadOnly`] for a store opened read-only.
    fn writer(&self) -> Result<&Writer, StoreError> {
        self.inner
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::ReadOnly {
                path: self.inner.site.path.clone(),
                detail: "the store was opened with open_read_only".into(),
            })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.site.path
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// Commits everything queued, then stops the writer: later writes fail with
    /// [`StoreError::Closed`]. Reads keep working. Dropping the last clone does the same
    /// without waiting.
    pub async fn close(&self) -> Result<(), StoreError> {
        match &self.inner.writer {
            Some(writer) => writer.close().await,
            None => Ok(()),
        }
    }

    /// Runs SQLite's `PRAGMA quick_check` and returns the problems it reports (empty when
    /// the file is intact).
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn, site| {
            let mut stmt = conn
                .prepare("PRAGMA quick_check")
                .map_err(|e| site.err(e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| site.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| site.err(e))?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
        .await
    }

    /// Checks, encodes (on the caller's task) and queues one append.
    async fn append_encoded<M: std::borrow::Borrow<Message>>(
        &self,
        conversation: &Conversation,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        check_append(conversation, messages)?;
        let unchanged = self.inner.contexts.holds(conversation);
        let op = write::Append {
            conversation: conversation.id(),
            row: rows::encode_state(conversation, !unchanged)?,
            messages: messages
                .iter()
                .map(|m| {
                    let m = m.borrow();
                    Ok((m.id, m.turn, rows::encode_message(m)?))
                })
                .collect::<Result<_, StoreError>>()?,
        };
        let written = self.writer()?.submit(op).await;
        // A duplicate-only append (nothing inserted) wrote no state, so it proves nothing.
        match &written {
            Ok(outcome) if outcome.inserted == 0 => {}
            _ => self.inner.contexts.note(conversation, &written),
        }
        written
    }

    /// Runs `query` on a pooled read connection off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl Fn(&Connection, &Site) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = inner.pool.get().map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!("no read connection to {}: {e}", inner.site.path.display()),
            })?;
            inner.site.retry_busy(|| query(&conn, &inner.site))
        })
        .await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        check_create(conversation)?;
        let row = rows::encode_conversation(conversation)?;
        let written = self.writer()?.submit(write::Create(row)).await;
        self.inner.contexts.note(conversation, &written);
        written
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        self.append_encoded(conversation, messages).await
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        check_state(conversation)?;
        let op = write::Update {
            conversation: conversation.id(),
            turn_count: conversation.turn_count(),
            row: rows::encode_conversation(conversation)?,
        };
        let written = self.writer()?.submit(op).await;
        self.inner.contexts.note(conversation, &written);
        written
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.read(move |conn, site| read::conversation(conn, site, id))
            .await
    }

    async fn state_changes(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        self.read(move |conn, site| read::state_changes(conn, site, id))
            .await
    }

    async fn message(&self, id: colloquy_core::MessageId) -> Result<Option<Message>, StoreError> {
        self.read(move |conn, site| read::message(conn, site, id))
            .await
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        self.read(move |conn, site| read::messages(conn, site, id, range))
            .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        let filter = filter.clone();
        self.read(move |conn, site| read::list(conn, site, &filter))
            .await
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        self.read(move |conn, site| read::analytics(conn, site, range))
            .await
    }

    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        self.read(move |conn, site| read::exchanges(conn, site, range))
            .await
    }

    async fn search(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        let search = search.clone();
        self.read(move |conn, site| read::search(conn, site, &search))
            .await
    }

    async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.read(read::count_by_status).await
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.writer()?
            .submit(write::Prune {
                ended_before: ended_before.as_millis_i64(),
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn, site| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| site.err(e))
        })
        .await
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        let row = rows::encode_module(module, registered_at)?;
        self.writer()?.submit(write::RecordModule(row)).await
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.read(read::modules).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        SqliteStore::close(self).await
    }
}
