//! [`HubError`]: the one error type of the runtime.

use colloquy_core::{ConversationId, CoreError, ModuleName};
use colloquy_registry::RegistryError;
use colloquy_router::RouteError;
use colloquy_storage::StoreError;

/// Everything a [`Hub`](crate::Hub) call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Routing failed (unknown conversation or target, not active, handler timed out,
    /// failed or panicked, storage, shutdown, ...).
    #[error(transparent)]
    Route(#[from] RouteError),

    /// Registering or unregistering a module failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A name, id or conversation setting was invalid.
    #[error(transparent)]
    Invalid(#[from] CoreError),

    /// An invited module rejected the conversation; it is stored as Failed.
    #[error("{module} rejected conversation {conversation}: {reason}")]
    Rejected {
        /// The conversation (stored, Failed).
        conversation: ConversationId,
        /// The module that said no.
        module: ModuleName,
        /// Its reason.
        reason: String,
    },

    /// `send` needs a target when the conversation has more than one other participant.
    #[error("conversation {conversation} has several possible targets ({list}); use send_to to choose one", list = participants.iter().map(ModuleName::as_str).collect::<Vec<_>>().join(", "))]
    AmbiguousTarget {
        /// The conversation.
        conversation: ConversationId,
        /// Its participants.
        participants: Vec<ModuleName>,
    },

    /// No module declares the capability a broadcast asked for.
    #[error("no registered module other than the sender declares capability {capability}")]
    NoModuleWithCapability {
        /// The capability.
        capability: String,
    },
}
