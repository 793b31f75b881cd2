//! The router's public types: settings, what to open, per-call options, what a routed
//! message or a state change gives back, and the counters and reports.

use std::{sync::Arc, time::Duration};

use colloquy_core::{
    Conversation, ConversationId, CoreError, HandshakeOutcome, Intent, Message, MessageId,
    ModuleName, Phase, Status,
};
use serde_json::{Map, Value};

#[cfg(doc)]
use crate::{RouteError, Router};

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

/// What to open: participants (initiator first), intent, and the conversation's own
/// settings. The one spec type: the hub's `start_conversation` and [`Router::open`] both
/// take it.
///
/// ```
/// use colloquy_router::ConversationSpec;
/// use colloquy_core::Intent;
/// let spec = ConversationSpec::between("extractor", "validator")?
///     .intent(Intent::Negotiate)
///     .max_turns(12);
/// assert_eq!(spec.participants.len(), 2);
/// # Ok::<(), colloquy_core::CoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConversationSpec {
    /// Participants, initiator first (at least two, all registered).
    pub participants: Vec<ModuleName>,
    /// Why (default Collaborate).
    pub intent: Intent,
    /// Overrides the default idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Limits the number of turns.
    pub max_turns: Option<u64>,
    /// Initial shared context.
    pub context: Map<String, Value>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// The conversation's id, when the caller derives it from a key of its own (so that
    /// opening it again, through any hub, finds the same conversation); minted otherwise.
    pub id: Option<ConversationId>,
}

impl ConversationSpec {
    /// A conversation opened by `initiator` with `others`.
    pub fn new(initiator: ModuleName, others: impl IntoIterator<Item = ModuleName>) -> Self {
        let mut participants = vec![initiator];
        participants.extend(others);
        Self {
            participants,
            intent: Intent::Collaborate,
            idle_timeout: None,
            max_turns: None,
            context: Map::new(),
            metadata: Map::new(),
            id: None,
        }
    }

    /// Opens the conversation under `id` instead of a minted one: a second open with the
    /// same id is refused as `StoreError::AlreadyExists` (the first one happened).
    pub fn id(mut self, id: ConversationId) -> Self {
        self.id = Some(id);
        self
    }

    /// A two-party conversation, parsing both names.
    pub fn between(initiator: &str, other: &str) -> Result<Self, CoreError> {
        Ok(Self::new(initiator.parse()?, [other.parse()?]))
    }

    /// Sets the intent (default Collaborate).
    pub fn intent(mut self, intent: Intent) -> Self {
        self.intent = intent;
        self
    }

    /// Overrides the default idle timeout for this conversation.
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = Some(idle_timeout);
        self
    }

    /// Limits the number of turns.
    pub fn max_turns(mut self, max_turns: u64) -> Self {
        self.max_turns = Some(max_turns);
        self
    }

    /// Sets the initial shared context.
    pub fn context(mut self, context: Map<String, Value>) -> Self {
        self.context = context;
        self
    }

    /// Sets metadata.
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Participants, initiator first.
    pub fn participants(&self) -> &[ModuleName] {
        &self.participants
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

/// The result of [`Router::open_and_route`]: the conversation opened, and its first
/// exchange unless the handshake ended the conversation.
#[derive(Debug)]
#[non_exhaustive]
pub struct FirstExchange {
    /// The conversation as its handshake left it (stored with the first request, or on
    /// its own when nothing was routed).
    pub opened: Opened,
    /// The first exchange, as [`Router::route`] would have returned it; `None` when the
    /// handshake ended the conversation (a rejection), so that nothing was sent.
    pub exchange: Option<Result<Exchange, crate::RouteError>>,
}

/// Per-call options of [`Router::route`].
///
/// ```
/// use colloquy_router::RouteOptions;
/// use std::time::Duration;
/// let cancel = tokio_util::sync::CancellationToken::new();
/// let options = RouteOptions::deadline(Duration::from_secs(5))
///     .cancel_on(cancel.clone())
///     .on_stored(|request| println!("turn {} is stored", request.turn));
/// assert_eq!(options.deadline, Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RouteOptions {
    /// Overrides the target's handler deadline for this call.
    pub deadline: Option<Duration>,
    /// Stops the handler call when cancelled: the request stays stored, the turn ends
    /// without a reply and the call returns [`RouteError::Canceled`].
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Called once the request is stored, before it is delivered (to report progress, as a
    /// streaming network front does).
    pub on_stored: Option<StoredHook>,
    /// The request's message id, when the caller derives it from a key of its own (a
    /// client's message id), so that the same request sent again, through any hub, is
    /// recognised: it is refused as [`RouteError::AlreadyStored`] instead of stored twice.
    pub message_id: Option<MessageId>,
}

impl RouteOptions {
    /// With a handler deadline for this call.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::default()
        }
    }

    /// Cancels the handler call when `token` is cancelled.
    pub fn cancel_on(mut self, token: tokio_util::sync::CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Stores the request under `id` instead of a minted id (see the field).
    pub fn message_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Calls `hook` with the request once it is stored, before delivery.
    pub fn on_stored(mut self, hook: impl Fn(&Arc<Message>) + Send + Sync + 'static) -> Self {
        self.on_stored = Some(StoredHook(Arc::new(hook)));
        self
    }
}

/// A callback run with a request once it is stored ([`RouteOptions::on_stored`]). It runs
/// on the routing task under the conversation's turn lock: keep it short (send on a
/// channel).
#[derive(Clone)]
pub struct StoredHook(Arc<StoredFn>);

type StoredFn = dyn Fn(&Arc<Message>) + Send + Sync;

impl StoredHook {
    /// Runs the hook.
    pub fn call(&self, request: &Arc<Message>) {
        (self.0)(request);
    }
}

impl std::fmt::Debug for StoredHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredHook")
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
