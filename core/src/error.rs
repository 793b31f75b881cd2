//! The one error type of `colloquy-core`.

use std::time::Duration;

use crate::{ConversationId, ModuleName, Phase, Status};

/// Everything the pure core can refuse, each variant naming the bad value and what to do.
///
/// Core never panics on any input: every refusal is one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A module name or capability failed validation.
    #[error("invalid {kind} {input:?}: {reason}; use 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-'")]
    InvalidName {
        /// What was being parsed ("module name" or "capability").
        kind: &'static str,
        /// The rejected input, shortened to 80 characters.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A conversation or message id failed validation.
    #[error("invalid {kind} {input:?}: {reason}; ids are UUID v7 in the form 0190a8f2-7c3e-7b5a-9f1e-2d4c6b8a0e13")]
    InvalidId {
        /// What was being parsed ("conversation id" or "message id").
        kind: &'static str,
        /// The rejected input, shortened to 80 characters.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The conversation's status does not accept turns (only `Active` does).
    #[error("conversation {conversation} is {status} and accepts no turns; {hint}", hint = status_hint(status))]
    NotActive {
        /// The conversation.
        conversation: ConversationId,
        /// Its current status.
        status: Status,
    },

    /// The conversation has been idle for at least its idle timeout.
    #[error("conversation {conversation} expired: idle for {idle_for:?}, its idle timeout is {idle_timeout:?}; start a new conversation, or give long-running ones a larger idle timeout")]
    Expired {
        /// The conversation.
        conversation: ConversationId,
        /// How long it has been idle at the time of the attempt.
        idle_for: Duration,
        /// Its idle timeout.
        idle_timeout: Duration,
    },

    /// A module tried to send to, or as, a module that is not a participant.
    #[error("{module} is not a participant of conversation {conversation} (participants: {participants}); only participants may send or receive", participants = ModuleName::join(participants))]
    NotParticipant {
        /// The conversation.
        conversation: ConversationId,
        /// The module that is not a participant.
        module: ModuleName,
        /// The conversation's participants.
        participants: Vec<ModuleName>,
    },

    /// A draft's source and target are the same module.
    #[error("{module} cannot address itself in conversation {conversation}; choose another participant as target")]
    SelfAddressed {
        /// The conversation.
        conversation: ConversationId,
        /// The module.
        module: ModuleName,
    },

    /// The conversation already holds its maximum number of turns.
    #[error("conversation {conversation} reached its limit of {max_turns} turns; end it and start a new one, or raise max_turns")]
    MaxTurnsReached {
        /// The conversation.
        conversation: ConversationId,
        /// Its turn limit.
        max_turns: u64,
    },

    /// A turn limit below the turns a conversation already holds.
    #[error("conversation {conversation} already holds {turn_count} turns, more than the limit {max_turns} asked for; choose a limit of at least {turn_count}")]
    MaxTurnsBelowTurnCount {
        /// The conversation.
        conversation: ConversationId,
        /// The limit asked for.
        max_turns: u64,
        /// The turns already taken.
        turn_count: u64,
    },

    /// A status transition that the state machine does not allow.
    #[error("cannot {action} conversation {conversation} while it is {from}")]
    InvalidTransition {
        /// The conversation.
        conversation: ConversationId,
        /// The status it is in.
        from: Status,
        /// The refused action ("pause", "resume", "complete", ...).
        action: &'static str,
    },

    /// `time_out` was called before the conversation was idle long enough.
    #[error(
        "conversation {conversation} is not expired yet: {remaining:?} of its idle timeout remain"
    )]
    NotExpired {
        /// The conversation.
        conversation: ConversationId,
        /// Time left before it expires.
        remaining: Duration,
    },

    /// Phases move forward only (Execution may repeat).
    #[error("conversation {conversation} cannot move from phase {from} back to {to}; phases only move forward (Execution may repeat)")]
    PhaseRegression {
        /// The conversation.
        conversation: ConversationId,
        /// The current phase.
        from: Phase,
        /// The refused phase.
        to: Phase,
    },

    /// A handshake outcome arrived after the handshake phase.
    #[error("conversation {conversation} is past its handshake (phase {phase}); handshake outcomes apply only in the Handshake phase")]
    HandshakeOver {
        /// The conversation.
        conversation: ConversationId,
        /// Its current phase.
        phase: Phase,
    },

    /// A conversation needs at least two participants.
    #[error("a conversation needs at least 2 participants (initiator first), got {count}")]
    TooFewParticipants {
        /// How many were given.
        count: usize,
    },

    /// The same module appears twice among the participants.
    #[error("{module} appears more than once among the participants; list each module once")]
    DuplicateParticipant {
        /// The repeated module.
        module: ModuleName,
    },

    /// The idle timeout must be positive.
    #[error("idle timeout must be greater than zero; omit it to use the hub's default")]
    ZeroIdleTimeout,

    /// A conversation's context or metadata, or a context patch, nests deeper than
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH) levels.
    #[error("the {what} nests deeper than {limit} levels of arrays and objects; flatten it")]
    ContextTooDeep {
        /// Which object ("context", "metadata", "context patch").
        what: &'static str,
        /// The depth limit.
        limit: usize,
    },

    /// Message content nests arrays and objects deeper than
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH) levels.
    #[error("message content nests deeper than {limit} levels of arrays and objects; flatten it")]
    ContentTooDeep {
        /// The depth limit.
        limit: usize,
    },

    /// Message content is larger than the configured limit.
    #[error("message content is larger than the limit of {limit} bytes of JSON; send a reference to the data instead, or raise the limit")]
    ContentTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// Stored or deserialized state breaks an invariant of the model.
    #[error("the conversation's state is not valid: {detail}")]
    InvalidState {
        /// What is inconsistent.
        detail: String,
    },
}

fn status_hint(status: &Status) -> &'static str {
    match status {
        Status::Paused => "resume it first",
        Status::Active => "retry",
        Status::Completed | Status::TimedOut | Status::Failed { .. } => {
            "it has ended; start a new conversation"
        }
    }
}

/// Shortens user input kept inside an error so that a huge input cannot make a huge error.
pub(crate) fn shorten(input: &str) -> String {
    const KEEP: usize = 80;
    match input.char_indices().nth(KEEP) {
        None => input.to_owned(),
        Some((cut, _)) => format!("{}…", &input[..cut]),
    }
}
