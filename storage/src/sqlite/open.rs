//! Opening a store: the file created or required, the schema migrated, the writer thread,
//! the checkpointer and the read pool started; or the read pool alone, read-only.

use super::*;

impl SqliteStore {
    /// Opens (or, unless [`SqliteOptions::create_if_missing`] is false, creates) the
    /// database at `path`, migrating its schema to [`SCHEMA_VERSION`].
    ///
    /// Errors: [`StoreError::DatabaseMissing`], [`StoreError::NotADatabase`],
    /// [`StoreError::SchemaTooNew`], [`StoreError::ReadOnly`], [`StoreError::Busy`].
    pub async fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        blocking(move || Self::open_blocking(path, options)).await
    }

    /// [`open`](Self::open) for callers outside async code (it blocks while it migrates).
    /// The returned store must still be used inside a tokio runtime.
    pub fn open_blocking(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let site = Site::new(path.as_ref(), &options);
        let mut turnstile = turnstile::Turnstile::new(&site.path);
        let conn = site.retry_busy(|| schema::open_writer(&site, &options, &mut turnstile))?;
        let pool = read_pool(&site, &options, false)?;
        let signal = checkpointer::Signal::default();
        let checkpointer = checkpointer::Checkpointer::spawn(&site, &options, signal.clone())?;
        let writer = Writer::spawn(conn, turnstile, Arc::clone(&site), &options, signal)?;
        Ok(Self::assemble(
            site,
            pool,
            options,
            Some((writer, checkpointer)),
        ))
    }

    pub(super) fn assemble(
        site: Arc<Site>,
        pool: r2d2::Pool<SqliteConnectionManager>,
        options: SqliteOptions,
        writing: Option<(Writer, checkpointer::Checkpointer)>,
    ) -> Self {
        let (writer, checkpointer) = writing.unzip();
        Self {
            inner: Arc::new(Inner {
                site,
                pool,
                writer,
                options,
                contexts: crate::committed::CommittedContexts::default(),
                _checkpointer: checkpointer,
            }),
        }
    }

    /// Opens an existing database for reading only: no write connection, no migration, no
    /// background checkpoints, so it works on a file that cannot be written (a read-only
    /// mount, a backup copy, a file another process is using). Every write returns
    /// [`StoreError::ReadOnly`]. The file's schema must be the one this build writes; open
    /// an older file writable once to migrate it.
    ///
    /// Errors: [`StoreError::DatabaseMissing`], [`StoreError::NotADatabase`],
    /// [`StoreError::SchemaTooNew`], [`StoreError::SchemaTooOld`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use colloquy_storage::{ConversationStore, SqliteStore, SqliteOptions, StoreError};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("conversations.db");
    /// SqliteStore::open(&path, SqliteOptions::new()).await?.close().await?;
    /// let reader = SqliteStore::open_read_only(&path, SqliteOptions::new()).await?;
    /// assert!(reader.list(&Default::default()).await?.conversations.is_empty());
    /// assert!(matches!(reader.prune(colloquy_core::Timestamp::from_millis(0)).await, Err(StoreError::ReadOnly { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn open_read_only(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        blocking(move || Self::open_read_only_blocking(path, options)).await
    }

    /// [`open_read_only`](Self::open_read_only) for callers outside async code.
    pub fn open_read_only_blocking(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let site = Site::new(path.as_ref(), &options);
        site.retry_busy(|| schema::check_readable(&site, &options))?;
        let pool = read_pool(&site, &options, true)?;
        Ok(Self::assemble(site, pool, options, None))
    }
}

/// Why SQLite could not open `path`, in the words of what the user can fix: a missing
/// directory, a directory that cannot be written, or a path that is a directory.
pub(super) fn cannot_open(path: &Path) -> String {
    let shown = path.display();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() {
        format!("cannot open {shown}: it is a directory; name a database file in it")
    } else if !parent.exists() {
        format!(
            "cannot open {shown}: the directory {} does not exist; create it first",
            parent.display()
        )
    } else if !parent.is_dir() {
        format!(
            "cannot open {shown}: {} is a file, not a directory",
            parent.display()
        )
    } else {
        format!(
            "cannot open {shown}: the file or its directory {} cannot be written; check their permissions",
            parent.display()
        )
    }
}

pub(super) fn read_pool(
    site: &Arc<Site>,
    options: &SqliteOptions,
    read_only_file: bool,
) -> Result<r2d2::Pool<SqliteConnectionManager>, StoreError> {
    use rusqlite::OpenFlags;
    let init_options = options.clone();
    // Readers open the file read-write where they may (`query_only` below keeps them from
    // writing): the last connection to close then folds the log back and removes the
    // `-wal` and `-shm` files, so reading leaves nothing behind. Only a file that cannot be
    // written (a read-only mount, a protected backup) is opened read-only.
    let writable = !read_only_file
        || std::fs::OpenOptions::new()
            .write(true)
            .open(&site.path)
            .is_ok();
    let access = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    let manager = SqliteConnectionManager::file(&site.path)
        .with_flags(access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(move |conn| {
            schema::configure_common(conn, &init_options)?;
            // Read connections never write, even by mistake: every write goes through the
            // one writer so that group commit and ordering hold.
            conn.pragma_update(None, "query_only", "ON")
        });
    r2d2::Pool::builder()
        .max_size(options.read_connections.max(1))
        .min_idle(Some(1))
        // Checking a connection with a query on every checkout would double the cost of a
        // small read; a broken file surfaces as an error of the read itself.
        .test_on_check_out(false)
        .connection_timeout(options.busy_timeout.max(Duration::from_secs(1)))
        .build(manager)
        .map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!(
                "cannot open read connections to {}: {e}",
                site.path.display()
            ),
        })
}
