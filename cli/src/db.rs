//! Which database a command works on: an SQLite file (`--db PATH`) or a PostgreSQL database
//! (`--db postgres://...`, in the schema `--schema`), opened the way each command needs.

use std::{ops::Deref, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use colloquy_runtime::HubBuilder;
use colloquy_storage::{
    ConversationStore, PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, StoreError,
};

/// The database named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Db {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// `:memory:`: conversations kept in the serving process only, gone when it stops (for
    /// `serve` and `load`; nothing else can open it).
    Memory,
    /// A PostgreSQL database, and the schema that holds colloquy's tables.
    Postgres {
        /// The connection URL, as given.
        url: String,
        /// The schema.
        schema: String,
        /// How long a hub sharing it may be silent before the others fence it.
        member_timeout: Duration,
    },
}

impl Db {
    /// `text` as a database: a `postgres://` or `postgresql://` URL, `:memory:`, else a
    /// file path.
    pub(crate) fn parse(
        text: &str,
        schema: Option<&str>,
        member_timeout: Option<Duration>,
    ) -> Result<Self> {
        if text == MEMORY {
            if schema.is_some() || member_timeout.is_some() {
                anyhow::bail!("--schema and --member-timeout apply to a PostgreSQL database (--db postgres://...), not to {MEMORY}");
            }
            Ok(Self::Memory)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let schema = schema.unwrap_or("colloquy").to_owned();
            // Checked now, so a bad name is a usage error before anything connects.
            PostgresOptions::new().schema(&schema)?;
            if member_timeout.is_some_and(|t| t < MIN_MEMBER_TIMEOUT) {
                anyhow::bail!("--member-timeout must be at least {MIN_MEMBER_TIMEOUT:?}: a hub heartbeats every fifth of it, and a shorter one fences hubs that are merely busy");
            }
            Ok(Self::Postgres {
                url: text.to_owned(),
                schema,
                member_timeout: member_timeout.unwrap_or(DEFAULT_MEMBER_TIMEOUT),
            })
        } else {
            if schema.is_some() {
                anyhow::bail!("--schema applies to a PostgreSQL database (--db postgres://...), not to the file {text}");
            }
            if member_timeout.is_some() {
                anyhow::bail!("--member-timeout applies to hubs sharing a PostgreSQL database (--db postgres://...), not to the file {text}");
            }
            Ok(Self::Sqlite(PathBuf::from(text)))
        }
    }

    /// For messages: the file's path, or the server, database and schema (never a
    /// password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Memory => format!("{MEMORY} (in this process only)"),
            Self::Postgres { url, schema, .. } => {
                let shown = match url.split_once('@') {
                    Some((_, rest)) => format!("postgres://{rest}"),
                    None => url.clone(),
                };
                format!("{shown} (schema {schema})")
            }
        }
    }

    /// The argument that names this database again on a command line.
    pub(crate) fn argument(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Memory => MEMORY.to_owned(),
            Self::Postgres { url, schema, .. } if schema == "colloquy" => url.clone(),
            Self::Postgres { url, schema, .. } => format!("{url} --schema {schema}"),
        }
    }

    fn postgres_options(schema: &str) -> Result<PostgresOptions> {
        Ok(PostgresOptions::new().schema(schema)?)
    }

    /// How long a hub sharing this database may be silent before the others fence it (and
    /// `health` lists it as gone).
    pub(crate) fn member_timeout(&self) -> Duration {
        match self {
            Self::Sqlite(_) | Self::Memory => DEFAULT_MEMBER_TIMEOUT,
            Self::Postgres { member_timeout, .. } => *member_timeout,
        }
    }

    /// A hub builder on this database (created if missing).
    pub(crate) fn hub(&self) -> Result<HubBuilder> {
        let builder = colloquy_runtime::Hub::builder();
        Ok(match self {
            Self::Sqlite(path) => builder.sqlite(path),
            Self::Memory => builder.memory(),
            Self::Postgres {
                url,
                schema,
                member_timeout,
            } => builder
                .postgres_with(url, Self::postgres_options(schema)?)
                .member_timeout(*member_timeout),
        })
    }

    /// Opens an existing database for writing; a missing one is an error, never created.
    pub(crate) async fn open_existing(&self) -> Result<Store> {
        let backend = match self {
            Self::Memory => anyhow::bail!(
                "{MEMORY} lives inside one `colloquy serve` and ends with it: there is nothing to open; inspect a running server at its /inspect page, or serve a file (--db PATH) to keep what it stores"
            ),
            Self::Sqlite(path) => Backend::Sqlite(
                SqliteStore::open(path, SqliteOptions::new().existing_only()).await?,
            ),
            Self::Postgres { url, schema, .. } => Backend::Postgres(
                PostgresStore::connect(url, Self::postgres_options(schema)?.existing_only())
                    .await
                    .with_context(|| format!("cannot open {}", self.describe()))?,
            ),
        };
        Ok(self.opened(backend))
    }

    fn opened(&self, backend: Backend) -> Store {
        Store {
            backend,
            description: self.describe(),
            member_timeout: self.member_timeout(),
        }
    }

    /// Opens an existing database for a command that only reads: read-only, so reading
    /// writes nothing and creates no file (and works on a read-only mount or a protected
    /// backup); only a file of an older schema is opened for writing, once, to migrate it.
    pub(crate) async fn open_for_reading(&self) -> Result<Store> {
        match self {
            Self::Sqlite(path) => {
                let store = match SqliteStore::open_read_only(path, SqliteOptions::new()).await {
                    Err(StoreError::SchemaTooOld { .. }) => {
                        SqliteStore::open(path, SqliteOptions::new().existing_only()).await?
                    }
                    opened => opened?,
                };
                Ok(self.opened(Backend::Sqlite(store)))
            }
            Self::Postgres { .. } | Self::Memory => self.open_existing().await,
        }
    }
}

/// An opened store of either backend, and what to call it in messages.
#[derive(Debug)]
pub(crate) struct Store {
    backend: Backend,
    description: String,
    member_timeout: Duration,
}

/// The name of the database in memory, as SQLite spells it.
const MEMORY: &str = ":memory:";

/// The shortest member timeout the command line accepts.
const MIN_MEMBER_TIMEOUT: Duration = Duration::from_millis(500);

/// The hubs' default member timeout.
const DEFAULT_MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// The same store as a shared handle, for the runtime's operator functions.
    pub(crate) fn shared(&self) -> std::sync::Arc<dyn ConversationStore> {
        match &self.backend {
            Backend::Sqlite(store) => std::sync::Arc::new(store.clone()),
            Backend::Postgres(store) => std::sync::Arc::new(store.clone()),
        }
    }

    /// The database, for messages (a path, or a server and schema).
    pub(crate) fn describe(&self) -> &str {
        &self.description
    }

    /// How long a hub may be silent before it counts as gone (`--member-timeout`).
    pub(crate) fn member_timeout(&self) -> Duration {
        self.member_timeout
    }

    /// Closes the store after a command's work, whatever its outcome, and passes that
    /// outcome on (the command's error before a closing one). A command must close what it
    /// opened: the process ends right after, and only `close` waits for the writer to
    /// commit and to remove the writers' turnstile file beside an SQLite database.
    pub(crate) async fn close_after<T>(&self, done: Result<T>) -> Result<T> {
        let closed = (**self).close().await;
        let value = done?;
        closed.with_context(|| format!("cannot close {}", self.description))?;
        Ok(value)
    }

    /// Backend-specific integrity problems (SQLite's `quick_check`): empty when the check
    /// passed, `None` when the backend checks its own pages (PostgreSQL).
    pub(crate) async fn integrity_problems(&self) -> Result<Option<Vec<String>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.integrity_check().await.map(Some),
            Backend::Postgres(_) => Ok(None),
        }
    }
}

impl Deref for Store {
    type Target = dyn ConversationStore;

    fn deref(&self) -> &Self::Target {
        match &self.backend {
            Backend::Sqlite(store) => store,
            Backend::Postgres(store) => store,
        }
    }
}
