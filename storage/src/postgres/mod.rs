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
mod rows;
mod schema;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, StatusKind, Timestamp};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{error::SqlState, types::ToSql, NoTls};

use self::rows::{
    decode_conversation, decode_message, decode_module, encode_conversation, encode_messages,
    CONVERSATION_COLUMNS, MESSAGE_COLUMNS,
};
pub use self::schema::POSTGRES_SCHEMA_VERSION;
use crate::{
    batch::{check_append, check_create, check_state, check_update, check_write, plan_append},
    batch::{Existing, StoredState},
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleActivity, ModuleRecord, StatusCounts, StoreError, TimeRange,
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

/// Where the store is, for error messages, and how its errors map.
#[derive(Debug)]
pub(crate) struct Site {
    /// `host:port/database`, without credentials.
    pub(crate) server: String,
    statement_timeout: Duration,
    lock_timeout: Duration,
}

impl Site {
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
                    detail: format!("{} at {}", detail, self.server),
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
                detail: format!("{e} ({})", self.server),
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
                detail: format!("no connection to {}: {other}", self.server),
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
    site: Arc<Site>,
    closed: Arc<AtomicBool>,
    /// The cluster member this handle writes as (see `Members::write_as`).
    pub(crate) writer: Arc<std::sync::Mutex<Option<crate::Member>>>,
    /// The cluster's wake-ups (`LISTEN`), started on first use.
    pub(crate) listener: Arc<listen::Listener>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.site.server)
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
        let server = describe(&config);
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
        let site = Arc::new(Site {
            server,
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
            site,
            closed: Arc::new(AtomicBool::new(false)),
            writer: Arc::default(),
            listener,
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, &options, &store.site).await?;
        Ok(store)
    }

    /// Drops the schema `schema` of the database at `url`, with everything in it (for
    /// tests and tooling that made a schema of their own; never called by the store).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        let options = PostgresOptions::new().schema(schema)?;
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::InvalidInput {
            reason: format!("cannot read the PostgreSQL URL: {e}"),
        })?;
        let site = Site {
            server: describe(&config),
            statement_timeout: options.statement_timeout,
            lock_timeout: options.lock_timeout,
        };
        let (client, connection) = config.connect(NoTls).await.map_err(|e| site.err(e))?;
        let driver = tokio::spawn(connection);
        let dropped = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                options.schema
            ))
            .await
            .map_err(|e| site.err(e));
        drop(client);
        let _ = driver.await;
        dropped
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.site.pool_err(e))
    }

    /// A connection whose commits do not wait for the WAL flush, for deliveries only (see
    /// the field `relaxed`).
    pub(crate) async fn relaxed_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.relaxed.get().await.map_err(|e| self.site.pool_err(e))
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
        let fenced = client
            .query_opt(
                "SELECT 1 FROM hubs WHERE id = $1 AND epoch = $2 AND fenced",
                &[&id, &epoch],
            )
            .await
            .map_err(self.err())?
            .is_some();
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
        |e| self.site.err(e)
    }

    /// The slow path of an append: inside a transaction that locks the conversation row,
    /// decide with the shared rules which messages are new (a retry skips those already
    /// stored), then write them and the state.
    async fn append_locked<M: std::borrow::Borrow<Message> + Sync>(
        &self,
        conversation: &Conversation,
        state: &rows::ConvParams,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        let id = conversation.id();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let stored = stored_state(&*tx, &self.site, id, "FOR UPDATE").await?;
        self.refuse_if_fenced(&*tx).await?;
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.borrow().id.as_uuid()).collect();
        let turns: Vec<i64> = messages
            .iter()
            .map(|m| i64::try_from(m.borrow().turn).unwrap_or(i64::MAX))
            .collect();
        // The two lookups go out together: tokio-postgres pipelines statements polled at
        // once on one connection, so they cost one round trip.
        let conversation_uuid = id.as_uuid();
        let by_id_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let taken_params: [&(dyn ToSql + Sync); 2] = [&conversation_uuid, &turns];
        let (found, taken) = tokio::try_join!(
            tx.query(
                "SELECT id, conversation_id, turn FROM messages WHERE id = ANY($1)",
                &by_id_params,
            ),
            tx.query(
                "SELECT turn FROM messages WHERE conversation_id = $1 AND turn = ANY($2)",
                &taken_params,
            ),
        )
        .map_err(self.err())?;
        let by_id: std::collections::HashMap<uuid::Uuid, (uuid::Uuid, i64)> = found
            .iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.err())?;
        let taken: std::collections::HashSet<i64> = taken
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        let first_new = plan_append(
            id,
            messages,
            stored.turns,
            |m| (m.borrow().id, m.borrow().turn),
            |m| {
                let m = m.borrow();
                let turn = i64::try_from(m.turn).unwrap_or(i64::MAX);
                Ok(match by_id.get(&m.id.as_uuid()) {
                    Some((conv, stored_turn)) => Existing::SameId {
                        same_place: *conv == id.as_uuid() && *stored_turn == turn,
                    },
                    None if taken.contains(&turn) => Existing::TurnTaken,
                    None => Existing::New,
                })
            },
        )?;
        let new = &messages[first_new..];
        if !new.is_empty() {
            check_write(id, conversation.version(), stored)?;
            let columns = encode_messages(new)?;
            let (writer_id, writer_epoch) = self.writer();
            let mut update: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
            update.push(&writer_id);
            update.push(&writer_epoch);
            let written = tx
                .execute(LOCKED_UPDATE.as_str(), &update)
                .await
                .map_err(self.err())?;
            if written != 1 {
                return Err(StoreError::NotFound { conversation: id });
            }
            if let Some(change) = &state.change {
                let version = int(conversation.version());
                tx.execute(LOCKED_CHANGE, &[&state.id, &version, change])
                    .await
                    .map_err(self.err())?;
            }
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&state.id];
            values.extend_from_slice(&columns.values());
            tx.execute(LOCKED_INSERT.as_str(), &values)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(AppendOutcome {
            inserted: new.len(),
            duplicates: first_new,
        })
    }

    async fn append_any<M: std::borrow::Borrow<Message> + Sync>(
        &self,
        conversation: &Conversation,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        self.refuse_if_closed()?;
        check_append(conversation, messages)?;
        let state = encode_conversation(conversation)?;
        let columns = encode_messages(messages)?;
        let first_turn = columns.turns.first().copied().unwrap_or(0);
        let previous_turns = first_turn.saturating_sub(1);
        let (writer_id, writer_epoch) = self.writer();
        // The common case in one statement: the state is the stored version plus one, the
        // messages continue the stored turns, and none of them is stored yet. Anything
        // else (no row updated, or a unique violation of a message id or turn) is decided
        // by the locked path, which reports exactly why.
        let fast = {
            let client = self.client().await?;
            let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
            values.extend_from_slice(&columns.values());
            values.push(&previous_turns);
            values.push(&writer_id);
            values.push(&writer_epoch);
            values.push(&state.change);
            let statement = client
                .prepare_cached(FAST_APPEND.as_str())
                .await
                .map_err(self.err())?;
            client.execute(&statement, &values).await
        };
        match fast {
            Ok(n) if n == messages.len() as u64 => Ok(AppendOutcome {
                inserted: messages.len(),
                duplicates: 0,
            }),
            Ok(_) => self.append_locked(conversation, &state, messages).await,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.append_locked(conversation, &state, messages).await
            }
            Err(e) => Err(self.site.err(e)),
        }
    }
}

/// The messages' insert; `$1` is the conversation (in the fast path, the updated row's id
/// stands in for it, so nothing is inserted when the update matched no row).
const INSERT_MESSAGES: &str = "INSERT INTO messages \
     (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at) \
     SELECT m.id, $1, m.turn, m.source, m.target, m.kind, m.content, m.in_reply_to, m.sent_at";

/// The SQL of the writes, built once. The fast append: the conversation's conditional
/// update feeding the messages' insert, fenced, at the stored turn count `$25`.
static FAST_APPEND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH updated AS ({}), {} {INSERT_MESSAGES} FROM updated, {}",
        update_sql(26, &format!("AND turn_count = $25 {NOT_FENCED_26}")),
        record_change(28),
        unnest_messages(17),
    )
});

/// A CTE that records the write's state change (`$change`, `NULL` for none) for the row
/// `updated` returned: part of the write's own statement.
fn record_change(change: usize) -> String {
    format!(
        "recorded AS (INSERT INTO state_changes (conversation_id, version, change) \
         SELECT updated.id, $15, ${change}::jsonb FROM updated WHERE ${change}::jsonb IS NOT NULL \
         ON CONFLICT DO NOTHING)"
    )
}

/// The fencing condition of a create: the writer is `$18` and `$19`.
const FENCED_CREATE: &str =
    "WHERE NOT EXISTS (SELECT 1 FROM hubs WHERE id = $18::uuid AND epoch = $19::bigint AND fenced)";

/// The locked append's update (its conditions were checked under the row lock); the
/// writer is `$17` and `$18`.
static LOCKED_UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| update_sql(17, ""));

/// The locked append's insert of the new messages.
static LOCKED_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{INSERT_MESSAGES} FROM {}", unnest_messages(2)));

/// A state change without new turns: conditional and fenced, at the given turn count;
/// answers how many rows it updated.
static UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH updated AS ({}), {} SELECT count(*) FROM updated",
        update_sql(17, &format!("AND turn_count = $7 {NOT_FENCED_17}")),
        record_change(19),
    )
});

/// The locked append's record of the state change (its row is locked and updated).
const LOCKED_CHANGE: &str = "INSERT INTO state_changes (conversation_id, version, change) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// The messages as rows, from the eight column arrays numbered from `$first`.
fn unnest_messages(first: usize) -> String {
    let n: Vec<String> = (first..first + 8).map(|i| format!("${i}")).collect();
    format!(
        "unnest({}::uuid[], {}::bigint[], {}::text[], {}::text[], {}::text[], {}::json[], \
         {}::uuid[], {}::bigint[]) AS m (id, turn, source, target, kind, content, in_reply_to, sent_at)",
        n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]
    )
}

/// The fencing condition of a write, on the writer's member id and epoch as `$26` and
/// `$27` (the fast append) or `$17` and `$18` (the update): `NULL`s (no member) never match.
const NOT_FENCED_26: &str =
    "AND NOT EXISTS (SELECT 1 FROM hubs WHERE id = $26 AND epoch = $27 AND fenced)";
const NOT_FENCED_17: &str =
    "AND NOT EXISTS (SELECT 1 FROM hubs WHERE id = $17 AND epoch = $18 AND fenced)";

/// The conditional update of a conversation row from `$1`..`$16` (in
/// [`CONVERSATION_COLUMNS`] order), recording the writer (member id and epoch, parameters
/// `$writer` and the next one): only from the stored version (the given one minus one),
/// never once ended; `extra` adds conditions.
fn update_sql(writer: usize, extra: &str) -> String {
    let epoch = writer + 1;
    format!(
        "UPDATE conversations SET status = $2, failure_reason = $3, phase = $4, intent = $5, \
         participants = $6, turn_count = $7, started_at = $8, last_activity = $9, \
         ended_at = $10, idle_timeout_ms = $11, max_turns = $12, context = $13, \
         metadata = $14, version = $15, busy_until = $16, \
         written_by_id = ${writer}, written_by_epoch = ${epoch} \
         WHERE id = $1 AND version = $15::bigint - 1 \
         AND status NOT IN ('completed', 'timed_out', 'failed') {extra} RETURNING id"
    )
}

/// The stored version, status and turn count of `id` (`lock`: `"FOR UPDATE"` inside a
/// transaction, or `""`); `NotFound` if there is no such conversation.
async fn stored_state<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    site: &Site,
    id: ConversationId,
    lock: &str,
) -> Result<StoredState, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT version, status, turn_count FROM conversations WHERE id = $1 {lock}"),
            &[&id.as_uuid()],
        )
        .await
        .map_err(|e| site.err(e))?
        .ok_or(StoreError::NotFound { conversation: id })?;
    let corrupt = |detail: String| StoreError::Corrupt {
        location: format!("conversation {id}"),
        detail,
    };
    let version: i64 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
    let status: &str = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
    let turns: i64 = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
    Ok(StoredState {
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("negative version {version}")))?,
        status: status
            .parse::<StatusKind>()
            .map_err(|e| corrupt(format!("bad status {status:?}: {e}")))?,
        turns: u64::try_from(turns).map_err(|_| corrupt(format!("negative turn count {turns}")))?,
    })
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

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ConversationStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        check_create(conversation)?;
        let state = encode_conversation(conversation)?;
        let client = self.client().await?;
        // Fenced like every write: a member the others fenced creates nothing (the values
        // are cast to the columns' types, which a SELECT does not infer as VALUES does).
        let statement = client
            .prepare_cached(&format!(
                "WITH updated AS (INSERT INTO conversations ({CONVERSATION_COLUMNS}) \
                 SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text[], \
                 $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint, $12::bigint, \
                 $13::jsonb, $14::jsonb, $15::bigint, $16::bigint {FENCED_CREATE} \
                 ON CONFLICT (id) DO NOTHING RETURNING id), {} SELECT count(*) FROM updated",
                record_change(17)
            ))
            .await
            .map_err(self.err())?;
        let (writer_id, writer_epoch) = self.writer();
        let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
        values.push(&state.change);
        values.push(&writer_id);
        values.push(&writer_epoch);
        let inserted: i64 = client
            .query_one(&statement, &values)
            .await
            .map_err(self.err())?
            .try_get(0)
            .map_err(self.err())?;
        if inserted == 0 {
            self.refuse_if_fenced(&**client).await?;
            return Err(StoreError::AlreadyExists {
                conversation: conversation.id(),
            });
        }
        Ok(())
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<AppendOutcome, StoreError> {
        self.append_any(conversation, messages).await
    }

    async fn append_shared(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        let borrowed: Vec<&Message> = messages.iter().map(|m| &**m).collect();
        self.append_any(conversation, &borrowed).await
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        check_state(conversation)?;
        let id = conversation.id();
        let state = encode_conversation(conversation)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(UPDATE.as_str())
            .await
            .map_err(self.err())?;
        let (writer_id, writer_epoch) = self.writer();
        let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
        values.push(&writer_id);
        values.push(&writer_epoch);
        values.push(&state.change);
        let updated: i64 = client
            .query_one(&statement, &values)
            .await
            .map_err(self.err())?
            .try_get(0)
            .map_err(self.err())?;
        if updated == 1 {
            return Ok(());
        }
        // Refused: say exactly why, with the rules every backend shares.
        self.refuse_if_fenced(&**client).await?;
        let stored = stored_state(&**client, &self.site, id, "").await?;
        check_update(id, conversation.turn_count(), stored.turns)?;
        check_write(id, conversation.version(), stored)?;
        Err(StoreError::Conflict {
            conversation: id,
            turn: stored.turns,
            reason: "another writer changed the conversation meanwhile; reload it and retry".into(),
        })
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

/// The reads and the writes without a fast path, each run once; the trait's methods
/// above retry the reads.
impl PostgresStore {
    /// Runs a read, and once more on a fresh connection if the first one died under it
    /// (a read has no effect, so repeating it is always safe).
    async fn reading<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match read().await {
            Err(StoreError::Unavailable { .. }) => read().await,
            outcome => outcome,
        }
    }

    async fn conversation_once(
        &self,
        id: ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
            ))
            .await
            .map_err(self.err())?;
        client
            .query_opt(&statement, &[&id.as_uuid()])
            .await
            .map_err(self.err())?
            .map(|row| decode_conversation(&row))
            .transpose()
    }

    async fn state_changes_once(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        let client = self.client().await?;
        let uuid = id.as_uuid();
        // The conversation's row comes along, so that none is told from "no changes".
        let rows = client
            .query(
                "SELECT s.change FROM conversations c \
                 LEFT JOIN state_changes s ON s.conversation_id = c.id \
                 WHERE c.id = $1 ORDER BY s.version",
                &[&uuid],
            )
            .await
            .map_err(self.err())?;
        if rows.is_empty() {
            return Err(StoreError::NotFound { conversation: id });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let change: Option<serde_json::Value> = row.try_get(0).map_err(self.err())?;
            if let Some(change) = change {
                out.push(
                    serde_json::from_value(change).map_err(|e| StoreError::Corrupt {
                        location: format!("a state change of conversation {id}"),
                        detail: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }

    async fn messages_once(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        let base = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1");
        let uuid = id.as_uuid();
        let (sql, bounds): (String, Vec<i64>) = match range {
            MessageRange::All => (format!("{base} ORDER BY turn"), vec![]),
            MessageRange::After(turn) => (
                format!("{base} AND turn > $2 ORDER BY turn"),
                vec![int(turn)],
            ),
            MessageRange::Last(n) => (
                format!("SELECT * FROM ({base} ORDER BY turn DESC LIMIT $2) AS last ORDER BY turn"),
                vec![int(n)],
            ),
            MessageRange::Turns { first, last } => (
                format!("{base} AND turn BETWEEN $2 AND $3 ORDER BY turn"),
                vec![int(first), int(last)],
            ),
        };
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&uuid];
        values.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
        let statement = client.prepare_cached(&sql).await.map_err(self.err())?;
        let rows = client
            .query(&statement, &values)
            .await
            .map_err(self.err())?;
        let out = rows
            .iter()
            .map(decode_message)
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            let exists = client
                .query_opt("SELECT 1 FROM conversations WHERE id = $1", &[&uuid])
                .await
                .map_err(self.err())?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound { conversation: id });
            }
        }
        Ok(out)
    }

    async fn list_once(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        let limit = filter.effective_limit();
        let mut sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE true");
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(status) = filter.status {
            values.push(Box::new(status.as_str()));
            sql.push_str(&format!(" AND status = ${}", values.len()));
        }
        if let Some(module) = &filter.participant {
            values.push(Box::new(vec![module.as_str().to_owned()]));
            sql.push_str(&format!(" AND participants @> ${}", values.len()));
        }
        push_range(&mut sql, &mut values, "started_at", filter.started);
        if let Some(cursor) = filter.after {
            values.push(Box::new(cursor.started_at.as_millis_i64()));
            let t = values.len();
            values.push(Box::new(cursor.id.as_uuid()));
            sql.push_str(&format!(
                " AND (started_at, id) < (${t}, ${})",
                values.len()
            ));
        }
        values.push(Box::new(int(limit as u64 + 1)));
        sql.push_str(&format!(
            " ORDER BY started_at DESC, id DESC LIMIT ${}",
            values.len()
        ));
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(self.err())?;
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&statement, &params)
            .await
            .map_err(self.err())?;
        ConversationPage::from_candidates(limit, rows.iter().map(decode_conversation))
    }

    async fn count_by_status_once(&self) -> Result<StatusCounts, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT status, count(*) FROM conversations GROUP BY status")
            .await
            .map_err(self.err())?;
        let mut out = StatusCounts::default();
        for row in client.query(&statement, &[]).await.map_err(self.err())? {
            let status: &str = row.try_get(0).map_err(self.err())?;
            out.add_stored(status, row.try_get(1).map_err(self.err())?)?;
        }
        Ok(out)
    }

    async fn analytics_once(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for both statements, so the totals and the per-module counts agree.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err())?;
        let mut where_sql = String::from(" WHERE true");
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        push_range(&mut where_sql, &mut values, "started_at", range);
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let totals = tx
            .query_one(
                &format!(
                    "SELECT count(*), \
                     count(*) FILTER (WHERE status = 'active'), \
                     count(*) FILTER (WHERE status = 'paused'), \
                     count(*) FILTER (WHERE status = 'completed'), \
                     count(*) FILTER (WHERE status = 'timed_out'), \
                     count(*) FILTER (WHERE status = 'failed'), \
                     coalesce(sum(turn_count), 0)::bigint, \
                     coalesce(sum(greatest(coalesce(ended_at, last_activity) - started_at, 0)), 0)::bigint \
                     FROM conversations{where_sql}"
                ),
                &params,
            )
            .await
            .map_err(self.err())?;
        let get = |i: usize| -> Result<u64, StoreError> {
            let n: i64 = totals.try_get(i).map_err(self.err())?;
            Ok(n.max(0) as u64)
        };
        let mut out = Analytics {
            conversations: get(0)?,
            total_turns: get(6)?,
            total_duration_ms: get(7)?,
            ..Analytics::default()
        };
        for (i, status) in [
            StatusKind::Active,
            StatusKind::Paused,
            StatusKind::Completed,
            StatusKind::TimedOut,
            StatusKind::Failed,
        ]
        .into_iter()
        .enumerate()
        {
            out.by_status.add(status, get(i + 1)?);
        }
        let rows = tx
            .query(
                &format!(
                    // A module took part if it is a participant now or sent any turn
                    // (a transfer removes it from the participants, not from what it did);
                    // only conversations whose participants changed after they opened can
                    // have such a sender, so only their messages are read.
                    "SELECT module COLLATE \"C\" AS module, \
                     count(*) FILTER (WHERE initiated), count(*) FROM ( \
                       SELECT module, conversation_id, bool_or(initiated) AS initiated FROM ( \
                         SELECT p.module, id AS conversation_id, p.position = 1 AS initiated \
                         FROM conversations, unnest(participants) WITH ORDINALITY AS p (module, position)\
                         {where_sql} \
                         UNION ALL SELECT m.source, m.conversation_id, false \
                         FROM (SELECT DISTINCT conversation_id FROM state_changes \
                               WHERE version > 0 AND change ? 'participants') AS moved \
                         JOIN messages m ON m.conversation_id = moved.conversation_id \
                         JOIN conversations ON conversations.id = m.conversation_id\
                         {where_sql}) AS took_part GROUP BY 1, 2) AS per_conversation \
                     GROUP BY 1 ORDER BY 1"
                ),
                &params,
            )
            .await
            .map_err(self.err())?;
        for row in rows {
            let name: String = row.try_get(0).map_err(self.err())?;
            let module =
                name.parse()
                    .map_err(|e: colloquy_core::CoreError| StoreError::Corrupt {
                        location: format!("participants of module {name:?}"),
                        detail: e.to_string(),
                    })?;
            let initiated: i64 = row.try_get(1).map_err(self.err())?;
            let participated: i64 = row.try_get(2).map_err(self.err())?;
            out.modules.push(ModuleActivity {
                module,
                initiated: initiated.max(0) as u64,
                participated: participated.max(0) as u64,
            });
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    async fn prune_batches(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.refuse_if_closed()?;
        let client = self.client().await?;
        // In bounded batches, each its own short transaction, so a large prune never holds
        // many locks or one long transaction; rows another session holds are left for the
        // next batch (or the next prune).
        let statement = client
            .prepare_cached(
                "WITH doomed AS (SELECT id FROM conversations \
                   WHERE ended_at IS NOT NULL AND ended_at < $1 \
                   ORDER BY ended_at LIMIT 500 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM conversations c USING doomed WHERE c.id = doomed.id",
            )
            .await
            .map_err(self.err())?;
        let before = ended_before.as_millis_i64();
        let mut total = 0;
        loop {
            let deleted = client
                .execute(&statement, &[&before])
                .await
                .map_err(self.err())?;
            total += deleted;
            if deleted == 0 {
                return Ok(total);
            }
        }
    }

    async fn record_module_once(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        let info = serde_json::to_value(module).map_err(|e| StoreError::InvalidInput {
            reason: format!("module info cannot be serialized: {e}"),
        })?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO modules (name, info, registered_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET info = excluded.info, \
                 registered_at = excluded.registered_at",
            )
            .await
            .map_err(self.err())?;
        client
            .execute(
                &statement,
                &[&module.name.as_str(), &info, &registered_at.as_millis_i64()],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn modules_once(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, info, registered_at FROM modules ORDER BY name",
                &[],
            )
            .await
            .map_err(self.err())?;
        rows.iter().map(decode_module).collect()
    }
}

fn push_range(
    sql: &mut String,
    values: &mut Vec<Box<dyn ToSql + Sync + Send>>,
    column: &str,
    range: TimeRange,
) {
    if let Some(from) = range.from {
        values.push(Box::new(from.as_millis_i64()));
        sql.push_str(&format!(" AND {column} >= ${}", values.len()));
    }
    if let Some(until) = range.until {
        values.push(Box::new(until.as_millis_i64()));
        sql.push_str(&format!(" AND {column} < ${}", values.len()));
    }
}
