//! [`StoreError`]: the one error type of every backend.

use std::{path::PathBuf, time::Duration};

use colloquy_core::ConversationId;

/// What a [`ConversationStore`](crate::ConversationStore) can fail with.
///
/// Backends map their private errors into these semantic variants (as `object_store` does),
/// so callers can react without knowing which backend they talk to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No conversation with this id is stored.
    #[error(
        "conversation {conversation} is not in the store; check the id (it may have been pruned)"
    )]
    NotFound {
        /// The missing conversation.
        conversation: ConversationId,
    },

    /// `create` was called for an id that is already stored.
    #[error("conversation {conversation} already exists in the store; mint a new id")]
    AlreadyExists {
        /// The existing conversation.
        conversation: ConversationId,
    },

    /// The write contradicts what is stored: a turn that is taken, a gap in the turns, a
    /// message id reused for another turn, or a state older than the stored one.
    #[error("conflict in conversation {conversation} at turn {turn}: {reason}; reload the conversation and retry")]
    Conflict {
        /// The conversation.
        conversation: ConversationId,
        /// The turn in question.
        turn: u64,
        /// What conflicts.
        reason: String,
    },

    /// The call's arguments are inconsistent with each other.
    #[error("the store refused the call: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },

    /// A stored row cannot be read back; `location` names the row.
    #[error("corrupt data in {location}: {detail}; restore the database from a backup or prune that conversation")]
    Corrupt {
        /// The row, e.g. `conversation 0190…` or `message 0190…`.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The database file does not exist and the store was asked not to create one.
    #[error("database {path} does not exist; check the path", path = path.display())]
    DatabaseMissing {
        /// The path.
        path: PathBuf,
    },

    /// The file is not a colloquy database.
    #[error("{path} is not a colloquy database: {detail}", path = path.display())]
    NotADatabase {
        /// The path.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },

    /// The database was written by a newer colloquy.
    #[error("database {database} has schema version {found}, but this colloquy knows versions up to {supported}; upgrade colloquy to open it")]
    SchemaTooNew {
        /// The database: an SQLite file's path, or a PostgreSQL schema.
        database: String,
        /// The schema version in the database.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },

    /// The database has an older schema and was opened read-only, so it cannot be migrated.
    #[error("database {path} has schema version {found}, older than version {expected} that this colloquy reads; open it once for writing (a writable copy will do) to migrate it", path = path.display())]
    SchemaTooOld {
        /// The path.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The version this build reads and writes.
        expected: i64,
    },

    /// The disk (or the configured size limit) is full. Reads keep working.
    #[error("storage is full: {detail}; free disk space or raise the size limit, then retry")]
    Full {
        /// The backend's message.
        detail: String,
    },

    /// The database cannot be written.
    #[error("database {path} is read-only: {detail}; check the file's permissions and its directory's", path = path.display())]
    ReadOnly {
        /// The path.
        path: PathBuf,
        /// The backend's message.
        detail: String,
    },

    /// Another process held the write lock for longer than the store waits.
    #[error("gave up waiting {waited:?} for the database write lock, held by another process; retry, or raise the lock wait")]
    Busy {
        /// How long this store waited.
        waited: Duration,
    },

    /// The database server cannot be reached, or the connection died during the call. The
    /// call had no effect, or (for a write whose commit was sent) its outcome is unknown:
    /// retrying the same write is safe, appends being idempotent on message id.
    #[error("the {backend} server is unavailable: {detail}; retry the call; a retry never stores anything twice")]
    Unavailable {
        /// Which backend ("postgres", ...).
        backend: &'static str,
        /// What failed.
        detail: String,
    },

    /// A statement ran longer than the store's statement timeout and was cancelled; nothing
    /// it would have written is stored.
    #[error("a statement ran longer than {limit:?} and was cancelled; raise the statement timeout, or look for what holds the database")]
    StatementTimeout {
        /// The configured limit.
        limit: Duration,
    },

    /// This process writes as a cluster member that the others have fenced (declared dead
    /// after it was silent past the member timeout, or after it left): its writes are
    /// refused until it joins again, which a hub does at its next heartbeat.
    #[error("this hub was fenced by the other hubs ({member}): its writes are refused until it rejoins, at its next heartbeat; retry then")]
    Fenced {
        /// The fenced member (id and epoch).
        member: String,
    },

    /// The store was closed; no more writes are accepted.
    #[error("the store is closed; open it again")]
    Closed,

    /// Anything else the backend reported.
    #[error("{backend} store failed: {message}")]
    Backend {
        /// Which backend ("sqlite", ...).
        backend: &'static str,
        /// Its message.
        message: String,
    },
}

impl StoreError {
    /// The error's kind in one word, for metrics and logs: `not_found`, `already_exists`,
    /// `conflict`, `invalid_input`, `corrupt`, `database_missing`, `not_a_database`,
    /// `schema_too_new`, `schema_too_old`, `full`, `read_only`, `busy`, `unavailable`,
    /// `statement_timeout`, `fenced`, `closed`, `backend`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Conflict { .. } => "conflict",
            Self::InvalidInput { .. } => "invalid_input",
            Self::Corrupt { .. } => "corrupt",
            Self::DatabaseMissing { .. } => "database_missing",
            Self::NotADatabase { .. } => "not_a_database",
            Self::SchemaTooNew { .. } => "schema_too_new",
            Self::SchemaTooOld { .. } => "schema_too_old",
            Self::Full { .. } => "full",
            Self::ReadOnly { .. } => "read_only",
            Self::Busy { .. } => "busy",
            Self::Unavailable { .. } => "unavailable",
            Self::StatementTimeout { .. } => "statement_timeout",
            Self::Fenced { .. } => "fenced",
            Self::Closed => "closed",
            Self::Backend { .. } => "backend",
        }
    }

    /// True for errors that may go away if the same call is retried later
    /// ([`Busy`](Self::Busy), [`Full`](Self::Full), [`Unavailable`](Self::Unavailable),
    /// [`StatementTimeout`](Self::StatementTimeout), [`Fenced`](Self::Fenced)).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Busy { .. }
                | Self::Full { .. }
                | Self::Unavailable { .. }
                | Self::StatementTimeout { .. }
                | Self::Fenced { .. }
        )
    }
}
