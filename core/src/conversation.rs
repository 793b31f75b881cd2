//! The [`Conversation`] state machine: status, phase, intent, turns, idle expiry and context.
//!
//! Every transition takes the current time as `now`; nothing here reads a clock. A refused
//! transition returns a [`CoreError`] and leaves the conversation exactly as it was.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    change::{diff, Baseline, StateChange},
    context::merge_patch,
    ConversationId, CoreError, Draft, Message, MessageId, ModuleName, Timestamp,
};

/// Where a conversation stands. Only `Active` accepts turns; the last three are terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Accepts turns.
    Active,
    /// Held on purpose; accepts no turns and does not expire until resumed.
    Paused,
    /// Ended normally.
    Completed,
    /// Ended because it was idle for its idle timeout.
    TimedOut,
    /// Ended by a failure.
    Failed {
        /// Why it failed.
        reason: String,
    },
}

impl Status {
    /// The status without its data, for filters and counts.
    pub fn kind(&self) -> StatusKind {
        match self {
            Self::Active => StatusKind::Active,
            Self::Paused => StatusKind::Paused,
            Self::Completed => StatusKind::Completed,
            Self::TimedOut => StatusKind::TimedOut,
            Self::Failed { .. } => StatusKind::Failed,
        }
    }

    /// True once the conversation has ended: no transition leaves a terminal status.
    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { reason } => write!(f, "failed ({reason})"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

named_enum!(
    /// [`Status`] without its data.
    StatusKind, "status" {
        /// See [`Status::Active`].
        Active = "active",
        /// See [`Status::Paused`].
        Paused = "paused",
        /// See [`Status::Completed`].
        Completed = "completed",
        /// See [`Status::TimedOut`].
        TimedOut = "timed_out",
        /// See [`Status::Failed`].
        Failed = "failed",
    }
);

impl StatusKind {
    /// True for the statuses that end a conversation.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::TimedOut | Self::Failed)
    }
}

named_enum!(
    /// The protocol phase. Phases move forward only; `Execution` may repeat.
    Phase, "phase" {
        /// Participants are being invited (the target may accept, reject or counter-propose).
        Handshake = "handshake",
        /// Terms (schemas, plans) are being agreed.
        Negotiation = "negotiation",
        /// The work is being done.
        Execution = "execution",
        /// Results are being confirmed.
        Confirmation = "confirmation",
        /// The conversation is ending or has ended.
        Termination = "termination",
    }
);

named_enum!(
    /// Why the initiator opened the conversation.
    Intent, "intent" {
        /// Ask for information.
        Query = "query",
        /// Agree on terms, such as a schema.
        Negotiate = "negotiate",
        /// Work on something together.
        Collaborate = "collaborate",
        /// Hand work over to another module.
        Transfer = "transfer",
        /// Tell something; little back-and-forth expected.
        Inform = "inform",
    }
);

/// A participant's answer to an invitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HandshakeOutcome {
    /// Join the conversation.
    Accept,
    /// Refuse to join; the conversation fails with this reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// Join, but on other terms: the conversation moves to Negotiation.
    Counter {
        /// The counter-proposal, for the initiator to consider.
        proposal: Value,
    },
}

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

    /// Changes the idle timeout (must be positive).
    pub fn set_idle_timeout(&mut self, idle_timeout: Duration) -> Result<(), CoreError> {
        if idle_timeout.is_zero() {
            return Err(CoreError::ZeroIdleTimeout);
        }
        self.refuse_if_terminal("change the idle timeout of")?;
        self.parts.idle_timeout_ms = crate::time::duration_millis(idle_timeout);
        Ok(())
    }

    /// Changes the turn limit (`None` removes it). A limit below the turns already taken
    /// is refused with [`CoreError::MaxTurnsBelowTurnCount`].
    pub fn set_max_turns(&mut self, max_turns: Option<u64>) -> Result<(), CoreError> {
        self.refuse_if_terminal("change the turn limit of")?;
        let max_turns = max_turns.map(|m| m.min(i64::MAX as u64));
        if let Some(max) = max_turns {
            if max < self.parts.turn_count {
                return Err(CoreError::MaxTurnsBelowTurnCount {
                    conversation: self.parts.id,
                    max_turns: max,
                    turn_count: self.parts.turn_count,
                });
            }
        }
        self.parts.max_turns = max_turns;
        Ok(())
    }

    /// Checks whether `draft` would be accepted at `now` and returns its turn number.
    ///
    /// Does not change the conversation.
    pub fn check_draft(&self, draft: &Draft, now: Timestamp) -> Result<u64, CoreError> {
        let p = &self.parts;
        if p.status != Status::Active {
            return Err(CoreError::NotActive {
                conversation: p.id,
                status: p.status.clone(),
            });
        }
        if self.expired(now) {
            return Err(CoreError::Expired {
                conversation: p.id,
                idle_for: self.idle_for(now).unwrap_or_default(),
                idle_timeout: self.idle_timeout(),
            });
        }
        for module in [&draft.source, &draft.target] {
            if !self.is_participant(module) {
                return Err(CoreError::NotParticipant {
                    conversation: p.id,
                    module: module.clone(),
                    participants: p.participants.to_vec(),
                });
            }
        }
        if draft.source == draft.target {
            return Err(CoreError::SelfAddressed {
                conversation: p.id,
                module: draft.source.clone(),
            });
        }
        if let Some(max_turns) = p.max_turns {
            if p.turn_count >= max_turns {
                return Err(CoreError::MaxTurnsReached {
                    conversation: p.id,
                    max_turns,
                });
            }
        }
        p.turn_count
            .checked_add(1)
            .ok_or(CoreError::MaxTurnsReached {
                conversation: p.id,
                max_turns: u64::MAX,
            })
    }

    /// Accepts `draft` as the next turn, giving it `id` and the time `now`.
    ///
    /// Ends the turn in progress, if any (a reply is accepted this way). On success the
    /// turn count grows by exactly one; on error nothing changes.
    pub fn accept(
        &mut self,
        draft: Draft,
        id: MessageId,
        now: Timestamp,
    ) -> Result<Message, CoreError> {
        let turn = self.check_draft(&draft, now)?;
        self.parts.turn_count = turn;
        self.parts.busy_until = None;
        self.touch(now);
        Ok(Message {
            id,
            conversation_id: self.parts.id,
            turn,
            source: draft.source,
            target: draft.target,
            kind: draft.kind,
            content: draft.content,
            in_reply_to: draft.in_reply_to,
            sent_at: now,
        })
    }

    /// Accepts `draft` as a request that is about to be delivered, whose reply is due by
    /// `reply_by` (the handler's deadline): until then the conversation is busy, not idle,
    /// however long the handler works. The turn ends with the reply ([`accept`]) or with
    /// [`end_turn`].
    ///
    /// [`accept`]: Self::accept
    /// [`end_turn`]: Self::end_turn
    pub fn begin_turn(
        &mut self,
        draft: Draft,
        id: MessageId,
        now: Timestamp,
        reply_by: Timestamp,
    ) -> Result<Message, CoreError> {
        let message = self.accept(draft, id, now)?;
        self.parts.busy_until = Some(reply_by.max(now));
        Ok(message)
    }

    /// Ends the turn in progress without a reply (the handler answered nothing, failed or
    /// ran out of time): idleness counts from `now`. Does nothing if no turn is in progress.
    pub fn end_turn(&mut self, now: Timestamp) {
        if self.parts.busy_until.take().is_some() {
            self.touch(now);
        }
    }

    /// Merges `patch` into the context (JSON merge patch, RFC 7396: `null` removes a key).
    ///
    /// Refused once the conversation has ended; on error the context is unchanged.
    pub fn apply_context_patch(
        &mut self,
        patch: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("patch the context of")?;
        merge_patch(Arc::make_mut(&mut self.parts.context), patch)?;
        self.touch(now);
        Ok(())
    }

    /// Applies the invited participants' combined answer to the invitation.
    ///
    /// Accept moves to Negotiation (intent Negotiate) or Execution; Counter moves to
    /// Negotiation; Reject fails the conversation with a reason naming `responder`.
    pub fn conclude_handshake(
        &mut self,
        responder: &ModuleName,
        outcome: &HandshakeOutcome,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("conclude the handshake of")?;
        if self.parts.phase != Phase::Handshake {
            return Err(CoreError::HandshakeOver {
                conversation: self.parts.id,
                phase: self.parts.phase,
            });
        }
        if !self.is_participant(responder) {
            return Err(CoreError::NotParticipant {
                conversation: self.parts.id,
                module: responder.clone(),
                participants: self.parts.participants.to_vec(),
            });
        }
        match outcome {
            HandshakeOutcome::Accept if self.parts.intent == Intent::Negotiate => {
                self.parts.phase = Phase::Negotiation;
            }
            HandshakeOutcome::Accept => self.parts.phase = Phase::Execution,
            HandshakeOutcome::Counter { .. } => self.parts.phase = Phase::Negotiation,
            HandshakeOutcome::Reject { reason } => {
                return self.end(
                    Status::Failed {
                        reason: format!("{responder} rejected the invitation: {reason}"),
                    },
                    "fail",
                    now,
                );
            }
        }
        self.touch(now);
        Ok(())
    }

    /// Moves to `to`: forward only, except that Execution may repeat.
    pub fn advance_phase(&mut self, to: Phase, now: Timestamp) -> Result<(), CoreError> {
        self.refuse_if_terminal("change the phase of")?;
        let from = self.parts.phase;
        if to < from || (to == from && to != Phase::Execution) {
            return Err(CoreError::PhaseRegression {
                conversation: self.parts.id,
                from,
                to,
            });
        }
        self.parts.phase = to;
        self.touch(now);
        Ok(())
    }

    /// Active -> Paused. A paused conversation accepts no turns and does not expire.
    pub fn pause(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Active, "pause")?;
        self.parts.status = Status::Paused;
        self.parts.busy_until = None;
        self.touch(now);
        Ok(())
    }

    /// Paused -> Active. The idle clock restarts at `now`.
    pub fn resume(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Paused, "resume")?;
        self.parts.status = Status::Active;
        self.touch(now);
        Ok(())
    }

    /// Active or Paused -> Completed; the phase becomes Termination.
    pub fn complete(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.end(Status::Completed, "complete", now)
    }

    /// Active or Paused -> Failed with `reason`.
    pub fn fail(&mut self, reason: impl Into<String>, now: Timestamp) -> Result<(), CoreError> {
        self.end(
            Status::Failed {
                reason: reason.into(),
            },
            "fail",
            now,
        )
    }

    /// Active -> TimedOut, allowed only once [`expired`](Self::expired) is true at `now`.
    pub fn time_out(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Active, "time out")?;
        if let Some(deadline) = self.deadline() {
            if now < deadline {
                return Err(CoreError::NotExpired {
                    conversation: self.parts.id,
                    remaining: deadline.saturating_duration_since(now),
                });
            }
        }
        // A timed-out conversation's last activity stays the last real activity.
        self.parts.status = Status::TimedOut;
        self.parts.busy_until = None;
        self.parts.phase = Phase::Termination;
        self.parts.ended_at = Some(now.max(self.parts.last_activity));
        Ok(())
    }

    /// Replaces participant `from` with `to` (in the same position), for handoffs.
    pub fn transfer(
        &mut self,
        from: &ModuleName,
        to: ModuleName,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("transfer")?;
        let Some(slot) = self.parts.participants.iter().position(|m| m == from) else {
            return Err(CoreError::NotParticipant {
                conversation: self.parts.id,
                module: from.clone(),
                participants: self.parts.participants.to_vec(),
            });
        };
        if self.is_participant(&to) {
            return Err(CoreError::DuplicateParticipant { module: to });
        }
        let mut participants = self.parts.participants.to_vec();
        participants[slot] = to;
        self.parts.participants = participants.into();
        self.touch(now);
        Ok(())
    }

    fn end(
        &mut self,
        status: Status,
        action: &'static str,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal(action)?;
        self.parts.status = status;
        self.parts.phase = Phase::Termination;
        self.parts.busy_until = None;
        self.touch(now);
        self.parts.ended_at = Some(self.parts.last_activity);
        Ok(())
    }

    fn require(&self, status: Status, action: &'static str) -> Result<(), CoreError> {
        if self.parts.status == status {
            Ok(())
        } else {
            Err(self.invalid(action))
        }
    }

    fn refuse_if_terminal(&self, action: &'static str) -> Result<(), CoreError> {
        if self.parts.status.is_terminal() {
            Err(self.invalid(action))
        } else {
            Ok(())
        }
    }

    fn invalid(&self, action: &'static str) -> CoreError {
        CoreError::InvalidTransition {
            conversation: self.parts.id,
            from: self.parts.status.clone(),
            action,
        }
    }

    /// Records activity at `now`; time never moves backwards within a conversation.
    fn touch(&mut self, now: Timestamp) {
        self.parts.last_activity = self.parts.last_activity.max(now);
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
