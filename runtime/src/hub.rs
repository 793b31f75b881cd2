//! [`Hub`]: registering modules, the cluster it is part of, health, shutdown. Its
//! submodules: [`HubBuilder`] (`builder.rs`), opening and holding conversations
//! (`conversations.rs`) and the background reaper (`reaper.rs`).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use colloquy_core::{
    Capability, Conversation, ConversationId, Message, ModuleInfo, ModuleName, Timestamp,
};
use colloquy_registry::{Module, ModuleDirectory, Registration, Registry};
use colloquy_router::{Clock, ReapReport, Router, RouterObserver, RouterStats, ShutdownReport};
use colloquy_storage::{Analytics, ConversationStore, TimeRange};
use tokio::{sync::Notify, task::JoinHandle};
use tracing::{debug, warn};

use crate::HubError;

mod builder;
mod conversations;
mod reaper;

pub use builder::HubBuilder;

pub(crate) struct HubInner {
    /// The store, for what the hub itself reads and records (module registrations, health,
    /// analytics, the reader it hands out); conversation writes go through the router.
    store: Arc<dyn ConversationStore>,
    pub(crate) router: Arc<Router>,
    pub(crate) registry: Arc<Registry>,
    reaper: Mutex<Option<JoinHandle<()>>>,
    reaper_stop: Arc<Notify>,
    last_reap: Mutex<Option<(Timestamp, ReapReport)>>,
    /// Conversations the reaper timed out since the hub started.
    timed_out_total: AtomicU64,
    reaper_interval: Duration,
    started: Timestamp,
    cold_after: Duration,
    /// This hub as a member of the cluster, on a store several hubs share.
    cluster: Option<Arc<colloquy_cluster::Cluster>>,

    drain: Duration,
}

impl HubInner {
    /// Remembers what a reaper pass did, for health.
    fn record_reap(&self, now: Timestamp, report: ReapReport) {
        self.timed_out_total
            .fetch_add(report.timed_out as u64, Ordering::Relaxed);
        *self
            .last_reap
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((now, report));
    }
}

/// The entry point: modules register with it and converse through it.
///
/// Cloning is cheap and every clone is the same hub. See the crate docs for a full example.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("router", &self.inner.router)
            .finish()
    }
}

/// What [`Hub::health`] found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// True when the store answers, the reaper is running and the hub is not shutting down.
    pub healthy: bool,
    /// Why it is not healthy (empty when healthy).
    pub problems: Vec<String>,
    /// How long a store ping took, if it answered.
    pub store_latency: Option<Duration>,
    /// Active conversations stale by the threshold asked for (idle past their own timeout
    /// by default: the reaper has not reached them yet); at most 100 listed.
    pub stale_conversations: Vec<ConversationId>,
    /// Operations in progress and memory use of the hot set.
    pub router: RouterStats,
    /// When the reaper last ran, and what it did.
    pub reaper_last_run: Option<(Timestamp, ReapReport)>,
    /// Conversations this hub's reaper timed out since the hub started. On a database
    /// several hubs share, each expired conversation is counted by exactly one of them.
    pub timed_out_total: u64,
    /// Registered modules.
    pub modules: Vec<ModuleName>,
}

/// One module's answer to a [`Hub::broadcast`].
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastReply {
    /// The module.
    pub module: ModuleName,
    /// Its reply (`None` if it did not reply), or why it failed.
    pub result: Result<Option<Arc<Message>>, HubError>,
}

impl Hub {
    /// Starts configuring a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Registers `module` under its declared name (a duplicate name is an error) and
    /// records the registration in the store.
    pub async fn register(&self, module: impl Module) -> Result<(), HubError> {
        self.register_with(Arc::new(module), Registration::new())
            .await
    }

    /// Registers an already shared module with options (replace, deadline).
    pub async fn register_with(
        &self,
        module: Arc<dyn Module>,
        registration: Registration,
    ) -> Result<(), HubError> {
        let registered = self.inner.registry.register(module, registration)?;
        let now = self.router().clock().now();
        if let Err(e) = self.store().record_module(&registered.info, now).await {
            // Keep registry and store in step: a registration that cannot be recorded is
            // undone.
            let _ = self.inner.registry.unregister(&registered.info.name);
            return Err(e.into());
        }
        if let Some(cluster) = &self.inner.cluster {
            cluster.announce().await;
        }
        debug!(module = %registered.info.name, "module registered");
        Ok(())
    }

    /// Registers the participants network clients speak as ([`Caller`](colloquy_registry::Caller)s,
    /// described as `description`: who speaks through them), replacing earlier
    /// registrations of the same callers.
    ///
    /// Errors: [`HubError::CallerIsModule`] when one of `names` is a module (not a caller)
    /// the hub reaches, here or on another hub of its cluster: a caller would take the
    /// module's place. Nothing is registered then.
    pub async fn register_callers(
        &self,
        names: &[ModuleName],
        description: &str,
    ) -> Result<(), HubError> {
        let modules = self.reachable_modules();
        if let Some(name) = names
            .iter()
            .find(|n| modules.iter().any(|m| &m.name == *n && !m.is_caller()))
        {
            return Err(HubError::CallerIsModule {
                participant: name.clone(),
            });
        }
        for name in names {
            let caller = colloquy_registry::Caller::new(name.clone(), description);
            self.register_with(Arc::new(caller), Registration::new().replacing())
                .await?;
        }
        Ok(())
    }

    /// Removes a module. Conversations it takes part in stay; messages to it fail with
    /// an unknown-target error until it is registered again.
    pub fn unregister(&self, name: &ModuleName) -> Result<(), HubError> {
        self.inner.registry.unregister(name)?;
        Ok(())
    }

    /// What every registered module declared, sorted by name. (Registering goes through
    /// [`register`](Self::register), which also records the module in the store.)
    pub fn modules(&self) -> Vec<Arc<ModuleInfo>> {
        self.inner.registry.list()
    }

    /// This hub's membership in the cluster of hubs sharing its store (PostgreSQL); `None`
    /// on a store of one process, or before it could join.
    pub fn member(&self) -> Option<colloquy_storage::Member> {
        self.inner.cluster.as_ref()?.member()
    }

    /// True on a store several hubs share: other hubs write conversations this hub's
    /// [`subscribe`](Self::subscribe) does not announce (a live view reads the store too).
    pub fn in_cluster(&self) -> bool {
        self.inner.cluster.is_some()
    }

    /// Where other hubs of the cluster reach this one (`host:port` of its link); `None`
    /// on a store of one process, or without a link.
    pub fn cluster_address(&self) -> Option<&str> {
        self.inner.cluster.as_ref()?.address()
    }

    /// The hubs sharing this hub's store: alive ones, and those fenced in the last minute;
    /// `None` on a store of one process.
    pub async fn members(&self) -> Option<Result<Vec<colloquy_storage::MemberRecord>, HubError>> {
        let cluster = self.inner.cluster.as_ref()?;
        Some(
            cluster
                .members(Duration::from_secs(60))
                .await
                .map_err(HubError::from),
        )
    }

    /// On a store several hubs share: which hub wrote each of `conversation`'s turns in
    /// `range`, in turn order. `None` for a hub outside a cluster (every turn is its own).
    pub async fn turn_writers(
        &self,
        conversation: ConversationId,
        range: colloquy_storage::MessageRange,
    ) -> Option<Result<Vec<colloquy_storage::TurnWriter>, colloquy_storage::StoreError>> {
        let cluster = self.inner.cluster.as_ref()?;
        Some(cluster.turn_writers(conversation, range).await)
    }

    /// The registered modules that declare `capability`.
    pub fn modules_with(&self, capability: &Capability) -> Vec<Arc<ModuleInfo>> {
        self.inner.registry.find_by_capability(capability)
    }

    /// Every module a conversation on this hub can address, sorted by name: the ones
    /// registered here and, on a store several hubs share, those the other alive hubs host
    /// (learnt at each heartbeat).
    pub fn reachable_modules(&self) -> Vec<Arc<ModuleInfo>> {
        let mut all = self.modules();
        if let Some(cluster) = &self.inner.cluster {
            all.extend(cluster.remote_modules());
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The store, for reading only: every conversation write goes through the router, under
    /// the conversation's turn lock.
    pub fn reader(&self) -> crate::StoreReader {
        crate::StoreReader::new(Arc::clone(self.store()))
    }

    fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.inner.store
    }

    /// The hub's clock.
    pub fn clock(&self) -> &Clock {
        self.router().clock()
    }

    /// Reports every exchange's outcome and time, every handler's time and every store
    /// error to `observer` from now on, for metrics (the A2A front's `/metrics` is one).
    pub fn observe(&self, observer: Arc<dyn RouterObserver>) {
        self.router().observe(observer);
    }

    /// Cheap counters: hot conversations, the hot set's high-water mark, in-flight turns.
    pub fn stats(&self) -> RouterStats {
        self.router().stats()
    }

    /// Every write this hub makes from now on, as it lands: conversations opened, turns
    /// stored, state changes (see [`ConversationEvent`](crate::ConversationEvent)). A
    /// subscriber that falls more than 1,024 events behind is told so (`RecvError::Lagged`)
    /// and should read the store again. Writes of other hubs sharing the database are not
    /// included ([`in_cluster`](Self::in_cluster) says whether there may be any).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::ConversationEvent> {
        self.inner.router.subscribe()
    }

    /// Conversations this hub's reaper timed out since the hub started (as in
    /// [`Health::timed_out_total`], without the checks `health` makes).
    pub fn timed_out_total(&self) -> u64 {
        self.inner.timed_out_total.load(Ordering::Relaxed)
    }

    /// Checks the store, the reaper and the hot set. Active conversations idle for
    /// `stale_after` (each one's own idle timeout when `None`) are listed as stale, by the
    /// same rule as `colloquy health --stale-after` ([`find_stale`](crate::find_stale)).
    pub async fn health(&self, stale_after: Option<Duration>) -> Health {
        let router = self.router();
        let mut problems = Vec::new();
        let started = tokio::time::Instant::now();
        let store_latency = match self.store().as_ref().ping().await {
            Ok(()) => Some(started.elapsed()),
            Err(e) => {
                problems.push(format!("store does not answer: {e}"));
                None
            }
        };
        let now = router.clock().now();
        let mut stale_conversations = Vec::new();
        match crate::find_stale(self.store().as_ref(), now, stale_after, 100).await {
            Ok(scan) => stale_conversations.extend(scan.stale.iter().map(Conversation::id)),
            Err(e) => problems.push(format!("cannot list active conversations: {e}")),
        }
        let reaper_last_run = *self
            .inner
            .last_reap
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The reaper sleeps until it is due; it has stopped if it is well past that.
        let due = router.planned_reap().unwrap_or(self.inner.started);
        let grace = self.inner.reaper_interval + Duration::from_secs(1);
        let reaper_overdue = self.reaper_finished() || router.clock().since(due) > grace;
        if reaper_overdue && !router.is_shutting_down() {
            problems
                .push("the reaper has stopped: idle conversations are not being timed out".into());
        }
        if router.is_shutting_down() {
            problems.push("the hub is shutting down".into());
        }
        Health {
            healthy: problems.is_empty(),
            problems,
            store_latency,
            stale_conversations,
            router: router.stats(),
            reaper_last_run,
            timed_out_total: self.inner.timed_out_total.load(Ordering::Relaxed),
            modules: self.inner.registry.names(),
        }
    }

    fn reaper_finished(&self) -> bool {
        self.inner
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }

    /// Aggregates over the conversations started within `range`, computed by the store.
    pub async fn analytics(&self, range: TimeRange) -> Result<Analytics, HubError> {
        Ok(self.store().as_ref().analytics(range).await?)
    }

    /// Runs one full reaper pass now: the conversations in memory, then a catch-up batch of
    /// stored ones (the background reaper does the first at their deadlines and the second
    /// every `reaper_interval`).
    pub async fn reap(&self) -> ReapReport {
        let report = self.router().reap(self.inner.cold_after).await;
        self.inner.record_reap(self.clock().now(), report);
        report
    }

    /// Stops taking new turns, lets in-flight ones finish within the drain timeout (aborting
    /// the rest with a typed error), stops the reaper and closes the store. Every caller
    /// gets an answer; calling it twice is harmless.
    pub async fn shutdown(&self) -> ShutdownReport {
        let report = self.router().shutdown(self.inner.drain).await;
        self.inner.reaper_stop.notify_waiters();
        let task = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        // After the drain: the turns this hub hosted for others are answered by now.
        if let Some(cluster) = &self.inner.cluster {
            cluster.stop().await;
        }
        if let Err(e) = self.store().close().await {
            warn!(error = %e, "closing the store failed");
        }
        debug!(?report, "hub shut down");
        report
    }
}
