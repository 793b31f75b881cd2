//! [`RouteError`]: every way routing can fail, each saying what to do.

use std::time::Duration;

use colloquy_core::{ConversationId, CoreError, ModuleName, Status};
use colloquy_storage::StoreError;

/// Why a message, an opening or a state change was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No conversation with this id exists (in memory or in the store).
    #[error("conversation {conversation} does not exist; start one first (or check the id)")]
    UnknownConversation {
        /// The id.
        conversation: ConversationId,
    },

    /// The conversation does not accept turns in its current status.
    #[error("conversation {conversation} is {status} and accepts no turns; {hint}", hint = if matches!(status, Status::Paused) { "resume it first" } else { "start a new conversation" })]
    NotActive {
        /// The conversation.
        conversation: ConversationId,
        /// Its status.
        status: Status,
    },

    /// The conversation was idle for its idle timeout; it is now TimedOut.
    #[error("conversation {conversation} timed out after {idle_for:?} idle (its idle timeout is {idle_timeout:?}); start a new one, or give long conversations a larger idle timeout")]
    Expired {
        /// The conversation.
        conversation: ConversationId,
        /// How long it had been idle.
        idle_for: Duration,
        /// Its idle timeout.
        idle_timeout: Duration,
    },

    /// The target is not registered.
    #[error("no module named {target} is registered (registered: {list}); register it before sending to it", list = colloquy_core::join_names(registered))]
    UnknownTarget {
        /// The missing module.
        target: ModuleName,
        /// Every registered module.
        registered: Vec<ModuleName>,
    },

    /// The sender or target does not take part in the conversation.
    #[error("{module} is not a participant of conversation {conversation} (participants: {list}); only participants may send or receive", list = colloquy_core::join_names(participants))]
    NotParticipant {
        /// The conversation.
        conversation: ConversationId,
        /// The outsider.
        module: ModuleName,
        /// The participants.
        participants: Vec<ModuleName>,
    },

    /// The target's handler did not answer within its deadline. The request is stored and
    /// the conversation stays usable.
    #[error("{module} did not answer within {deadline:?} in conversation {conversation}; the request is stored and the conversation is still usable: retry, or raise the module's deadline")]
    HandlerTimedOut {
        /// The conversation.
        conversation: ConversationId,
        /// The slow module.
        module: ModuleName,
        /// The deadline it missed.
        deadline: Duration,
    },

    /// The target's handler returned an error. The request is stored and the conversation
    /// stays usable.
    #[error("{module} failed in conversation {conversation}: {message}")]
    HandlerFailed {
        /// The conversation.
        conversation: ConversationId,
        /// The failing module.
        module: ModuleName,
        /// Its error message.
        message: String,
    },

    /// The target's handler panicked. The panic was contained; the hub keeps running.
    #[error("{module} panicked in conversation {conversation}: {message}; the panic was contained and the conversation is still usable")]
    HandlerPanicked {
        /// The conversation.
        conversation: ConversationId,
        /// The module.
        module: ModuleName,
        /// The panic message.
        message: String,
    },

    /// The handler's response cannot be applied (a reply too large or refused, a transfer
    /// to an unknown module, a context patch too deep). Nothing of it was stored.
    #[error(
        "{module} gave a response that cannot be applied in conversation {conversation}: {reason}"
    )]
    InvalidResponse {
        /// The conversation.
        conversation: ConversationId,
        /// The module.
        module: ModuleName,
        /// What is wrong.
        reason: String,
    },

    /// Message content is larger than the configured limit.
    #[error("message content is larger than the limit of {limit} bytes of JSON; send a reference to the data instead, or raise the limit")]
    ContentTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// Message content nests arrays and objects deeper than colloquy stores.
    #[error("message content nests deeper than {limit} levels of arrays and objects; flatten it")]
    ContentTooDeep {
        /// The depth limit ([`MAX_JSON_DEPTH`](colloquy_core::MAX_JSON_DEPTH)).
        limit: usize,
    },

    /// The conversation refused the operation (turn limit, self-addressed message, phase
    /// regression, ...).
    #[error(transparent)]
    Refused(CoreError),

    /// The store failed; nothing of this operation was acknowledged.
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),

    /// The hub is shutting down and takes no new work.
    #[error("the hub is shutting down; no new turns are accepted")]
    ShuttingDown,
}

impl From<CoreError> for RouteError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::NotActive {
                conversation,
                status,
            } => Self::NotActive {
                conversation,
                status,
            },
            CoreError::Expired {
                conversation,
                idle_for,
                idle_timeout,
            } => Self::Expired {
                conversation,
                idle_for,
                idle_timeout,
            },
            CoreError::NotParticipant {
                conversation,
                module,
                participants,
            } => Self::NotParticipant {
                conversation,
                module,
                participants,
            },
            other => Self::Refused(other),
        }
    }
}
