//! Connection settings and schema migrations of the SQLite backend.

use rusqlite::{Connection, TransactionBehavior};

use super::{Site, SqliteOptions, Synchronous};
use crate::StoreError;

/// Written to `PRAGMA application_id` so that a file of another program is recognised.
/// ("CLQY" in ASCII.)
pub(crate) const APPLICATION_ID: i64 = 0x434C_5159;

/// One entry per schema version; `MIGRATIONS[i]` moves the schema from version `i` to
/// `i + 1`. Append only: never edit a shipped migration.
const MIGRATIONS: &[&str] = &[
    // Version 1: conversations, their participants (for filters and analytics), messages
    // and module registrations.
    r#"
    CREATE TABLE conversations (
        id              TEXT PRIMARY KEY,
        status          TEXT NOT NULL,
        failure_reason  TEXT,
        phase           TEXT NOT NULL,
        intent          TEXT NOT NULL,
        participants    TEXT NOT NULL,  -- JSON array of names, initiator first
        turn_count      INTEGER NOT NULL,
        started_at      INTEGER NOT NULL,
        last_activity   INTEGER NOT NULL,
        ended_at        INTEGER,
        idle_timeout_ms INTEGER NOT NULL,
        max_turns       INTEGER,
        context         TEXT NOT NULL,  -- JSON object
        metadata        TEXT NOT NULL   -- JSON object
    ) STRICT;
    CREATE INDEX conversations_by_start ON conversations (started_at, id);
    CREATE INDEX conversations_by_status ON conversations (status, started_at, id);
    CREATE INDEX conversations_by_end ON conversations (ended_at) WHERE ended_at IS NOT NULL;

    CREATE TABLE participants (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position        INTEGER NOT NULL,
        module          TEXT NOT NULL,
        PRIMARY KEY (conversation_id, position)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX participants_by_module ON participants (module, conversation_id);

    CREATE TABLE messages (
        id              TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        turn            INTEGER NOT NULL,
        source          TEXT NOT NULL,
        target          TEXT NOT NULL,
        kind            TEXT NOT NULL,
        content         TEXT NOT NULL,  -- JSON
        in_reply_to     TEXT,
        sent_at         INTEGER NOT NULL,
        UNIQUE (conversation_id, turn)
    ) STRICT;

    CREATE TABLE modules (
        name           TEXT PRIMARY KEY,
        info           TEXT NOT NULL,   -- JSON of ModuleInfo
        registered_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // Version 2: every conversation write is compared and set on `version` (a writer
    // working from a stale copy is refused), and `busy_until` records a turn in progress
    // (its reply's deadline), so that no process counts a turn's work as idleness.
    r#"
    ALTER TABLE conversations ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN busy_until INTEGER;
    "#,
    // Version 3: what each write changed in a conversation's shared state (context,
    // participants, phase, status: a `StateChange` as JSON), keyed by the version written.
    r#"
    CREATE TABLE state_changes (
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        version         INTEGER NOT NULL,
        change          TEXT NOT NULL,  -- JSON of StateChange
        PRIMARY KEY (conversation_id, version)
    ) STRICT, WITHOUT ROWID;
    "#,
    // Version 4: the shared context in a table of its own. SQLite rewrites a whole row on
    // any update, overflow pages and all, so a large context kept in the conversation row
    // was written again at every turn that left it unchanged. Only a context that is not
    // empty has a row (most conversations start with none, and opening one writes no more
    // than before). Conversations are read through the view `conversation_rows`, which
    // joins it back.
    r#"
    CREATE TABLE contexts (
        conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
        context         TEXT NOT NULL   -- JSON object, never '{}'
    ) STRICT;
    INSERT INTO contexts (conversation_id, context)
        SELECT id, context FROM conversations WHERE context <> '{}';
    ALTER TABLE conversations DROP COLUMN context;
    CREATE VIEW conversation_rows AS
        SELECT c.*, coalesce(x.context, '{}') AS context FROM conversations c
        LEFT JOIN contexts x ON x.conversation_id = c.id;
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Settings every connection gets, readers and the writer alike.
pub(crate) fn configure_common(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    // Wait for another connection's lock (another process's writer, a checkpoint) instead of
    // failing at once with SQLITE_BUSY. Set first so that the statements below wait too.
    conn.busy_timeout(options.busy_timeout)?;
    // Our statements are a fixed small set; caching them all avoids re-parsing SQL per call.
    conn.set_prepared_statement_cache_capacity(options.statement_cache);
    Ok(())
}

/// Opens and prepares the writer connection: WAL, synchronous level, foreign keys, size
/// limit, then migrations.
pub(crate) fn open_writer(
    site: &Site,
    options: &SqliteOptions,
    turnstile: &mut super::turnstile::Turnstile,
) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let path = site.path.as_path();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if options.create_if_missing {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else if !path.exists() {
        return Err(StoreError::DatabaseMissing {
            path: path.to_owned(),
        });
    }
    let err = |e| site.err(e);
    let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
    configure_common(&conn, options).map_err(err)?;
    // SQLite silently falls back to read-only when the file cannot be opened for writing;
    // refuse that here, at open, rather than at some later write.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(err)? {
        return Err(StoreError::ReadOnly {
            path: path.to_owned(),
            detail: "the file cannot be opened for writing".into(),
        });
    }
    // Reading the header first turns "not a database" into a clear error before any write.
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::NotADatabase {
            path: path.to_owned(),
            detail: format!(
                "it is an SQLite database of another application (application_id {app_id:#x})"
            ),
        });
    }
    // WAL: readers never block the writer and the writer never blocks readers; a commit
    // appends to the log instead of rewriting pages. Persistent: stored in the file.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend {
            backend: "sqlite",
            message: format!(
                "{} cannot use WAL journaling (got {mode}); put it on a local filesystem",
                path.display()
            ),
        });
    }
    // NORMAL: in WAL mode a commit survives a process crash; after a power loss the last
    // commits may roll back (the database stays consistent). FULL also syncs the log on
    // every commit, so commits survive power loss, at the cost of one fsync per group.
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(err)?;
    // Enforce REFERENCES, so deleting a conversation cascades to its messages and
    // participants and no message can point at a missing conversation.
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    // A background thread checkpoints (copies the log back into the database) after
    // commits; the writer's own auto-checkpoint, which stops writing while it runs, is only a
    // safety net at ~40 MB of log instead of SQLite's ~4 MB.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .map_err(err)?;
    // Temporary tables, indexes and statement journals live in memory: they are small and
    // short-lived, and a temp file would cost a file creation and writes per transaction.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err)?;
    if let Some(pages) = options.max_page_count {
        // A hard size limit: writes beyond it fail with SQLITE_FULL (StoreError::Full),
        // exactly as a full disk does.
        conn.pragma_update(
            None,
            "max_page_count",
            i64::try_from(pages).unwrap_or(i64::MAX),
        )
        .map_err(err)?;
    }
    migrate(&mut conn, site, turnstile)?;
    Ok(conn)
}

/// Checks, with a read-only connection, that `site` holds a colloquy database of exactly
/// this build's schema (for [`SqliteStore::open_read_only`](super::SqliteStore::open_read_only),
/// which cannot migrate).
pub(crate) fn check_readable(site: &Site, options: &SqliteOptions) -> Result<(), StoreError> {
    use rusqlite::OpenFlags;
    let path = site.path.as_path();
    if !path.exists() {
        return Err(StoreError::DatabaseMissing {
            path: path.to_owned(),
        });
    }
    let err = |e| site.err(e);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    configure_common(&conn, options).map_err(err)?;
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if app_id != APPLICATION_ID || version == 0 {
        return Err(StoreError::NotADatabase {
            path: path.to_owned(),
            detail: if app_id == 0 && version == 0 {
                "it holds no colloquy tables (an empty file, or an SQLite database of another application)".to_owned()
            } else {
                format!("it is an SQLite database of another application (application_id {app_id:#x}, schema version {version})")
            },
        });
    }
    match version.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Greater => Err(StoreError::SchemaTooNew {
            database: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(StoreError::SchemaTooOld {
            path: path.to_owned(),
            found: version,
            expected: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one IMMEDIATE transaction (so two processes
/// opening a new file at once cannot both migrate), refusing newer schemas.
fn migrate(
    conn: &mut Connection,
    site: &Site,
    turnstile: &mut super::turnstile::Turnstile,
) -> Result<(), StoreError> {
    let path = site.path.as_path();
    let err = |e| site.err(e);
    // A file at this build's schema needs no write: opening it must not take the write
    // lock (nor create the writers' turnstile), so that opening is never a write.
    let current = |conn: &Connection| -> rusqlite::Result<bool> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        Ok(version == SCHEMA_VERSION && app_id == APPLICATION_ID)
    };
    if current(conn).map_err(err)? {
        return Ok(());
    }
    // Through the writers' turnstile, like every write: another process loading the file
    // cannot keep the migration from the write lock.
    let passing = turnstile.enter(std::time::Instant::now(), site.lock_wait)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    drop(passing);
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            database: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        let foreign: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if foreign > 0 {
            return Err(StoreError::NotADatabase {
                path: path.to_owned(),
                detail: format!("it is an SQLite database of another application ({foreign} {} that colloquy did not create)", if foreign == 1 { "table or index" } else { "tables and indexes" }),
            });
        }
    }
    for sql in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(usize::MAX))
    {
        tx.execute_batch(sql).map_err(err)?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}
