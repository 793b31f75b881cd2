//! [`Router`]: opens conversations, routes messages and applies state changes. Reaping
//! (`reap.rs`), module calls (`call.rs`) and the lifecycle with shutdown (`lifecycle.rs`)
//! are its submodules.

mod call;
mod host;
mod lifecycle;
mod reap;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use colloquy_core::{
    Conversation, ConversationId, CoreError, Draft, HandshakeOutcome, Message, MessageId,
    ModuleName, Status, TurnOutcome,
};
use colloquy_registry::{
    ConversationView, History, Invitation, ModuleDirectory, Registered, Response, Turn,
};
use colloquy_storage::{ConversationStore, ListCursor, MessageRange, StoreError};
use tokio::sync::{watch, Notify};
use tracing::{debug, field, Instrument};

use crate::{
    cache::{Hot, HotCache},
    Change, Clock, ConversationSpec, Exchange, IdMinter, Opened, RouteError, RouteOptions,
    RouterConfig, RouterStats,
};
use call::Work;
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

/// How many times a request refused as a conflict (another writer, such as another hub on
/// the same database, wrote first) is decided again on the reloaded truth. Nothing was
/// delivered yet, so deciding again is safe; the bound keeps a conversation that changes
/// faster than it can be read from looping forever.
const CONFLICT_RETRIES: u32 = 64;

/// A pause of up to `attempt` milliseconds (at most 20), varying with `seed`: enough to
/// break the symmetry between writers that race for the same turn. The seed is the random
/// part of the refused request's id (UUID v7), so no clock is read here (only `clock.rs`
/// reads one).
fn jitter(attempt: u32, seed: MessageId) -> Duration {
    let random = u64::from_le_bytes(
        seed.as_uuid().as_bytes()[8..16]
            .try_into()
            .unwrap_or([0; 8]),
    );
    let ceiling = u64::from(attempt.clamp(1, 20)) * 1_000;
    Duration::from_micros(random % ceiling)
}

/// The longest pause between two reads of a conversation another writer's exchange keeps
/// busy.
const OTHER_EXCHANGE_POLL: Duration = Duration::from_millis(10);

/// How many times a write is tried while the store is unavailable.
const WRITE_ATTEMPTS: u32 = 4;

/// The pause before the first retry of a write; it doubles for each next one.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Runs a store write, again while it fails with [`StoreError::Unavailable`] (a
/// connection that died, a server restarting), at most [`WRITE_ATTEMPTS`] times with
/// [`RETRY_PAUSE`] doubling between them. Returns the last outcome and whether the write
/// was retried (then a refusal may be the first attempt's commit seen from outside).
async fn retrying<T, F, Fut>(mut write: F) -> (Result<T, StoreError>, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match write().await {
            Err(StoreError::Unavailable { .. }) if attempt < WRITE_ATTEMPTS => {
                debug!(attempt, "store unavailable, writing again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            outcome => return (outcome, attempt > 1),
        }
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

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.store
    }

    /// The store as a trait object: calling through `Arc<dyn ..>` itself would go through
    /// the `Arc` forwarding impl and box every future twice.
    fn db(&self) -> &dyn ConversationStore {
        &*self.store
    }

    /// Appends `messages` with `conversation`'s new state, retrying while the store is
    /// unavailable (see [`retrying`]): the same messages with the same state, so a first
    /// attempt that did commit before its answer was lost is found by its message ids (the
    /// store skips them) and never written twice.
    async fn append_durably(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<(), StoreError> {
        let outcome = retrying(|| self.db().append_shared(conversation, messages))
            .await
            .0
            .map_err(|e| self.noted(e))?;
        if outcome.inserted > 0 {
            self.announce(|| crate::ConversationEvent::Stored {
                conversation: Arc::new(conversation.clone()),
                messages: messages
                    .get(outcome.duplicates..)
                    .unwrap_or_default()
                    .to_vec(),
            });
        }
        Ok(())
    }

    /// Creates `conversation`, retrying while the store is unavailable; a retry that finds
    /// the conversation already there finds the first attempt's commit (the id was minted
    /// for this call), so it succeeds.
    async fn create_durably(&self, conversation: &Conversation) -> Result<(), StoreError> {
        match retrying(|| self.db().create(conversation)).await {
            (Err(StoreError::AlreadyExists { .. }), retried) if retried => {}
            (outcome, _) => outcome.map_err(|e| self.noted(e))?,
        }
        self.announce(|| crate::ConversationEvent::Opened {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
    }

    /// Stores `conversation`'s new state, retrying while the store is unavailable; a retry
    /// refused as a conflict succeeds if the stored state is exactly this one (the first
    /// attempt committed before its answer was lost).
    async fn update_durably(&self, conversation: &Conversation) -> Result<(), StoreError> {
        match retrying(|| self.db().update(conversation)).await {
            (Err(conflict @ StoreError::Conflict { .. }), true) => {
                match self.db().conversation(conversation.id()).await {
                    Ok(Some(stored)) if stored == *conversation => {}
                    _ => return Err(self.noted(conflict)),
                }
            }
            (outcome, _) => outcome.map_err(|e| self.noted(e))?,
        }
        self.announce(|| crate::ConversationEvent::Changed {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
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

    /// Opens a conversation and runs the handshake: every invited participant's
    /// `on_invite` is asked in turn (within its deadline). A rejection fails the
    /// conversation; a counter-proposal moves it to Negotiation.
    pub async fn open(&self, spec: ConversationSpec) -> Result<Opened, RouteError> {
        let _flight = self.enter()?;
        let mut modules = Vec::with_capacity(spec.participants.len());
        for name in &spec.participants {
            modules.push(self.registered(name)?);
        }
        let now = self.clock.now();
        let idle_timeout = spec.idle_timeout.unwrap_or(self.config.idle_timeout);
        let mut conversation = Conversation::new(
            spec.id.unwrap_or_else(|| self.ids.conversation(now)),
            spec.participants.clone(),
            spec.intent,
            idle_timeout,
            now,
        )?
        .with_context(spec.context.clone())
        .with_metadata(spec.metadata.clone());
        if let Some(max) = spec.max_turns {
            conversation = conversation.with_max_turns(max);
        }
        conversation.check_json()?;
        let id = conversation.id();
        let span = tracing::debug_span!("open", conversation_id = %id, initiator = %spec.participants.first().map(ModuleName::as_str).unwrap_or_default());
        async {
            self.create_durably(&conversation).await?;
            let invitation = Invitation {
                conversation: id,
                initiator: conversation.initiator().clone(),
                participants: spec.participants.clone(),
                intent: spec.intent,
                context: spec.context,
                metadata: spec.metadata,
            };
            let mut answers = Vec::with_capacity(modules.len().saturating_sub(1));
            for invited in modules.iter().skip(1) {
                let name = invited.info.name.clone();
                let deadline = invited.deadline.unwrap_or(self.config.handler_deadline);
                let work = if invited.delivery.is_inline() {
                    Work::Inline(invited.module.on_invite(&invitation))
                } else {
                    let module = Arc::clone(&invited.module);
                    let invitation = invitation.clone();
                    Work::Task(Box::pin(
                        async move { module.on_invite(&invitation).await }
                            .instrument(tracing::Span::current()),
                    ))
                };
                let answer = self
                    .call(id, &name, deadline, None, work)
                    .await
                    .unwrap_or_else(|e| HandshakeOutcome::Reject {
                        reason: format!("did not answer the invitation: {e}"),
                    });
                debug!(module = %name, outcome = ?answer, "invitation answered");
                answers.push((name, answer));
            }
            let (responder, outcome) = match HandshakeOutcome::combine(answers) {
                Some(found) => found,
                // check_participants guarantees an invitee, so this is never reached.
                None => (conversation.initiator().clone(), HandshakeOutcome::Accept),
            };
            conversation.conclude_handshake(&responder, &outcome, self.clock.now())?;
            conversation.bump_version();
            self.update_durably(&conversation).await?;
            if conversation.status() == &Status::Active {
                let lease = self.cache.lease(id).await;
                let mut state = lease.slot().state.lock().await;
                if state.is_none() {
                    *state = Some(Hot::new(conversation.clone(), VecDeque::new()));
                    self.publish(lease.slot(), &conversation);
                }
            }
            debug!(outcome = ?outcome, "conversation opened");
            Ok(Opened {
                conversation,
                outcome,
                responder,
            })
        }
        .instrument(span)
        .await
    }

    /// Routes one message: accept the turn -> persist -> deliver to the target's handler
    /// within its deadline -> persist the reply (or end / transfer) -> return both.
    ///
    /// The request is acknowledged (stored) before delivery; handler failures, timeouts and
    /// panics come back as typed errors and leave the conversation usable.
    pub async fn route(
        &self,
        id: ConversationId,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let _flight = self.enter()?;
        // Measured only when someone listens.
        let observed = self
            .observers
            .any()
            .then(|| (draft.target.clone(), self.clock.instant()));
        let span = tracing::debug_span!(
            "route",
            conversation_id = %id,
            turn = field::Empty,
            source = %draft.source,
            target = %draft.target,
        );
        // Content too large or too deep is refused before anything happens.
        let result =
            match colloquy_core::check_content(&draft.content, Some(self.config.max_content_bytes))
            {
                Ok(()) => self.route_locked(id, draft, options).instrument(span).await,
                Err(e) => Err(e.into()),
            };
        if let Some((module, started)) = observed {
            let outcome = crate::ExchangeOutcome::of(&result);
            let elapsed = started.elapsed();
            self.observers
                .each(|o| o.exchange(&module, outcome, elapsed));
        }
        result
    }

    async fn route_locked(
        &self,
        id: ConversationId,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let lease = self.cache.lease(id).await;
        if Lifecycle::load(&self.lifecycle, Ordering::Acquire) == Lifecycle::Aborting {
            return Err(RouteError::ShuttingDown);
        }
        let guard = self.lock_loaded(&lease, id).await?;
        let mut guard = self.take_over(&lease, id, guard).await?;
        let mut draft = draft;
        let mut conflicts = 0;
        // Accept the request and store it, conditional on the state it was accepted from.
        // If another writer (another hub on the same database) changed the conversation
        // meanwhile, the store refuses with a conflict: the truth is reloaded and the draft
        // decided again (at most CONFLICT_RETRIES times), before anything was delivered.
        let (message, target, deadline) = loop {
            let Some(hot) = guard.as_mut() else {
                return Err(RouteError::UnknownConversation { conversation: id });
            };
            let now = self.clock.now();
            let target = self.registered(&draft.target);
            let deadline = target
                .as_ref()
                .ok()
                .and_then(|t| options.deadline.or(t.deadline))
                .unwrap_or(self.config.handler_deadline);
            let accepted = hot.conversation.begin_turn(
                draft,
                options.message_id.unwrap_or_else(|| self.ids.message(now)),
                now,
                now.saturating_add(deadline),
            );
            let message = match accepted {
                Ok(message) => Arc::new(message),
                Err(e) => {
                    debug!(error = %e, "draft refused");
                    if matches!(e, CoreError::Expired { .. }) {
                        self.expire(&mut guard, now).await;
                        drop(guard);
                        self.cache.forget(id, lease);
                    }
                    return Err(e.into());
                }
            };
            let target = match target {
                Ok(target) => target,
                Err(e) => {
                    // Accepted only in memory: undo by reloading the truth next time.
                    *guard = None;
                    return Err(e);
                }
            };
            hot.conversation.bump_version();
            tracing::Span::current().record("turn", message.turn);
            match self
                .append_durably(&hot.conversation, std::slice::from_ref(&message))
                .await
            {
                Ok(()) => {
                    lease.slot().stored_request(hot.conversation.version());
                    break (message, target, deadline);
                }
                Err(StoreError::Conflict { .. }) if conflicts < CONFLICT_RETRIES => {
                    // A caller's own id may conflict because that very request was stored
                    // before: then it is answered as such, never stored again.
                    if options.message_id.is_some() {
                        match self.db().message(message.id).await {
                            Ok(Some(stored)) => {
                                *guard = None;
                                return Err(RouteError::AlreadyStored {
                                    conversation: stored.conversation_id,
                                    message: stored.id,
                                    turn: stored.turn,
                                });
                            }
                            Ok(None) => {}
                            Err(e) => {
                                *guard = None;
                                return Err(e.into());
                            }
                        }
                    }
                    debug!("request conflicts with the stored conversation, reloading");
                    let refused = message.id;
                    draft = redraft(message);
                    *guard = None;
                    let reloaded = match self.load(&mut guard, id).await {
                        Ok(_) => {
                            self.wait_for_other_exchange(lease.slot(), &mut guard, id)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    match reloaded {
                        // Another writer's exchange was waited for: it made progress, and
                        // this is not a race lost; only races count against the bound.
                        Ok(true) => {}
                        Ok(false) => {
                            conflicts += 1;
                            // A race lost to another writer: step aside for a moment of
                            // varying length, so that the same writer does not win every
                            // time (writers that always lose would otherwise starve).
                            tokio::time::sleep(jitter(conflicts, refused)).await;
                        }
                        Err(e) => {
                            drop(guard);
                            self.cache.forget_held(id, &lease);
                            return Err(e);
                        }
                    }
                    guard = self.take_over(&lease, id, guard).await?;
                }
                Err(e) => {
                    debug!(error = %e, "request not stored");
                    *guard = None;
                    return Err(e.into());
                }
            }
        };
        let exchange = self
            .deliver_stored(&lease, guard, message, &target, deadline, &options, false)
            .await?;
        if exchange.status.is_terminal() {
            self.cache.forget(id, lease);
        }
        Ok(exchange)
    }

    /// Delivers a stored request to its target and concludes the turn with the answer (or
    /// its absence): the second half of [`Router::route`], and what a takeover runs for a
    /// dead writer's unanswered request. `in_history`: the request is already in the hot
    /// history (it was loaded from the store).
    #[allow(clippy::too_many_arguments)] // the parts of one exchange, passed once
    async fn deliver_stored(
        &self,
        lease: &crate::cache::Lease<'_>,
        mut guard: tokio::sync::MutexGuard<'_, Option<Hot>>,
        message: Arc<Message>,
        target: &Registered,
        deadline: Duration,
        options: &RouteOptions,
        in_history: bool,
    ) -> Result<Exchange, RouteError> {
        let id = message.conversation_id;
        let Some(hot) = guard.as_mut() else {
            return Err(RouteError::UnknownConversation { conversation: id });
        };
        let turn = Turn {
            message: Arc::clone(&message),
            conversation: view(hot),
            history: History::new(Arc::clone(&hot.history)),
            deadline,
        };
        debug!("request stored, delivering");
        if let Some(hook) = &options.on_stored {
            hook.call(&message);
        }
        // Busy until the reply is due: the reaper need not look before then.
        lease.slot().publish(&hot.conversation);
        let work = if target.delivery.is_inline() {
            Work::Inline(target.module.handle(turn))
        } else {
            let module = Arc::clone(&target.module);
            // The task keeps the turn's span, so the handler's own events carry the
            // conversation, turn, source and target.
            Work::Task(Box::pin(
                async move { module.handle(turn).await }.instrument(tracing::Span::current()),
            ))
        };
        let started = self.observers.any().then(|| self.clock.instant());
        let called = self
            .call(id, &message.target, deadline, options.cancel.as_ref(), work)
            .await;
        if let Some(started) = started {
            let elapsed = started.elapsed();
            self.observers.each(|o| o.handled(&message.target, elapsed));
        }
        // The request is stored whatever the handler did. Remembered only now, after the
        // handler's future (and the turn's share of the history) is gone, so the window
        // changes in place instead of being copied.
        if !in_history {
            hot.remember(Arc::clone(&message), self.config.history_window);
        }
        let response = called.and_then(|answer| {
            answer.map_err(|e| RouteError::HandlerFailed {
                conversation: id,
                module: message.target.clone(),
                message: e.message().to_owned(),
            })
        });
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                debug!(error = %e, "no answer from the handler");
                // The turn is over: idleness counts from now, in the store too.
                hot.conversation.end_turn(self.clock.now());
                hot.conversation.bump_version();
                if let Err(store) = self.update_durably(&hot.conversation).await {
                    debug!(error = %store, "end of turn not stored");
                    *guard = None;
                }
                return Err(e);
            }
        };
        let exchange = match self.apply_response(hot, &message, response).await {
            Ok(exchange) => exchange,
            Err(e) => {
                debug!(error = %e, "response not applied");
                *guard = None;
                return Err(e);
            }
        };
        debug!(reply = exchange.reply.as_ref().map(|r| r.turn), status = %exchange.status, "turn complete");
        // The turn is over: the deadline counts from now, usually earlier than the busy one
        // published with the request (the reaper is woken only if that is before its plan).
        self.publish(lease.slot(), &hot.conversation);
        if exchange.status.is_terminal() {
            // Ended: the caller forgets the slot (it holds the lease).
            *guard = None;
        }
        Ok(exchange)
    }

    /// Concludes the turn with the handler's response (core decides, all or nothing) and
    /// stores it in one write. On error the caller drops the hot state, so a half-applied
    /// response is never kept.
    async fn apply_response(
        &self,
        hot: &mut Hot,
        request: &Arc<Message>,
        response: Response,
    ) -> Result<Exchange, RouteError> {
        let outcome = TurnOutcome::from(response);
        if let Some(to) = &outcome.transfer_to {
            self.registered(to)?;
        }
        // What it takes to decide the same answer again on a reloaded state (the reply's
        // content is taken back from the reply itself, so nothing large is copied unless
        // a retry happens).
        let again = (
            outcome.context_patch.clone(),
            outcome.transfer_to.clone(),
            outcome.end,
        );
        let now = self.clock.now();
        let reply = self.conclude(hot, request, outcome, now)?;
        let written = self.write_conclusion(hot, reply.as_ref()).await;
        let reply = match written {
            Ok(()) => reply,
            // Another writer (another hub) changed the conversation while the handler
            // worked, say a context patch. If nothing was appended since this request,
            // the answer still stands: decide it again on the stored state, once.
            Err(conflict @ RouteError::Storage(StoreError::Conflict { .. })) => {
                let id = hot.conversation.id();
                let fresh = self
                    .db()
                    .conversation(id)
                    .await?
                    .ok_or(RouteError::UnknownConversation { conversation: id })?;
                if fresh.turn_count() != request.turn {
                    return Err(conflict);
                }
                debug!("reply conflicts with another writer's change, deciding it again");
                hot.conversation = fresh;
                let (context_patch, transfer_to, end) = again;
                let mut outcome = TurnOutcome::nothing();
                outcome.reply = reply.map(|r| (r.kind, r.content.clone()));
                outcome.context_patch = context_patch;
                outcome.transfer_to = transfer_to;
                outcome.end = end;
                let reply = self.conclude(hot, request, outcome, now)?;
                self.write_conclusion(hot, reply.as_ref()).await?;
                reply
            }
            Err(e) => return Err(e),
        };
        if let Some(reply) = &reply {
            hot.remember(Arc::clone(reply), self.config.history_window);
        }
        Ok(Exchange {
            request: Arc::clone(request),
            reply,
            status: hot.conversation.status().clone(),
            participants: hot.conversation.shared_participants(),
        })
    }

    /// Core concludes the turn on the hot state (all or nothing) and mints the reply.
    fn conclude(
        &self,
        hot: &mut Hot,
        request: &Message,
        outcome: TurnOutcome,
        now: colloquy_core::Timestamp,
    ) -> Result<Option<Arc<Message>>, RouteError> {
        hot.conversation
            .conclude_turn(
                request,
                outcome,
                self.ids.message(now),
                now,
                Some(self.config.max_content_bytes),
            )
            .map(|reply| reply.map(Arc::new))
            .map_err(|refusal| RouteError::InvalidResponse {
                conversation: hot.conversation.id(),
                module: request.target.clone(),
                refusal,
            })
    }

    /// One write ends the turn: the reply with the new state, or the new state alone.
    async fn write_conclusion(
        &self,
        hot: &mut Hot,
        reply: Option<&Arc<Message>>,
    ) -> Result<(), RouteError> {
        hot.conversation.bump_version();
        match reply {
            Some(reply) => {
                self.append_durably(&hot.conversation, std::slice::from_ref(reply))
                    .await?;
            }
            None => self.update_durably(&hot.conversation).await?,
        }
        Ok(())
    }

    /// Applies a state change under the conversation's turn lock and stores it.
    pub async fn apply(
        &self,
        id: ConversationId,
        change: Change,
    ) -> Result<Conversation, RouteError> {
        let _flight = self.enter()?;
        let span = tracing::debug_span!("change", conversation_id = %id, change = ?change);
        async {
            let lease = self.cache.lease(id).await;
            let mut guard = self.lock_loaded(&lease, id).await?;
            let mut retried = false;
            loop {
                let Some(hot) = guard.as_mut() else {
                    return Err(RouteError::UnknownConversation { conversation: id });
                };
                let now = self.clock.now();
                let mut next = hot.conversation.clone();
                match &change {
                    Change::Pause => next.pause(now)?,
                    Change::Resume => next.resume(now)?,
                    Change::Complete => next.complete(now)?,
                    Change::Fail(reason) => next.fail(reason.clone(), now)?,
                    Change::Transfer { from, to } => {
                        self.registered(to)?;
                        next.transfer(from, to.clone(), now)?;
                    }
                    Change::Phase(phase) => next.advance_phase(*phase, now)?,
                    Change::Patch(patch) => next.apply_context_patch(patch, now)?,
                    Change::IdleTimeout(timeout) => next.set_idle_timeout(*timeout)?,
                    Change::MaxTurns(max_turns) => next.set_max_turns(*max_turns)?,
                }
                next.bump_version();
                match self.update_durably(&next).await {
                    Ok(()) => {}
                    // Another writer changed the conversation: decide again on the truth,
                    // once (nothing was delivered, so deciding again is safe).
                    Err(StoreError::Conflict { .. }) if !retried => {
                        debug!("change conflicts with the stored conversation, reloading");
                        retried = true;
                        *guard = None;
                        if let Err(e) = self.load(&mut guard, id).await {
                            drop(guard);
                            self.cache.forget_held(id, &lease);
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => {
                        *guard = None;
                        return Err(e.into());
                    }
                }
                debug!(status = %next.status(), "change stored");
                hot.conversation = next.clone();
                // A shorter idle timeout may bring the deadline forward.
                self.publish(lease.slot(), &next);
                if next.status().is_terminal() {
                    *guard = None;
                    drop(guard);
                    self.cache.forget(id, lease);
                }
                return Ok(next);
            }
        }
        .instrument(span)
        .await
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

    /// Takes the slot's turn lock and loads the conversation into it if needed; an unknown
    /// conversation's empty slot leaves the cache again.
    async fn lock_loaded<'l>(
        &self,
        lease: &'l crate::cache::Lease<'_>,
        id: ConversationId,
    ) -> Result<tokio::sync::MutexGuard<'l, Option<Hot>>, RouteError> {
        let mut guard = lease.slot().state.lock().await;
        let cold = guard.is_none();
        let loaded = match self.load(&mut guard, id).await {
            Ok(_) if cold => self
                .wait_for_other_exchange(lease.slot(), &mut guard, id)
                .await
                .map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            drop(guard);
            self.cache.forget_held(id, lease);
            return Err(e);
        }
        if let (true, Some(hot)) = (cold, guard.as_ref()) {
            self.publish(lease.slot(), &hot.conversation);
        }
        Ok(guard)
    }

    /// Concludes the exchange a dead writer left in conversation `id`, if it has one: its
    /// request is delivered again to its module, under its own message id, and the reply
    /// written (at-least-once to the handler, exactly once in the transcript). What a hub
    /// runs for the conversations it claimed from a fenced member
    /// (the cluster's orphan claims), so that they need not wait for their next sender.
    /// `Ok(true)`: a reply (or the conversation's end) was stored for it.
    pub async fn take_over_exchange(&self, id: ConversationId) -> Result<bool, RouteError> {
        let _flight = self.enter()?;
        let span = tracing::debug_span!("take_over", conversation_id = %id);
        async {
            let lease = self.cache.lease(id).await;
            // The claim says another member wrote the conversation since this hub last saw
            // it: a copy held in memory is stale (it would not show the exchange at all).
            *lease.slot().state.lock().await = None;
            let guard = self.lock_loaded(&lease, id).await?;
            let before = guard.as_ref().map(|hot| hot.conversation.version());
            let guard = self.take_over(&lease, id, guard).await?;
            let after = guard.as_ref().map(|hot| hot.conversation.version());
            let ended = guard
                .as_ref()
                .is_none_or(|hot| hot.conversation.status().is_terminal());
            drop(guard);
            if ended {
                self.cache.forget(id, lease);
            }
            Ok(after != before)
        }
        .instrument(span)
        .await
    }

    /// Concludes a dead writer's exchange, if the conversation held by `guard` has one
    /// ([`Router::orphaned_request`]): its request is delivered again, under its own message
    /// id, and its reply written; then the conversation is locked and loaded again (the
    /// exchange may have ended it, and then the caller's request is refused as for any ended
    /// conversation).
    async fn take_over<'l>(
        &self,
        lease: &'l crate::cache::Lease<'_>,
        id: ConversationId,
        guard: tokio::sync::MutexGuard<'l, Option<Hot>>,
    ) -> Result<tokio::sync::MutexGuard<'l, Option<Hot>>, RouteError> {
        let Some((request, target, deadline)) = self.orphaned_request(lease.slot(), &guard) else {
            return Ok(guard);
        };
        debug!(request = %request.id, "delivering a dead writer's request again");
        let resumed = self
            .deliver_stored(
                lease,
                guard,
                request,
                &target,
                deadline,
                &RouteOptions::default(),
                true,
            )
            .await;
        debug!(
            resumed = resumed.is_ok(),
            "a dead writer's exchange concluded"
        );
        self.lock_loaded(lease, id).await
    }

    /// The request of an exchange a dead writer left without an answer, with its target and
    /// deadline, on a store several hubs share: the conversation is still busy after
    /// [`Router::wait_for_other_exchange`] gave up waiting (the writer was fenced, or its
    /// deadline passed), the busy state is not this router's own, and its last turn is a
    /// request. On a store of one process a crash's leftover request stays unanswered (the
    /// next exchange follows it).
    fn orphaned_request(
        &self,
        slot: &crate::cache::Slot,
        state: &Option<Hot>,
    ) -> Option<(Arc<Message>, Registered, Duration)> {
        self.others.get()?;
        let hot = state.as_ref()?;
        hot.conversation.busy_until()?;
        if slot.is_own_request(hot.conversation.version()) {
            return None;
        }
        let last = hot.history.back()?;
        if last.turn != hot.conversation.turn_count()
            || last.kind != colloquy_core::MessageKind::Request
        {
            return None;
        }
        let target = self.registered(&last.target).ok()?;
        let deadline = target.deadline.unwrap_or(self.config.handler_deadline);
        Some((Arc::clone(last), target, deadline))
    }

    /// One order across writers: while the conversation just loaded is in an exchange that
    /// another writer started (another hub on the same database: stored busy, and not at the
    /// version of this router's own last request), waits for that exchange to end (its
    /// reply written, or its deadline passed), re-reading the store with a pause that
    /// doubles up to [`OTHER_EXCHANGE_POLL`]. So this router's request never lands between
    /// another's request and its reply.
    ///
    /// Only while that writer may be alive ([`WriterLiveness`](crate::WriterLiveness)): on a store of one
    /// process (no membership), or once the member that wrote the exchange is fenced (dead,
    /// or gone), a busy state left behind is a dead writer's and is not waited for.
    async fn wait_for_other_exchange(
        &self,
        slot: &crate::cache::Slot,
        state: &mut Option<Hot>,
        id: ConversationId,
    ) -> Result<bool, RouteError> {
        let mut pause = Duration::from_millis(1);
        let mut waited = false;
        loop {
            let Some(hot) = state.as_ref() else {
                return Ok(waited);
            };
            let now = self.clock.now();
            let Some(until) = hot.conversation.busy_until().filter(|until| *until > now) else {
                return Ok(waited);
            };
            if slot.is_own_request(hot.conversation.version()) {
                return Ok(waited);
            }
            let held = match self.others.get() {
                Some(others) => others.writer_may_be_alive(id).await?,
                None => false,
            };
            if !held {
                return Ok(waited);
            }
            waited = true;
            debug!(conversation_id = %id, "another writer's exchange is in progress, waiting");
            tokio::time::sleep(pause.min(until.saturating_duration_since(now))).await;
            pause = pause.saturating_mul(2).min(OTHER_EXCHANGE_POLL);
            *state = None;
            self.load(state, id).await?;
        }
    }

    /// Loads the conversation into the slot if it is not there yet.
    async fn load<'g>(
        &self,
        state: &'g mut Option<Hot>,
        id: ConversationId,
    ) -> Result<&'g mut Hot, RouteError> {
        if state.is_none() {
            let conversation = self
                .db()
                .conversation(id)
                .await
                .map_err(|e| self.noted(e))?
                .ok_or(RouteError::UnknownConversation { conversation: id })?;
            let window = self.config.history_window as u64;
            let history = if window == 0 || conversation.turn_count() == 0 {
                VecDeque::new()
            } else {
                self.db()
                    .messages(id, MessageRange::Last(window))
                    .await
                    .map_err(|e| self.noted(e))?
                    .into_iter()
                    .map(Arc::new)
                    .collect()
            };
            debug!(conversation_id = %id, turns = conversation.turn_count(), "conversation loaded from the store");
            *state = Some(Hot::new(conversation, history));
        }
        match state.as_mut() {
            Some(hot) => Ok(hot),
            None => Err(RouteError::UnknownConversation { conversation: id }),
        }
    }
}

/// The draft a refused request was accepted from, to decide it again after a reload.
fn redraft(message: Arc<Message>) -> Draft {
    let message = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
    Draft {
        source: message.source,
        target: message.target,
        kind: message.kind,
        content: message.content,
        in_reply_to: message.in_reply_to,
    }
}

fn view(hot: &Hot) -> ConversationView {
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
