//! [`PostgresStore`]: the PostgreSQL backend (feature `postgres`).
//!
//! tokio-postgres with a deadpool-postgres pool; everything in one schema of the store's
//! own (default `colloquy`), created and migrated at open under an advisory lock. Each
//! write is one statement where it can be: an append that continues the stored turns is a
//! single `WITH ... UPDATE ... RETURNING` feeding the messages' `INSERT` (the conversation
//! row's version compared and set in the same statement); anything else (a retried
//! append, a conflict, a missing conversation) falls back to a transaction that locks the
//! conversation row and decides with the same rules as every backend (`batch.rs`).
//!
//! Connection loss is normal operation: a dead connection is dropped by the pool and
//! replaced; the call that saw it die gets [`StoreError::Unavailable`] (retryable; an
//! append whose commit was sent before the connection died is resolved on retry by its
//! message ids, never by a duplicate turn).

mod listen;
mod membership;
mod named;
mod read;
mod rows;
mod schema;
mod write;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, Timestamp};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{error::SqlState, NoTls};

use self::rows::{decode_message, MESSAGE_COLUMNS};
pub use self::schema::POSTGRES_SCHEMA_VERSION;
use crate::{
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StatusCounts, StoreError, TimeRange,
};

/// Settings of a [`PostgresStore`].
///
/// ```
/// use colloquy_storage::PostgresOptions;
/// use std::time::Duration;
/// let options = PostgresOptions::new()
///     .schema("colloquy_staging")?
///     .pool_size(32)
///     .statement_timeout(Duration::from_secs(10));
/// assert_eq!(options.schema, "colloquy_staging");
/// # Ok::<(), colloquy_storage::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema that holds the store's tables (created if missing). Default `colloquy`.
    pub schema: String,
    /// Most connections open at once. Default 16.
    pub pool_size: usize,
    /// Longest a statement may run before the server cancels it
    /// ([`StoreError::StatementTimeout`]). Default 30 s.
    pub statement_timeout: Duration,
    /// Longest a statement waits for a row lock another session holds
    /// ([`StoreError::Busy`]). Default 10 s.
    pub lock_timeout: Duration,
    /// Longest a new connection may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Create the schema and its tables when they are missing (default). Without it a
    /// missing schema is [`StoreError::DatabaseMissing`] and nothing is created.
    pub create_if_missing: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "colloquy".into(),
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            create_if_missing: true,
        }
    }
}

impl PostgresOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the tables in `schema`: a plain identifier (lowercase letters, digits and
    /// `_`, not starting with a digit, at most 63 bytes).
    pub fn schema(mut self, schema: &str) -> Result<Self, StoreError> {
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::InvalidInput {
                reason: format!(
                    "schema name {schema:?} is not a plain identifier: use lowercase letters, digits and _ (at most 63, not starting with a digit)"
                ),
            });
        }
        self.schema = schema.to_owned();
        Ok(self)
    }

    /// At most `size` connections at once (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Cancels statements that run longer than `limit`.
    pub fn statement_timeout(mut self, limit: Duration) -> Self {
        self.statement_timeout = limit;
        self
    }

    /// Opens only a schema colloquy already made: nothing is created.
    pub fn existing_only(mut self) -> Self {
        self.create_if_missing = false;
        self
    }

    /// Gives up waiting for a row lock after `limit`.
    pub fn lock_timeout(mut self, limit: Duration) -> Self {
        self.lock_timeout = limit;
        self
    }
}

/// The server the store talks to: its address for messages, and how its errors map.
#[derive(Debug)]
pub(crate) struct Server {
    /// `host:port/database`, without credentials.
    pub(crate) address: String,
    statement_timeout: Duration,
    lock_timeout: Duration,
}

impl Server {
    /// Maps a driver error into the semantic variants every backend shares.
    pub(crate) fn err(&self, e: tokio_postgres::Error) -> StoreError {
        if let Some(code) = e.code() {
            let detail = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned());
            return match *code {
                SqlState::QUERY_CANCELED => StoreError::StatementTimeout {
                    limit: self.statement_timeout,
                },
                SqlState::LOCK_NOT_AVAILABLE => StoreError::Busy {
                    waited: self.lock_timeout,
                },
                SqlState::DISK_FULL | SqlState::OUT_OF_MEMORY => StoreError::Full { detail },
                SqlState::UNTRANSLATABLE_CHARACTER
                | SqlState::CHARACTER_NOT_IN_REPERTOIRE
                | SqlState::INVALID_TEXT_REPRESENTATION
                | SqlState::NUMERIC_VALUE_OUT_OF_RANGE => StoreError::InvalidInput {
                    reason: format!("PostgreSQL refused a value: {detail}"),
                },
                SqlState::ADMIN_SHUTDOWN
                | SqlState::CRASH_SHUTDOWN
                | SqlState::CANNOT_CONNECT_NOW
                | SqlState::CONNECTION_EXCEPTION
                | SqlState::CONNECTION_FAILURE
                | SqlState::CONNECTION_DOES_NOT_EXIST
                | SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
                | SqlState::TOO_MANY_CONNECTIONS => StoreError::Unavailable {
                    backend: "postgres",
                    detail: format!("{} at {}", detail, self.address),
                },
                _ => StoreError::Backend {
                    backend: "postgres",
                    message: format!("{detail} (SQLSTATE {})", code.code()),
                },
            };
        }
        // No SQLSTATE: the connection itself failed (refused, reset, closed mid-call), or
        // a value could not be encoded or decoded on this side.
        let connection = e.is_closed()
            || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if connection {
            StoreError::Unavailable {
                backend: "postgres",
                detail: format!("{e} ({})", self.address),
            }
        } else {
            StoreError::Backend {
                backend: "postgres",
                message: e.to_string(),
            }
        }
    }

    fn pool_err(&self, e: deadpool_postgres::PoolError) -> StoreError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => self.err(e),
            other => StoreError::Unavailable {
                backend: "postgres",
                detail: format!("no connection to {}: {other}", self.address),
            },
        }
    }
}

/// The PostgreSQL backend. Cloning is cheap: clones share the pool.
///
/// ```no_run
/// # async fn run() -> Result<(), colloquy_storage::StoreError> {
/// use colloquy_storage::{ConversationStore, PostgresOptions, PostgresStore};
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1/test", PostgresOptions::new()).await?;
/// store.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Connections for the cluster's deliveries (queue, claim, answer, take), which commit
    /// without waiting for the WAL flush: a delivery is coordination between live hubs, not
    /// a fact of the transcript. The request it carries was stored durably first (it is the
    /// real outbox: a takeover delivers it again), and the reply is stored durably after.
    /// What a server crash can lose is a delivery in flight, and then every hub lost its
    /// connections too: the exchange fails with a typed error, as any exchange in flight
    /// when the database goes down.
    relaxed: Pool,
    server: Arc<Server>,
    closed: Arc<AtomicBool>,
    /// The cluster member this handle writes as (see `Members::write_as`).
    pub(crate) writer: Arc<std::sync::Mutex<Option<crate::Member>>>,
    /// The cluster's wake-ups (`LISTEN`), started on first use.
    pub(crate) listener: Arc<listen::Listener>,
    /// The context last committed for each recently written conversation.
    pub(crate) contexts: Arc<crate::committed::CommittedContexts>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.server.address)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates the schema if needed and migrates it.
    ///
    /// Errors: [`StoreError::Unavailable`] if the server cannot be reached;
    /// [`StoreError::SchemaTooNew`] if a newer colloquy wrote the schema;
    /// [`StoreError::InvalidInput`] for a URL that cannot be read.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::InvalidInput {
                reason: format!("cannot read the PostgreSQL URL: {e}"),
            })?;
        let address = describe(&config);
        // Every connection: the store's schema first on the search path (so the SQL names
        // tables without a schema), and the two timeouts, in milliseconds.
        config.options(format!(
            "-c search_path={} -c statement_timeout={} -c lock_timeout={}",
            options.schema,
            options.statement_timeout.as_millis(),
            options.lock_timeout.as_millis(),
        ));
        // Named by schema, so an operator (or a test) can tell this store's sessions apart
        // in pg_stat_activity.
        config.application_name(format!("colloquy/{}", options.schema));
        config.connect_timeout(options.connect_timeout);
        let server = Arc::new(Server {
            address,
            statement_timeout: options.statement_timeout,
            lock_timeout: options.lock_timeout,
        });
        let listener = listen::Listener::new(config.clone(), &options.schema);
        let mut relaxed = config.clone();
        relaxed.options(format!(
            "{} -c synchronous_commit=off",
            config.get_options().unwrap_or_default()
        ));
        let pool = connection_pool(config, options.pool_size)?;
        let relaxed = connection_pool(relaxed, RELAXED_POOL_SIZE)?;
        let store = Self {
            pool,
            relaxed,
            server,
            closed: Arc::new(AtomicBool::new(false)),
            writer: Arc::default(),
            listener,
            contexts: Arc::default(),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, &options, &store.server).await?;
        Ok(store)
    }

    /// Drops the schema `schema` of the database at `url`, with everything in it (for
    /// tests and tooling that made a schema of their own; never called by the store).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        let options = PostgresOptions::new().schema(schema)?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::InvalidInput {
            reason: format!("cannot read the PostgreSQL URL: {e}"),
        })?;
        let server = Server {
            address: describe(&config),
            statement_timeout: options.statement_timeout,
            lock_timeout: options.lock_timeout,
        };
        let (client, connection) = config.connect(NoTls).await.map_err(|e| server.err(e))?;
        let driver = tokio::spawn(connection);
        let dropped = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                options.schema
            ))
            .await
            .map_err(|e| server.err(e));
        drop(client);
        let _ = driver.await;
        dropped
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.server.pool_err(e))
    }

    /// A connection whose commits do not wait for the WAL flush, for deliveries only (see
    /// the field `relaxed`).
    pub(crate) async fn relaxed_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.relaxed
            .get()
            .await
            .map_err(|e| self.server.pool_err(e))
    }

    /// The member this handle writes as: its id and epoch as parameters (both `NULL` when
    /// it writes as no member, which no fencing condition matches).
    fn writer(&self) -> (Option<uuid::Uuid>, Option<i64>) {
        let writer = *self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (writer.map(|m| m.id), writer.map(|m| m.epoch))
    }

    /// `Fenced` if this handle writes as a member the others fenced.
    async fn refuse_if_fenced<C: tokio_postgres::GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<(), StoreError> {
        let (id, epoch) = self.writer();
        let (Some(id), Some(epoch)) = (id, epoch) else {
            return Ok(());
        };
        static FENCED: std::sync::LazyLock<named::Named> = std::sync::LazyLock::new(|| {
            named::Named::new(&format!("SELECT {}", write::WRITER_FENCED))
        });
        let fenced: bool = client
            .query_one(
                FENCED.sql(),
                &FENCED.bind(&[("writer_id", &id), ("writer_epoch", &epoch)])?,
            )
            .await
            .map_err(self.err())?
            .try_get(0)
            .map_err(self.err())?;
        if fenced {
            return Err(StoreError::Fenced {
                member: format!("{id} epoch {epoch}"),
            });
        }
        Ok(())
    }

    pub(crate) fn refuse_if_closed(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        |e| self.server.err(e)
    }
}

/// `host:port/database` of a connection config, never its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{host}:{port}/{database}")
}

/// Connections for deliveries, per store handle.
const RELAXED_POOL_SIZE: usize = 4;

/// A pool of connections made with `config`.
fn connection_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection the server closed is noticed (is_closed) and replaced without a
            // round trip per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StoreError::InvalidInput {
            reason: format!("cannot build the connection pool: {e}"),
        })
}

#[async_trait]
impl ConversationStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        let written = self.create_once(conversation).await;
        self.contexts.note(conversation, &written);
        written
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        self.append_any(conversation, messages).await
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        let written = self.update_once(conversation).await;
        self.contexts.note(conversation, &written);
        written
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.reading(|| self.conversation_once(id)).await
    }

    async fn state_changes(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        self.reading(|| self.state_changes_once(id)).await
    }

    async fn message(&self, id: colloquy_core::MessageId) -> Result<Option<Message>, StoreError> {
        self.reading(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
                ))
                .await
                .map_err(self.err())?;
            let row = client
                .query_opt(&statement, &[&id.as_uuid()])
                .await
                .map_err(self.err())?;
            row.as_ref().map(decode_message).transpose()
        })
        .await
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        self.reading(|| self.messages_once(id, range)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        self.reading(|| self.list_once(filter)).await
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        self.reading(|| self.analytics_once(range)).await
    }

    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        self.reading(|| self.exchanges_once(range)).await
    }

    async fn search(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        self.reading(|| self.search_once(search)).await
    }

    async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.reading(|| self.count_by_status_once()).await
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.prune_batches(ended_before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(self.err())?;
        Ok(())
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.record_module_once(module, registered_at).await
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.reading(|| self.modules_once()).await
    }

    fn membership(&self) -> Option<&dyn crate::Membership> {
        Some(self)
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Every acknowledged write is committed on the server already: nothing to flush.
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
