//! [`HubBuilder`]: the store, the settings, the cluster; `build` wires and starts a hub.

use std::{
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc, Mutex, PoisonError},
    time::Duration,
};

use colloquy_registry::{ModuleDirectory, Registry};
use colloquy_router::{Clock, Router, RouterConfig};
use colloquy_storage::{ConversationStore, MemoryStore, SqliteOptions, SqliteStore};
use tokio::sync::Notify;

use crate::HubError;

use super::{reaper::reaper, Hub, HubInner};

enum StoreChoice {
    Memory,
    Sqlite(PathBuf, SqliteOptions),
    #[cfg(feature = "postgres")]
    Postgres(String, colloquy_storage::PostgresOptions),
    Custom(Arc<dyn ConversationStore>),
}

/// Configures and builds a [`Hub`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), colloquy_runtime::HubError> {
/// use std::time::Duration;
/// let hub = colloquy_runtime::Hub::builder()
///     .memory()
///     .idle_timeout(Duration::from_secs(60))
///     .handler_deadline(Duration::from_secs(5))
///     .build()
///     .await?;
/// assert!(hub.health(None).await.healthy);
/// hub.shutdown().await;
/// # Ok(()) }
/// ```
pub struct HubBuilder {
    store: StoreChoice,
    config: RouterConfig,
    reaper_interval: Duration,
    cold_after: Duration,
    drain: Duration,
    clock: Option<Clock>,
    member_name: Option<String>,
    member_timeout: Duration,
    link: Option<colloquy_cluster::LinkConfig>,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for HubBuilder {
    fn default() -> Self {
        Self {
            store: StoreChoice::Memory,
            config: RouterConfig::default(),
            reaper_interval: Duration::from_secs(10),
            cold_after: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            clock: None,
            member_name: None,
            member_timeout: Duration::from_secs(5),
            link: Some(colloquy_cluster::LinkConfig::loopback()),
        }
    }
}

impl HubBuilder {
    /// Keep everything in memory (the default): nothing survives the process.
    pub fn memory(mut self) -> Self {
        self.store = StoreChoice::Memory;
        self
    }

    /// Persist to the SQLite file at `path` (created if missing) with default settings.
    pub fn sqlite(self, path: impl Into<PathBuf>) -> Self {
        self.sqlite_with(path, SqliteOptions::default())
    }

    /// Persist to the SQLite file at `path` with `options`.
    pub fn sqlite_with(mut self, path: impl Into<PathBuf>, options: SqliteOptions) -> Self {
        self.store = StoreChoice::Sqlite(path.into(), options);
        self
    }

    /// Persist to the PostgreSQL database at `url` (`postgres://user@host:port/database`),
    /// in the schema `colloquy` (created and migrated at build). Feature `postgres`.
    #[cfg(feature = "postgres")]
    pub fn postgres(self, url: impl Into<String>) -> Self {
        self.postgres_with(url, colloquy_storage::PostgresOptions::default())
    }

    /// Persist to the PostgreSQL database at `url` with `options` (schema, pool size,
    /// timeouts). Feature `postgres`.
    #[cfg(feature = "postgres")]
    pub fn postgres_with(
        mut self,
        url: impl Into<String>,
        options: colloquy_storage::PostgresOptions,
    ) -> Self {
        self.store = StoreChoice::Postgres(url.into(), options);
        self
    }

    /// Use any [`ConversationStore`].
    pub fn store(mut self, store: Arc<dyn ConversationStore>) -> Self {
        self.store = StoreChoice::Custom(store);
        self
    }

    /// Default idle timeout of conversations (default 300 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Default handler deadline (default 30 s); modules and calls may override it.
    pub fn handler_deadline(mut self, deadline: Duration) -> Self {
        self.config.handler_deadline = deadline;
        self
    }

    /// Recent messages handed to handlers with each turn (default 20).
    pub fn history_window(mut self, messages: usize) -> Self {
        self.config.history_window = messages;
        self
    }

    /// Most conversations held in memory (default 1,000).
    pub fn hot_capacity(mut self, conversations: usize) -> Self {
        self.config.hot_capacity = conversations;
        self
    }

    /// Largest message content in bytes of JSON (default 1 MiB).
    pub fn max_content_bytes(mut self, bytes: usize) -> Self {
        self.config.max_content_bytes = bytes;
        self
    }

    /// How often the reaper scans the store for active conversations no hub holds in memory
    /// (left by a hub that stopped, or by another process), a bounded batch each time
    /// (default 10 s). Conversations in memory need no scan: the reaper sleeps until the
    /// earliest of their deadlines and times them out then.
    pub fn reaper_interval(mut self, interval: Duration) -> Self {
        self.reaper_interval = interval;
        self
    }

    /// How long a conversation stays in memory unused before the reaper evicts it
    /// (default 60 s).
    pub fn cold_after(mut self, idle: Duration) -> Self {
        self.cold_after = idle;
        self
    }

    /// How long [`Hub::shutdown`] lets in-flight turns finish (default 10 s).
    pub fn drain_timeout(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Use `clock` instead of the system clock (for reproducible tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// On a store several hubs share (PostgreSQL): the name this hub gives itself in the
    /// cluster (default: host and process id).
    pub fn member_name(mut self, name: impl Into<String>) -> Self {
        self.member_name = Some(name.into());
        self
    }

    /// On a store several hubs share: a hub silent for longer than `timeout` (judged on the
    /// database server's clock) is declared dead and fenced. It heartbeats every fifth of
    /// it. Default 5 s.
    pub fn member_timeout(mut self, timeout: Duration) -> Self {
        self.member_timeout = timeout;
        self
    }

    /// On a store several hubs share: where this hub's cluster link listens, so that turns
    /// between hubs go hub to hub rather than through the database (default: a free port of
    /// 127.0.0.1, for hubs of one machine; on several machines give every hub an address
    /// the others reach and the same secret). `None`: no link, turns to and from this
    /// hub's modules cross through the database. Nothing listens on a store of one process.
    pub fn cluster_link(mut self, link: impl Into<Option<colloquy_cluster::LinkConfig>>) -> Self {
        self.link = link.into();
        self
    }

    /// Opens the store and starts the hub (and its reaper). Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Hub, HubError> {
        let store: Arc<dyn ConversationStore> = match self.store {
            StoreChoice::Memory => Arc::new(MemoryStore::new()),
            StoreChoice::Sqlite(path, options) => Arc::new(SqliteStore::open(path, options).await?),
            #[cfg(feature = "postgres")]
            StoreChoice::Postgres(url, options) => {
                Arc::new(colloquy_storage::PostgresStore::connect(&url, options).await?)
            }
            StoreChoice::Custom(store) => store,
        };

        let registry = Arc::new(Registry::new());
        let clock = self.clock.unwrap_or_else(Clock::system);
        // On a store several hubs share, modules other hubs host are found too.
        let cluster = colloquy_cluster::Cluster::bind(
            Arc::clone(&store),
            Arc::clone(&registry),
            clock,
            colloquy_cluster::ClusterConfig::new(
                self.member_name
                    .unwrap_or_else(colloquy_cluster::ClusterConfig::default_name),
            )
            .member_timeout(self.member_timeout)
            .link(self.link),
        )
        .await?;
        let modules: Arc<dyn ModuleDirectory> = match &cluster {
            Some(cluster) => cluster.directory(),
            None => Arc::clone(&registry) as Arc<dyn ModuleDirectory>,
        };
        let router = Arc::new(Router::new(Arc::clone(&store), modules, self.config, clock));
        if let Some(cluster) = &cluster {
            cluster.start(&router).await;
        }
        let inner = Arc::new(HubInner {
            store,
            router,
            registry,
            reaper: Mutex::new(None),
            reaper_stop: Arc::new(Notify::new()),
            last_reap: Mutex::new(None),
            timed_out_total: AtomicU64::new(0),
            reaper_interval: self.reaper_interval,
            started: clock.now(),
            cold_after: self.cold_after,
            drain: self.drain,
            cluster,
        });
        let task = tokio::spawn(reaper(Arc::downgrade(&inner)));
        *inner.reaper.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(Hub { inner })
    }
}
