//! The [`Conversation`] state machine: status, phase, intent, turns, idle expiry and context.
//!
//! Every transition takes the current time as `now`; nothing here reads a clock. A refused
//! transition returns a [`CoreError`] and leaves the conversation exactly as it was.

use std::{fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod in_flight;
mod transitions;

pub use crate::status::{HandshakeOutcome, Intent, Phase, Status, StatusKind};
use crate::{
    change::{diff, Baseline, StateChange},
    ConversationId, CoreError, ModuleName, Timestamp,
};
pub use in_flight::InFlight;

/// The plain fields of a [`Conversation`], for storage backends and serialization.
///
/// [`Conversation::from_parts`] checks the invariants when turning these back into a
/// conversation, so a corrupt or hand-edited row cannot produce an inconsistent state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationParts {
    /// The id.
    pub id: ConversationId,
    /// Participants, initiator first (shared: cloning a conversation does not copy them).
    pub participants: Arc<[ModuleName]>,
    /// Status.
    pub status: Status,
    /// Phase.
    pub phase: Phase,
    /// Intent.
    pub intent: Intent,
    /// Number of accepted turns.
    pub turn_count: u64,
    /// When it was opened.
    pub started_at: Timestamp,
    /// When it last accepted a turn or changed state.
    pub last_activity: Timestamp,
    /// When it reached a terminal status.
    pub ended_at: Option<Timestamp>,
    /// How long it may stay idle while active, in milliseconds.
    pub idle_timeout_ms: u64,
    /// The most turns it may hold.
    pub max_turns: Option<u64>,
    /// Shared context, merged from reply patches (shared: cloning a conversation does not
    /// copy it; a patch copies it once if someone else still holds it).
    pub context: Arc<Map<String, Value>>,
    /// Free-form metadata set at opening (shared like the context).
    pub metadata: Arc<Map<String, Value>>,
    /// How many times the conversation has been written to its store, counting this state
    /// if it is about to be written. Stores compare and set it: a write must carry the
    /// stored version plus one (see [`Conversation::bump_version`]), so a writer working
    /// from a stale copy is refused instead of undoing someone else's change.
    #[serde(default)]
    pub version: u64,
    /// While a turn is in progress (a request was delivered and its reply is awaited), the
    /// latest time the reply can arrive: the handler's deadline. Time up to it is not
    /// idleness (see [`Conversation::idle_since`]).
    #[serde(default)]
    pub busy_until: Option<Timestamp>,
}

/// A conversation between modules: the pure state machine behind every turn.
///
/// ```
/// use std::time::Duration;
/// use colloquy_core::*;
/// let (a, b): (ModuleName, ModuleName) = ("asker".parse()?, "answerer".parse()?);
/// let t0 = Timestamp::from_millis(1_000);
/// let id = ConversationId::from_parts(t0, [1; 10]);
/// let mut conv = Conversation::new(id, vec![a.clone(), b.clone()], Intent::Query, Duration::from_secs(300), t0)?;
/// conv.conclude_handshake(&b, &HandshakeOutcome::Accept, t0)?;
/// let msg = conv.accept(Draft::request(a, b, "hello".into()), MessageId::from_parts(t0, [2; 10]), t0)?;
/// assert_eq!(msg.turn, 1);
/// assert!(conv.expired(t0.saturating_add(Duration::from_secs(300))));
/// # Ok::<(), CoreError>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "ConversationParts", into = "ConversationParts")]
pub struct Conversation {
    parts: ConversationParts,
    /// The shared state as last stored, read, or (before the first write) created.
    stored: Baseline,
    /// Never written yet: its first write (the creation) stores its whole state.
    fresh: bool,
    /// The change the next write stores (see [`Conversation::state_change`]).
    sealed: Option<StateChange>,
}

/// Two conversations are equal when their states are: what each remembers of its last
/// write is bookkeeping, not state.
impl PartialEq for Conversation {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

/// The state, as [`PartialEq`] compares it.
impl fmt::Debug for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Conversation {
    /// Opens a conversation in the Handshake phase, Active, with no turns.
    ///
    /// `participants` lists the initiator first; at least two distinct modules.
    pub fn new(
        id: ConversationId,
        participants: Vec<ModuleName>,
        intent: Intent,
        idle_timeout: Duration,
        now: Timestamp,
    ) -> Result<Self, CoreError> {
        check_participants(&participants)?;
        if idle_timeout.is_zero() {
            return Err(CoreError::ZeroIdleTimeout);
        }
        Ok(Self::created(ConversationParts {
            id,
            participants: participants.into(),
            status: Status::Active,
            phase: Phase::Handshake,
            intent,
            turn_count: 0,
            started_at: now,
            last_activity: now,
            ended_at: None,
            idle_timeout_ms: crate::time::duration_millis(idle_timeout),
            max_turns: None,
            context: Arc::default(),
            metadata: Arc::default(),
            version: 0,
            busy_until: None,
        }))
    }

    /// Limits the conversation to `max_turns` turns (clamped to `i64::MAX`, so that every
    /// backend can store it).
    pub fn with_max_turns(mut self, max_turns: u64) -> Self {
        self.parts.max_turns = Some(max_turns.min(i64::MAX as u64));
        self
    }

    /// Sets the initial shared context.
    pub fn with_context(mut self, context: Map<String, Value>) -> Self {
        self.parts.context = Arc::new(context);
        if self.fresh {
            self.stored = Baseline::of(&self.parts);
        }
        self
    }

    /// Sets free-form metadata.
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.parts.metadata = Arc::new(metadata);
        self
    }

    /// Rebuilds a conversation from stored fields, checking its invariants.
    pub fn from_parts(parts: ConversationParts) -> Result<Self, CoreError> {
        check_participants(&parts.participants).map_err(|e| CoreError::InvalidState {
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| Err(CoreError::InvalidState { detail });
        if parts.idle_timeout_ms == 0 {
            return invalid("idle timeout is zero".into());
        }
        if let Some(max) = parts.max_turns {
            if parts.turn_count > max {
                return invalid(format!(
                    "turn count {} exceeds max turns {max}",
                    parts.turn_count
                ));
            }
        }
        if parts.status.is_terminal() && parts.busy_until.is_some() {
            return invalid(format!(
                "status {} but a turn is marked in progress",
                parts.status
            ));
        }
        if parts.status.is_terminal() != parts.ended_at.is_some() {
            return invalid(format!(
                "status {} does not match ended_at {:?}",
                parts.status, parts.ended_at
            ));
        }
        // Read from a store: this is the state it holds.
        Ok(Self {
            stored: Baseline::of(&parts),
            fresh: false,
            sealed: None,
            parts,
        })
    }

    /// A conversation about to be created with `parts`.
    fn created(parts: ConversationParts) -> Self {
        Self {
            stored: Baseline::of(&parts),
            fresh: true,
            sealed: None,
            parts,
        }
    }

    /// The plain fields.
    pub fn parts(&self) -> &ConversationParts {
        &self.parts
    }

    /// Gives up the plain fields.
    pub fn into_parts(self) -> ConversationParts {
        self.parts
    }

    /// The id.
    pub fn id(&self) -> ConversationId {
        self.parts.id
    }

    /// Participants, initiator first.
    pub fn participants(&self) -> &[ModuleName] {
        &self.parts.participants
    }

    /// Participants as a shared list (a reference-count increment, no copy).
    pub fn shared_participants(&self) -> Arc<[ModuleName]> {
        Arc::clone(&self.parts.participants)
    }

    /// The module that opened the conversation.
    pub fn initiator(&self) -> &ModuleName {
        // check_participants guarantees at least two participants, so index 0 exists.
        &self.parts.participants[0]
    }

    /// True if `module` takes part.
    pub fn is_participant(&self, module: &ModuleName) -> bool {
        self.parts.participants.contains(module)
    }

    /// The status.
    pub fn status(&self) -> &Status {
        &self.parts.status
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.parts.phase
    }

    /// The intent.
    pub fn intent(&self) -> Intent {
        self.parts.intent
    }

    /// Number of accepted turns (the last turn's number).
    pub fn turn_count(&self) -> u64 {
        self.parts.turn_count
    }

    /// When it was opened.
    pub fn started_at(&self) -> Timestamp {
        self.parts.started_at
    }

    /// When it last accepted a turn or changed state.
    pub fn last_activity(&self) -> Timestamp {
        self.parts.last_activity
    }

    /// When it ended, if it has.
    pub fn ended_at(&self) -> Option<Timestamp> {
        self.parts.ended_at
    }

    /// How long it may stay idle while active.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.parts.idle_timeout_ms)
    }

    /// The most turns it may hold, if limited.
    pub fn max_turns(&self) -> Option<u64> {
        self.parts.max_turns
    }

    /// The shared context.
    pub fn context(&self) -> &Map<String, Value> {
        &self.parts.context
    }

    /// The shared context as the conversation holds it: cloning it copies nothing.
    pub fn shared_context(&self) -> Arc<Map<String, Value>> {
        Arc::clone(&self.parts.context)
    }

    /// The metadata.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.parts.metadata
    }

    /// Checks that the context and metadata keep the JSON rule every store keeps
    /// ([`check_object`](crate::check_object)).
    pub fn check_json(&self) -> Result<(), CoreError> {
        crate::check_object("context", &self.parts.context)?;
        crate::check_object("metadata", &self.parts.metadata)
    }

    /// How many times the conversation has been written to its store (see
    /// [`ConversationParts::version`]).
    pub fn version(&self) -> u64 {
        self.parts.version
    }

    /// Makes this state the next write of the conversation: its version becomes the one it
    /// was read at plus one. Call it exactly once before each `append` or `update` of a
    /// state read from (or last written to) a store; a store refuses a write whose version
    /// is not the stored one plus one, so a stale writer gets a conflict, never a silent
    /// overwrite.
    ///
    /// It also seals what the shared state changed since the last write (or read), as the
    /// new version's [`state_change`](Self::state_change).
    pub fn bump_version(&mut self) {
        self.parts.version = self.parts.version.saturating_add(1);
        self.sealed = diff(Some(&self.stored), &self.parts);
        self.stored = Baseline::of(&self.parts);
        self.fresh = false;
    }

    /// This state as a store holds it once written: equal to `self`, with nothing left to
    /// record (what [`from_parts`](Self::from_parts) of its parts would give, without the
    /// checks). For stores that keep conversations in memory.
    pub fn stored_copy(&self) -> Self {
        Self {
            stored: Baseline::of(&self.parts),
            fresh: false,
            sealed: None,
            parts: self.parts.clone(),
        }
    }

    /// What the write of this state changes in the shared state (context, participants,
    /// phase, status), for a store to keep with the write: the whole state for a
    /// conversation never stored (its creation), the difference sealed by
    /// [`bump_version`](Self::bump_version) otherwise, `None` when nothing shared changed.
    pub fn state_change(&self) -> Option<StateChange> {
        if self.fresh {
            return diff(None, &self.parts);
        }
        self.sealed
            .as_ref()
            .filter(|change| change.version == self.parts.version)
            .cloned()
    }

    /// While a turn is in progress, the latest time its reply can arrive.
    pub fn busy_until(&self) -> Option<Timestamp> {
        self.parts.busy_until
    }

    /// Since when an Active conversation has been idle: the end of its last activity, or,
    /// while a turn is in progress, the time its reply is due (time spent inside a turn is
    /// not idleness). `None` unless Active.
    ///
    /// This is the one definition of idleness: turn acceptance ([`check_draft`]),
    /// expiry ([`expired`]), the reaper and health reports all use it.
    ///
    /// [`check_draft`]: Self::check_draft
    /// [`expired`]: Self::expired
    pub fn idle_since(&self) -> Option<Timestamp> {
        (self.parts.status == Status::Active).then(|| match self.parts.busy_until {
            Some(busy_until) => busy_until.max(self.parts.last_activity),
            None => self.parts.last_activity,
        })
    }

    /// How long an Active conversation has been idle at `now` (zero while a turn is in
    /// progress); `None` unless Active.
    pub fn idle_for(&self, now: Timestamp) -> Option<Duration> {
        self.idle_since()
            .map(|since| now.saturating_duration_since(since))
    }

    /// True if the conversation is Active and idle at `now` for at least `stale_after`, or,
    /// without a threshold, past its own idle timeout ([`expired`](Self::expired)). The one
    /// definition of "stale" behind `Hub::health` and `colloquy health`.
    pub fn is_stale(&self, now: Timestamp, stale_after: Option<Duration>) -> bool {
        match stale_after {
            Some(after) => self.idle_for(now).is_some_and(|idle| idle >= after),
            None => self.expired(now),
        }
    }

    /// When an active conversation expires if nothing happens; `None` unless Active.
    ///
    /// The runtime sleeps until the earliest deadline instead of polling.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.idle_since()
            .map(|since| since.saturating_add(self.idle_timeout()))
    }

    /// True if the conversation is Active and has been idle for its idle timeout at `now`.
    ///
    /// Monotonic: once true for some `now`, true for every later `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

impl TryFrom<ConversationParts> for Conversation {
    type Error = CoreError;
    fn try_from(parts: ConversationParts) -> Result<Self, CoreError> {
        Self::from_parts(parts)
    }
}

impl From<Conversation> for ConversationParts {
    fn from(conv: Conversation) -> Self {
        conv.parts
    }
}

fn check_participants(participants: &[ModuleName]) -> Result<(), CoreError> {
    if participants.len() < 2 {
        return Err(CoreError::TooFewParticipants {
            count: participants.len(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(participants.len());
    match participants.iter().find(|m| !seen.insert(*m)) {
        Some(module) => Err(CoreError::DuplicateParticipant {
            module: module.clone(),
        }),
        None => Ok(()),
    }
}
