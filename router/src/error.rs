//! [`RouteError`]: every way routing can fail, each saying what to do.

use std::time::Duration;

use colloquy_core::{ConversationId, CoreError, ModuleName};
use colloquy_storage::StoreError;

#[cfg(doc)]
use crate::RouteOptions;

/// Why a message, an opening or a state change was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The request's message id ([`RouteOptions::message_id`](crate::RouteOptions)) is
    /// stored already: this request was sent before (through this hub or another) and is
    /// turn `turn` of `conversation`. Read that exchange instead of sending it again.
    #[error("message {message} is stored already, as turn {turn} of conversation {conversation}: it was sent before; read that exchange instead of sending it again")]
    AlreadyStored {
        /// The conversation it is stored in.
        conversation: ConversationId,
        /// The message id.
        message: colloquy_core::MessageId,
        /// Its turn there.
        turn: u64,
    },

    /// No conversation with this id exists (in memory or in the store).
    #[error("conversation {conversation} does not exist; start one first (or check the id)")]
    UnknownConversation {
        /// The id.
        conversation: ConversationId,
    },

    /// The target is not registered.
    #[error("no module named {target} is registered (registered: {list}); register it before sending to it", list = ModuleName::join(registered))]
    UnknownTarget {
        /// The missing module.
        target: ModuleName,
        /// Every registered module.
        registered: Vec<ModuleName>,
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

    /// The caller cancelled the handler call ([`RouteOptions::cancel`]). The request is
    /// stored, the turn ended without a reply, and the conversation stays usable.
    #[error("the call to {module} in conversation {conversation} was cancelled by its caller; the request is stored and the conversation is still usable")]
    Canceled {
        /// The conversation.
        conversation: ConversationId,
        /// The module whose call was stopped.
        module: ModuleName,
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

    /// The handler's response cannot be applied: the conversation refused it (a reply too
    /// large or too deep, a patch too deep, a transfer to a participant). Nothing of it was
    /// stored. (A transfer to an unregistered module is [`UnknownTarget`](Self::UnknownTarget).)
    #[error(
        "{module} gave a response that cannot be applied in conversation {conversation}: {refusal}"
    )]
    InvalidResponse {
        /// The conversation.
        conversation: ConversationId,
        /// The module.
        module: ModuleName,
        /// Why the conversation refused it.
        #[source]
        refusal: CoreError,
    },

    /// The conversation model refused the operation: not active, expired, not a
    /// participant, turn limit, self-addressed message, content too large or too deep,
    /// phase regression, ... ([`CoreError`] owns these causes; the router only wraps them).
    #[error(transparent)]
    Refused(#[from] CoreError),

    /// The store failed; nothing of this operation was acknowledged.
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),

    /// The hub is shutting down and takes no new work.
    #[error("the hub is shutting down; no new turns are accepted")]
    ShuttingDown,
}
