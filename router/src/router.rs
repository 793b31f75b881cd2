//! [`Router`]: opens conversations, routes messages, applies state changes, reaps idle
//! conversations and drains on shutdown.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use colloquy_core::{
    Conversation, ConversationId, CoreError, Draft, HandshakeOutcome, Intent, Message, ModuleName,
    Phase, Status, Timestamp, TurnOutcome,
};
use colloquy_registry::{
    ConversationView, Delivery, History, Invitation, ModuleDirectory, Registered, Response, Turn,
};
use colloquy_storage::{ConversationStore, ListCursor, ListFilter, MessageRange, StoreError};
use serde_json::{Map, Value};
use tokio::sync::{watch, Notify};
use tracing::{debug, field, Instrument};

use crate::{
    cache::{Hot, HotCache},
    Clock, IdMinter, RouteError,
};

/// Settings of a [`Router`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Idle timeout of conversations that do not set their own. Default 300 s.
    pub idle_timeout: Duration,
    /// Handler deadline of modules that do not set their own. Default 30 s.
    pub handler_deadline: Duration,
    /// Recent messages handed to handlers with each turn. Default 20.
    pub history_window: usize,
    /// Most conversations held in memory at once. Default 1,000.
    pub hot_capacity: usize,
    /// Largest message content accepted, in bytes of JSON. Default 1 MiB.
    pub max_content_bytes: usize,
    /// Active conversations the reaper checks in the store per pass. Default 500.
    pub reap_batch: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            handler_deadline: Duration::from_secs(30),
            history_window: 20,
            hot_capacity: 1_000,
            max_content_bytes: 1 << 20,
            reap_batch: 500,
        }
    }
}

/// What to open.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OpenSpec {
    /// Participants, initiator first (at least two, all registered).
    pub participants: Vec<ModuleName>,
    /// Why.
    pub intent: Intent,
    /// Overrides the default idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Limits the number of turns.
    pub max_turns: Option<u64>,
    /// Initial shared context.
    pub context: Map<String, Value>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
}

impl OpenSpec {
    /// A conversation between `participants` (initiator first) with `intent`.
    pub fn new(participants: Vec<ModuleName>, intent: Intent) -> Self {
        Self {
            participants,
            intent,
            idle_timeout: None,
            max_turns: None,
            context: Map::new(),
            metadata: Map::new(),
        }
    }
}

/// The result of [`Router::open`].
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The conversation as stored after the handshake.
    pub conversation: Conversation,
    /// The combined answer: the first rejection, else the first counter-proposal, else
    /// acceptance.
    pub outcome: HandshakeOutcome,
    /// Who gave that answer.
    pub responder: ModuleName,
}

/// Per-call options of [`Router::route`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteOptions {
    /// Overrides the target's handler deadline for this call.
    pub deadline: Option<Duration>,
}

impl RouteOptions {
    /// With a handler deadline for this call.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
        }
    }
}

/// A routed message and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The request as stored.
    pub request: Arc<Message>,
    /// The reply as stored, if the handler replied.
    pub reply: Option<Arc<Message>>,
    /// The conversation's status afterwards.
    pub status: Status,
    /// Its participants afterwards (they change on transfer).
    pub participants: Arc<[ModuleName]>,
}

/// A state change applied under the conversation's turn lock.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// Active -> Paused.
    Pause,
    /// Paused -> Active.
    Resume,
    /// -> Completed.
    Complete,
    /// -> Failed with a reason.
    Fail(String),
    /// Replace participant `from` with the registered module `to`.
    Transfer {
        /// The leaving participant.
        from: ModuleName,
        /// The arriving module.
        to: ModuleName,
    },
    /// Move to a later phase.
    Phase(Phase),
    /// Merge a patch into the shared context.
    Patch(Map<String, Value>),
    /// Change the idle timeout (must be positive).
    IdleTimeout(Duration),
    /// Change the turn limit (`None` removes it; not below the turns already taken).
    MaxTurns(Option<u64>),
}

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Conversations marked TimedOut.
    pub timed_out: usize,
    /// Cold conversations evicted from memory.
    pub evicted: usize,
    /// Stored active conversations checked.
    pub scanned: usize,
}

/// Counters for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterStats {
    /// Conversations in memory (each with its turn lock).
    pub hot: usize,
    /// The most ever held at once.
    pub hot_high_water: usize,
    /// The configured limit.
    pub hot_capacity: usize,
    /// Operations in progress.
    pub in_flight: usize,
}

/// How [`Router::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True if every in-flight operation finished by itself within the drain deadline.
    pub drained: bool,
    /// Operations still running at the deadline; their handlers were aborted and their
    /// callers got [`RouteError::ShuttingDown`].
    pub aborted: usize,
}

const OPEN: u8 = 0;
const DRAINING: u8 = 1;
const ABORTING: u8 = 2;

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
    /// OPEN, DRAINING or ABORTING, for those who wait for a change (aborted handlers).
    state: watch::Sender<u8>,
    /// The same value for those who only look, on every turn: a plain load shares the
    /// cache line between cores instead of taking the channel's lock.
    phase: AtomicU8,
    reap_cursor: Mutex<Option<ListCursor>>,
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

/// Counts an operation as in flight until dropped.
struct Flight<'a>(&'a Router);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
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
            state: watch::Sender::new(OPEN),
            phase: AtomicU8::new(OPEN),
            reap_cursor: Mutex::new(None),
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

    /// The store.
    pub fn store(&self) -> &Arc<dyn ConversationStore> {
        &self.store
    }

    /// The store as a trait object: calling through `Arc<dyn ..>` itself would go through
    /// the `Arc` forwarding impl and box every future twice.
    fn db(&self) -> &dyn ConversationStore {
        &*self.store
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

    fn enter(&self) -> Result<Flight<'_>, RouteError> {
        // SeqCst here and in `set_phase`: either shutdown sees this flight, or this sees
        // the shutdown.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let flight = Flight(self);
        if self.phase.load(Ordering::SeqCst) != OPEN {
            return Err(RouteError::ShuttingDown);
        }
        Ok(flight)
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
    pub async fn open(&self, spec: OpenSpec) -> Result<Opened, RouteError> {
        let _flight = self.enter()?;
        let mut modules = Vec::with_capacity(spec.participants.len());
        for name in &spec.participants {
            modules.push(self.registered(name)?);
        }
        let now = self.clock.now();
        let idle_timeout = spec.idle_timeout.unwrap_or(self.config.idle_timeout);
        let mut conversation = Conversation::new(
            self.ids.conversation(now),
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
            self.db().create(&conversation).await?;
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
                let work = match invited.delivery {
                    Delivery::Inline => Work::Inline(invited.module.on_invite(&invitation)),
                    _ => {
                        let module = Arc::clone(&invited.module);
                        let invitation = invitation.clone();
                        Work::Task(Box::pin(
                            async move { module.on_invite(&invitation).await }
                                .instrument(tracing::Span::current()),
                        ))
                    }
                };
                let answer = self
                    .call(id, &name, deadline, work)
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
            self.db().update(&conversation).await?;
            if conversation.status() == &Status::Active {
                let lease = self.cache.lease(id).await;
                let mut state = lease.slot().state.lock().await;
                if state.is_none() {
                    *state = Some(Hot::new(conversation.clone(), VecDeque::new()));
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
        // Content too large or too deep is refused before anything happens.
        colloquy_core::check_content(&draft.content, Some(self.config.max_content_bytes))?;
        let span = tracing::debug_span!(
            "route",
            conversation_id = %id,
            turn = field::Empty,
            source = %draft.source,
            target = %draft.target,
        );
        self.route_locked(id, draft, options).instrument(span).await
    }

    async fn route_locked(
        &self,
        id: ConversationId,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let lease = self.cache.lease(id).await;
        if self.phase.load(Ordering::Acquire) == ABORTING {
            return Err(RouteError::ShuttingDown);
        }
        let mut guard = self.lock_loaded(&lease, id).await?;
        let mut draft = draft;
        let mut retried = false;
        // Accept the request and store it, conditional on the state it was accepted from.
        // If another writer (another hub on the same database) changed the conversation
        // meanwhile, the store refuses with a conflict: the truth is reloaded and the draft
        // decided again, once, before anything was delivered.
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
                self.ids.message(now),
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
                .db()
                .append_shared(&hot.conversation, std::slice::from_ref(&message))
                .await
            {
                Ok(_) => break (message, target, deadline),
                Err(StoreError::Conflict { .. }) if !retried => {
                    debug!("request conflicts with the stored conversation, reloading");
                    retried = true;
                    draft = redraft(message);
                    *guard = None;
                    if let Err(e) = self.load(&mut guard, id).await {
                        drop(guard);
                        self.cache.forget_held(id, &lease);
                        return Err(e);
                    }
                }
                Err(e) => {
                    debug!(error = %e, "request not stored");
                    *guard = None;
                    return Err(e.into());
                }
            }
        };
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
        let work = match target.delivery {
            Delivery::Inline => Work::Inline(target.module.handle(turn)),
            _ => {
                let module = Arc::clone(&target.module);
                // The task keeps the turn's span, so the handler's own events carry the
                // conversation, turn, source and target.
                Work::Task(Box::pin(
                    async move { module.handle(turn).await }.instrument(tracing::Span::current()),
                ))
            }
        };
        let called = self.call(id, &message.target, deadline, work).await;
        // The request is stored whatever the handler did. Remembered only now, after the
        // handler's future (and the turn's share of the history) is gone, so the window
        // changes in place instead of being copied.
        hot.remember(Arc::clone(&message), self.config.history_window);
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
                if let Err(store) = self.db().update(&hot.conversation).await {
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
        if exchange.status.is_terminal() {
            *guard = None;
            drop(guard);
            self.cache.forget(id, lease);
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
        let now = self.clock.now();
        let reply = hot
            .conversation
            .conclude_turn(
                request,
                outcome,
                self.ids.message(now),
                now,
                Some(self.config.max_content_bytes),
            )
            .map_err(|refusal| RouteError::InvalidResponse {
                conversation: hot.conversation.id(),
                module: request.target.clone(),
                refusal,
            })?
            .map(Arc::new);
        // One write ends the turn: the reply with the new state, or the new state alone.
        hot.conversation.bump_version();
        match &reply {
            Some(reply) => {
                self.db()
                    .append_shared(&hot.conversation, std::slice::from_ref(reply))
                    .await?;
            }
            None => self.db().update(&hot.conversation).await?,
        }
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
                match self.db().update(&next).await {
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
        if let Err(e) = self.load(&mut guard, id).await {
            drop(guard);
            self.cache.forget_held(id, lease);
            return Err(e);
        }
        Ok(guard)
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
                .await?
                .ok_or(RouteError::UnknownConversation { conversation: id })?;
            let window = self.config.history_window as u64;
            let history = if window == 0 || conversation.turn_count() == 0 {
                VecDeque::new()
            } else {
                self.db()
                    .messages(id, MessageRange::Last(window))
                    .await?
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

    /// Marks the slot's conversation TimedOut and stores it; on any failure the hot state is
    /// dropped so the store stays the truth.
    async fn expire(&self, state: &mut Option<Hot>, now: Timestamp) -> bool {
        let Some(hot) = state.as_mut() else {
            return false;
        };
        let mut next = hot.conversation.clone();
        let done = next.time_out(now).is_ok() && {
            next.bump_version();
            self.db().update(&next).await.is_ok()
        };
        if done {
            debug!(conversation_id = %next.id(), "conversation timed out");
        }
        *state = None;
        done
    }

    /// Runs a module call with its deadline, containing a panic (it becomes
    /// [`RouteError::HandlerPanicked`]) and giving up when shutdown aborts.
    ///
    /// [`Work::Task`] runs the call as its own task, so a handler that blocks its thread
    /// cannot hold the caller past the deadline (on a multi-threaded runtime); the task is
    /// aborted when the caller stops waiting. Whatever the mode, a result that arrives after
    /// the deadline is refused as a timeout: a late result is never stored.
    async fn call<T: Send + 'static>(
        &self,
        conversation: ConversationId,
        module: &ModuleName,
        deadline: Duration,
        work: Work<'_, T>,
    ) -> Result<T, RouteError> {
        let started = tokio::time::Instant::now();
        let due = started
            .checked_add(deadline)
            .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365 * 30));
        let timed_out = || RouteError::HandlerTimedOut {
            conversation,
            module: module.clone(),
            deadline,
        };
        let panicked = |payload| RouteError::HandlerPanicked {
            conversation,
            module: module.clone(),
            message: panic_message(payload),
        };
        // Lazy: subscribes only if the handler did not answer at its first poll.
        let aborted = async {
            let mut state = self.state.subscribe();
            let _ = state.wait_for(|s| *s == ABORTING).await;
        };
        let outcome = match work {
            Work::Inline(future) => {
                tokio::select! {
                    // The handler first: most answer at once, and then the deadline's timer
                    // is never registered.
                    biased;
                    outcome = CatchUnwind(future) => outcome.map_err(panicked),
                    () = tokio::time::sleep_until(due) => Err(timed_out()),
                    () = aborted => Err(RouteError::ShuttingDown),
                }
            }
            Work::Task(future) => {
                let mut task = AbortOnDrop(tokio::spawn(future));
                tokio::select! {
                    biased;
                    joined = &mut task.0 => joined.map_err(|e| match e.try_into_panic() {
                        Ok(payload) => panicked(payload),
                        // Cancelled: only the runtime shutting down cancels it.
                        Err(_) => RouteError::ShuttingDown,
                    }),
                    () = tokio::time::sleep_until(due) => Err(timed_out()),
                    () = aborted => Err(RouteError::ShuttingDown),
                }
            }
        };
        if outcome.is_ok() && tokio::time::Instant::now() > due {
            // The handler held its thread past the deadline: its result is refused.
            debug!(module = %module, ?deadline, "handler answered after its deadline");
            return Err(timed_out());
        }
        if matches!(outcome, Err(RouteError::HandlerTimedOut { .. })) {
            debug!(module = %module, ?deadline, "handler timed out");
        }
        outcome
    }

    /// One reaper pass: times out expired conversations (hot ones, and a batch of stored
    /// active ones, continuing where the last pass stopped) and evicts hot conversations
    /// not used for `cold_after`.
    pub async fn reap(&self, cold_after: Duration) -> ReapReport {
        let mut report = ReapReport::default();
        let now = self.clock.now();
        for id in self.cache.ids() {
            report.timed_out += usize::from(self.reap_one(id, now, true).await);
        }
        let cursor = *self
            .reap_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut filter = ListFilter::new()
            .status(colloquy_core::StatusKind::Active)
            .limit(self.config.reap_batch);
        if let Some(cursor) = cursor {
            filter = filter.after(cursor);
        }
        match self.db().list(&filter).await {
            Ok(page) => {
                report.scanned = page.conversations.len();
                for conversation in page.conversations.iter().filter(|c| c.expired(now)) {
                    report.timed_out +=
                        usize::from(self.reap_one(conversation.id(), now, false).await);
                }
                *self
                    .reap_cursor
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = page.next;
            }
            Err(e) => debug!(error = %e, "reaper could not list active conversations"),
        }
        report.evicted = self.cache.evict_cold(cold_after);
        if report.timed_out > 0 || report.evicted > 0 {
            debug!(?report, "reaper pass");
        }
        report
    }

    /// Times out one conversation if it is expired, under its turn lock. A conversation
    /// loaded only for this check (or found expired) leaves memory again.
    async fn reap_one(&self, id: ConversationId, now: Timestamp, only_if_hot: bool) -> bool {
        let lease = if only_if_hot {
            match self.cache.peek(id) {
                Some(lease) => lease,
                None => return false,
            }
        } else {
            self.cache.lease(id).await
        };
        let Ok(mut guard) = lease.slot().state.try_lock() else {
            // A turn is in progress: the conversation is not idle.
            return false;
        };
        let was_hot = guard.is_some();
        let expired = if was_hot || !only_if_hot {
            matches!(self.load(&mut guard, id).await, Ok(hot) if hot.conversation.expired(now))
        } else {
            false
        };
        let timed_out = expired && self.expire(&mut guard, now).await;
        if expired || !was_hot {
            *guard = None;
            drop(guard);
            self.cache.forget(id, lease);
        }
        timed_out
    }

    /// Stops taking new work, lets in-flight operations finish for up to `drain`, then
    /// aborts the handlers still running (their callers get
    /// [`RouteError::ShuttingDown`]) and waits for them to unwind. Nobody is left hanging.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.set_phase(DRAINING);
        let drained = self.wait_idle(drain).await;
        let aborted = if drained {
            0
        } else {
            let still = self.in_flight.load(Ordering::SeqCst);
            self.set_phase(ABORTING);
            // Aborted handlers return at once; what remains is at most a store write.
            self.wait_idle(Duration::from_secs(30)).await;
            still
        };
        ShutdownReport { drained, aborted }
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// True once [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.phase.load(Ordering::Acquire) != OPEN
    }

    fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
        self.state.send_replace(phase);
    }
}

/// A module call, as [`Router::call`] runs it.
enum Work<'a, T> {
    /// Polled in place on the caller's task ([`Delivery::Inline`]).
    Inline(std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>),
    /// Run as its own task ([`Delivery::Task`]).
    Task(std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>),
}

/// Aborts a handler's task when its caller stops waiting for it (deadline, shutdown, or
/// the caller's own future dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
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

/// Polls a future, turning a panic inside it into an error instead of unwinding further.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // The future is dropped right after a panic and never polled again, so no broken
        // invariant of it can be observed: asserting unwind safety is sound.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(&mut self.0).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".into(),
        },
    }
}
