//! [`Router`]: opens conversations, routes messages and applies state changes, a file per
//! job: `open.rs` (open and the handshake), `route.rs` (accepting a request as the next
//! turn, deciding again on a conflict), `deliver.rs` (delivery and the turn's conclusion),
//! `conflict.rs` (the one policy for a write another writer got in before),
//! `apply.rs` (state changes without a turn), `durable.rs` (every store write, retried
//! while the store is unavailable and announced once it landed), `load.rs` (the hot cache
//! under the turn lock), `others.rs` (other writers of a shared store: waiting for their
//! exchanges, taking over a dead one's), `host.rs` (turns other hubs send here), `call.rs`
//! (module calls), `reap.rs` (reaping) and `lifecycle.rs` (shutdown).

mod apply;
mod call;
mod conflict;
mod deliver;
mod durable;
mod host;
mod lifecycle;
mod load;
mod open;
mod others;
mod reap;
mod route;

use std::sync::{
    atomic::{AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex,
};

use colloquy_core::{Conversation, ConversationId, Message, ModuleName};
use colloquy_registry::{ConversationView, ModuleDirectory, Registered};
use colloquy_storage::{ConversationStore, ListCursor, MessageRange, StoreError};
use tokio::sync::{watch, Notify};

use crate::{
    cache::{Hot, HotCache},
    Clock, IdMinter, RouteError, RouterConfig, RouterStats,
};
use lifecycle::Lifecycle;

/// Routes messages between modules through a store, one conversation turn at a time.
///
/// Different conversations proceed in parallel; within one, operations take the
/// conversation's turn lock in arrival order, so turns are contiguous and a reply is stored
/// before the next message is accepted. The store is the truth: the hot state is a cache
/// that is dropped and reloaded whenever a write fails.
pub struct Router {
    store: Arc<dyn ConversationStore>,
    directory: Arc<dyn ModuleDirectory>,
    config: RouterConfig,
    clock: Clock,
    ids: IdMinter,
    cache: HotCache,
    in_flight: AtomicUsize,
    idle: Notify,
    /// The lifecycle, for those who wait for a change (aborted handlers).
    state: watch::Sender<Lifecycle>,
    /// The same value for those who only look, on every turn: a plain load shares the
    /// cache line between cores instead of taking the channel's lock.
    lifecycle: AtomicU8,
    reap_cursor: Mutex<Option<ListCursor>>,
    /// When the reaper plans to wake next (ms; `u64::MAX` when it has no plan).
    reaper_wake: std::sync::atomic::AtomicU64,
    /// Wakes the reaper when a conversation's deadline comes before its plan.
    earlier_deadline: Notify,
    /// Every write that landed, for subscribers (one atomic load per write when none).
    events: tokio::sync::broadcast::Sender<crate::ConversationEvent>,
    /// Who is told each exchange's outcome, each handler's time and each store error.
    observers: crate::observe::Observers,
    /// On a store several hubs share: whether another writer's exchange may still be in
    /// progress (set once, by the cluster).
    others: std::sync::OnceLock<Arc<dyn crate::WriterLiveness>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("store", &self.store.backend())
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over `store` and `directory`.
    pub fn new(
        store: Arc<dyn ConversationStore>,
        directory: Arc<dyn ModuleDirectory>,
        config: RouterConfig,
        clock: Clock,
    ) -> Self {
        let cache = HotCache::new(config.hot_capacity, clock);
        Self {
            store,
            directory,
            config,
            clock,
            ids: IdMinter::new(),
            cache,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            state: watch::Sender::new(Lifecycle::Open),
            lifecycle: AtomicU8::new(Lifecycle::Open as u8),
            reap_cursor: Mutex::new(None),
            reaper_wake: std::sync::atomic::AtomicU64::new(u64::MAX),
            earlier_deadline: Notify::new(),
            events: tokio::sync::broadcast::channel(crate::events::EVENTS_BUFFERED).0,
            observers: crate::observe::Observers::default(),
            others: std::sync::OnceLock::new(),
        }
    }

    /// Shares the store with other writers that `others` knows of (the hubs of a cluster):
    /// from now on a conversation busy with an exchange this router did not start is waited
    /// for while `others` says its writer may be alive, and taken over once it is not. Set
    /// once; a second call is ignored.
    pub fn share_with(&self, others: Arc<dyn crate::WriterLiveness>) {
        let _ = self.others.set(others);
    }

    /// Reports every exchange's outcome and time, every handler's time and every store
    /// error to `observer` from now on (see [`RouterObserver`](crate::RouterObserver)).
    /// Several observers may be added; each is told everything.
    pub fn observe(&self, observer: Arc<dyn crate::RouterObserver>) {
        self.observers.add(observer);
    }

    /// Tells the observers about a store error, and passes it on.
    fn noted(&self, error: StoreError) -> StoreError {
        self.observers.each(|o| o.store_error(&error));
        error
    }

    /// Every write this router makes from now on, as it lands: conversations opened, turns
    /// stored, state changes ([`ConversationEvent`](crate::ConversationEvent)). A subscriber
    /// that falls more than 1,024 events behind is told so (`RecvError::Lagged`) and should
    /// read the store again.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::ConversationEvent> {
        self.events.subscribe()
    }

    /// Announces the event `make` builds, if anyone listens (built only then).
    fn announce(&self, make: impl FnOnce() -> crate::ConversationEvent) {
        if self.events.receiver_count() > 0 {
            // A send fails only when every receiver left meanwhile: nobody to tell.
            let _ = self.events.send(make());
        }
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Forgets every conversation held in memory that no operation is using, so the next
    /// operation on each reads the store's truth (a hub that learns it was fenced calls it:
    /// others may have taken its conversations over). Returns how many were forgotten.
    pub fn forget_idle(&self) -> usize {
        self.cache.evict_idle()
    }

    /// The store as a trait object: calling through `Arc<dyn ..>` itself would go through
    /// the `Arc` forwarding impl and box every future twice.
    fn db(&self) -> &dyn ConversationStore {
        &*self.store
    }

    /// Publishes the deadline of a conversation that came into memory or changed outside a
    /// turn, and wakes the reaper if it is earlier than the reaper's planned wake-up.
    fn publish(&self, slot: &crate::cache::Slot, conversation: &Conversation) {
        slot.publish(conversation);
        if let Some(deadline) = conversation.deadline() {
            if deadline.as_millis() < self.reaper_wake.load(Ordering::Acquire) {
                self.earlier_deadline.notify_one();
            }
        }
    }

    /// The module directory.
    pub fn directory(&self) -> &Arc<dyn ModuleDirectory> {
        &self.directory
    }

    /// Current counters.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            hot: self.cache.len(),
            hot_high_water: self.cache.high_water(),
            hot_capacity: self.cache.capacity(),
            in_flight: self.in_flight.load(Ordering::Acquire),
        }
    }

    fn registered(&self, name: &ModuleName) -> Result<Registered, RouteError> {
        self.directory
            .get(name)
            .ok_or_else(|| RouteError::UnknownTarget {
                target: name.clone(),
                registered: self.directory.names(),
            })
    }

    /// The conversation's stored state (the store is the truth; the hot copy is a cache).
    pub async fn conversation(&self, id: ConversationId) -> Result<Conversation, RouteError> {
        self.db()
            .conversation(id)
            .await?
            .ok_or(RouteError::UnknownConversation { conversation: id })
    }

    /// Messages of a conversation, from the store.
    pub async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, RouteError> {
        self.db().messages(id, range).await.map_err(|e| match e {
            colloquy_storage::StoreError::NotFound { conversation } => {
                RouteError::UnknownConversation { conversation }
            }
            other => other.into(),
        })
    }
}

pub(super) fn view(hot: &Hot) -> ConversationView {
    let c = &hot.conversation;
    ConversationView {
        id: c.id(),
        participants: c.shared_participants(),
        status: c.status().clone(),
        phase: c.phase(),
        intent: c.intent(),
        turn_count: c.turn_count(),
        context: c.shared_context(),
    }
}
