//! [`Cluster`]: this hub's membership, its directory of other hubs' modules and its link.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    time::Duration,
};

use colloquy_core::{ConversationId, ModuleInfo};
use colloquy_registry::{ModuleDirectory, Registry};
use colloquy_router::{Clock, Router, WriterLiveness};
use colloquy_storage::{
    ConversationStore, Member, MemberRecord, Membership, MessageRange, StoreError, TurnWriter,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, warn};

use crate::{directory::ClusterDirectory, link, member, queue, ClusterError};

/// The longest a stopping hub waits for its link's answers in progress to be written.
const LINK_CLOSE: Duration = Duration::from_secs(5);

/// How a hub takes part in its cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The name this hub gives itself (host and process id by default).
    pub name: String,
    /// A hub silent for longer than this (judged on the database server's clock) is
    /// fenced; each hub heartbeats every fifth of it. Default 5 s.
    pub member_timeout: Duration,
    /// The direct link to other hubs; `None`: turns cross hubs through the database only.
    pub link: Option<LinkConfig>,
}

impl ClusterConfig {
    /// A member named `name`, with the default timeout and no link.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            member_timeout: Duration::from_secs(5),
            link: None,
        }
    }

    /// Sets the member timeout.
    pub fn member_timeout(mut self, timeout: Duration) -> Self {
        self.member_timeout = timeout;
        self
    }

    /// Sets the link (`None`: through the database only).
    pub fn link(mut self, link: impl Into<Option<LinkConfig>>) -> Self {
        self.link = link.into();
        self
    }

    /// The name a hub gives itself by default: the host and the process.
    pub fn default_name() -> String {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    }
}

/// Where a hub's link listens, what it tells the others, and the secret hubs share.
#[derive(Clone)]
#[non_exhaustive]
pub struct LinkConfig {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The `host:port` other hubs connect to (default: the address listened on).
    pub advertise: Option<String>,
    /// The secret every hub of the cluster shares: sent and required as a bearer token.
    /// Required when listening on a non-loopback address.
    pub secret: Option<String>,
}

impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            // Never printed.
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl LinkConfig {
    /// Listens on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            secret: None,
        }
    }

    /// Listens on a free port of 127.0.0.1: hubs of one machine (the default of a hub).
    /// Without a [`secret`](Self::secret) any process of this machine that finds the port
    /// can send turns to this hub's modules: on a machine shared with untrusted users, set
    /// one.
    pub fn loopback() -> Self {
        Self::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Tells other hubs to connect to `address` (`host:port`), as when listening on
    /// `0.0.0.0` behind a name.
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.advertise = Some(address.into());
        self
    }

    /// The secret every hub of the cluster shares.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }
}

/// This hub as a member of the cluster of hubs sharing its store. Built by
/// [`Cluster::bind`] before the router (whose module directory it provides), started with
/// the router by [`Cluster::start`], stopped after the router's shutdown by
/// [`Cluster::stop`].
pub struct Cluster {
    pub(crate) store: Arc<dyn ConversationStore>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) clock: Clock,
    pub(crate) name: String,
    pub(crate) member_timeout: Duration,
    member: Mutex<Option<Member>>,
    /// When the last heartbeat that found this hub unfenced was sent: a hub that has not
    /// had one for a member timeout may have been fenced, and answers no turn.
    last_unfenced: Mutex<Option<tokio::time::Instant>>,
    pub(crate) directory: Arc<ClusterDirectory>,
    listener: Mutex<Option<TcpListener>>,
    address: Option<String>,
    pub(crate) secret: Option<Arc<str>>,
    router: OnceLock<Weak<Router>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The window and request of the last turn run here for another hub, per conversation.
    pub(crate) hosted_histories: crate::history::Hosted,
    /// The link's server, closed gracefully at stop.
    link_server: Mutex<Option<JoinHandle<()>>>,
    closing: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("member", &self.member())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of `store`, if it is one several hubs share (`None` for a store of one
    /// process). Binds the link's port, so that the address joined with is the one that
    /// answers; nothing runs until [`start`](Self::start).
    pub async fn bind(
        store: Arc<dyn ConversationStore>,
        registry: Arc<Registry>,
        clock: Clock,
        config: ClusterConfig,
    ) -> Result<Option<Arc<Self>>, ClusterError> {
        if store.membership().is_none() {
            return Ok(None);
        }
        let (listener, address, secret) = match &config.link {
            None => (None, None, None),
            Some(link) => {
                let secret = match &link.secret {
                    Some(secret) => Some(link::check_secret(secret)?),
                    None if !link.listen.ip().is_loopback() => {
                        return Err(ClusterError::SecretRequired {
                            address: link.listen,
                        })
                    }
                    None => None,
                };
                let listener =
                    TcpListener::bind(link.listen)
                        .await
                        .map_err(|source| ClusterError::Bind {
                            address: link.listen,
                            source,
                        })?;
                let bound = listener.local_addr().map_err(|source| ClusterError::Bind {
                    address: link.listen,
                    source,
                })?;
                let address = link.advertise.clone().unwrap_or_else(|| bound.to_string());
                (Some(listener), Some(address), secret)
            }
        };
        let directory = Arc::new(ClusterDirectory::new(
            Arc::clone(&registry),
            Arc::clone(&store),
            clock,
            secret.clone(),
            config.name.clone(),
        ));
        Ok(Some(Arc::new(Self {
            store,
            registry,
            clock,
            name: config.name,
            member_timeout: config.member_timeout,
            member: Mutex::new(None),
            last_unfenced: Mutex::new(None),
            directory,
            listener: Mutex::new(listener),
            address,
            secret,
            router: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            hosted_histories: crate::history::Hosted::default(),
            link_server: Mutex::new(None),
            closing: tokio_util::sync::CancellationToken::new(),
        })))
    }

    /// Every module a router of this hub can address: the registry's, then those other
    /// alive hubs host.
    pub fn directory(&self) -> Arc<dyn ModuleDirectory> {
        Arc::clone(&self.directory) as Arc<dyn ModuleDirectory>
    }

    /// Joins and starts the member's work with `router`: heartbeats (which fence silent
    /// members and take over their exchanges), the link's server, and the loop that
    /// answers turns queued in the database. The router learns to wait for other hubs'
    /// exchanges ([`Router::share_with`]).
    pub async fn start(self: &Arc<Self>, router: &Arc<Router>) {
        if self.router.set(Arc::downgrade(router)).is_err() {
            return;
        }
        // Weakly: the router must not keep the cluster (and its heartbeats) alive after the
        // hub that owns both is gone.
        router.share_with(Arc::new(Liveness(Arc::downgrade(self))));
        member::join(self).await;
        member::refresh_directory(self).await;
        let tasks = vec![
            tokio::spawn(member::heartbeat(Arc::downgrade(self))),
            tokio::spawn(queue::answer_queued(Arc::downgrade(self))),
        ];
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(listener) = listener {
            *self
                .link_server
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(tokio::spawn(link::serve(
                listener,
                Arc::downgrade(self),
                self.closing.clone(),
            )));
        }
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tasks);
    }

    /// Stops the member's work and leaves the cluster, so that the others need not wait
    /// for the member timeout. Call it after the router's shutdown drained the turns this
    /// hub hosts.
    pub async fn stop(&self) {
        // The link first, gracefully: answers of turns the router drained are still being
        // written; new turns are refused and their senders go another way.
        self.closing.cancel();
        let server = self
            .link_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut server) = server {
            if tokio::time::timeout(LINK_CLOSE, &mut server).await.is_err() {
                server.abort();
            }
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        self.directory.forget_peers();
        let Some(member) = self.member() else {
            return;
        };
        match self.table() {
            Ok(table) => {
                if let Err(e) = table.leave(member).await {
                    warn!(error = %e, "could not leave the cluster; others will fence this hub after the member timeout");
                }
            }
            Err(e) => warn!(error = %e, "could not leave the cluster"),
        }
        self.set_member(None);
    }

    /// This hub's membership, once joined (`None` before, or while it joins again after
    /// being fenced).
    pub fn member(&self) -> Option<Member> {
        *self.member.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where other hubs reach this one (`host:port`), if it has a link.
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The hubs sharing the store: alive ones, and those fenced in the last `recent`.
    pub async fn members(&self, recent: Duration) -> Result<Vec<MemberRecord>, StoreError> {
        self.table()?.members(self.member_timeout, recent).await
    }

    /// Which hub wrote each of `conversation`'s turns in `range` (see
    /// [`Members::turn_writers`](colloquy_storage::Members::turn_writers)).
    pub async fn turn_writers(
        &self,
        conversation: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<TurnWriter>, StoreError> {
        self.table()?.turn_writers(conversation, range).await
    }

    /// Modules other alive hubs host (and this one does not), as of the last heartbeat.
    pub fn remote_modules(&self) -> Vec<Arc<ModuleInfo>> {
        self.directory.remote_modules()
    }

    /// Tells the other hubs at once which modules this hub hosts now (after a
    /// registration) instead of at the next heartbeat: a module registered just before the
    /// hub dies is still known as its, and reported unreachable, rather than never seen.
    pub async fn announce(&self) {
        member::announce(self).await;
    }

    pub(crate) fn table(&self) -> Result<&dyn Membership, StoreError> {
        self.store.membership().ok_or(StoreError::Backend {
            backend: self.store.backend(),
            message: "the store no longer offers membership".into(),
        })
    }

    pub(crate) fn router(&self) -> Option<Arc<Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    pub(crate) fn set_member(&self, member: Option<Member>) {
        *self.member.lock().unwrap_or_else(PoisonError::into_inner) = member;
    }

    /// Records that a heartbeat sent at `sent` found this hub unfenced.
    pub(crate) fn confirmed_unfenced(&self, sent: tokio::time::Instant) {
        let mut last = self
            .last_unfenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|last| last < sent) {
            *last = Some(sent);
        }
    }

    /// True while the last heartbeat that found this hub unfenced was sent less than a
    /// member timeout ago: until then no other hub can have fenced it (they fence only
    /// after a member timeout of silence, on the database's clock). A hub paused past that
    /// (SIGSTOP, a long stall) answers no turn until a heartbeat confirms it again.
    pub(crate) fn surely_unfenced(&self) -> bool {
        self.last_unfenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|sent| sent.elapsed() < self.member_timeout)
    }

    pub(crate) fn hosted(&self) -> Vec<ModuleInfo> {
        self.registry
            .list()
            .iter()
            .map(|info| ModuleInfo::clone(info))
            .collect()
    }
}

/// The router's view of the cluster ([`WriterLiveness`]), holding it weakly.
struct Liveness(Weak<Cluster>);

#[async_trait::async_trait]
impl WriterLiveness for Liveness {
    async fn writer_may_be_alive(&self, conversation: ConversationId) -> Result<bool, StoreError> {
        // A cluster that is gone belongs to a hub that is gone: its router asks no more.
        let Some(cluster) = self.0.upgrade() else {
            return Ok(false);
        };
        let held = cluster.table()?.held_by_other(conversation).await;
        if let Ok(true) = held {
            debug!(hub = %cluster.name, conversation_id = %conversation, "another hub's exchange is in progress");
        }
        held
    }
}
