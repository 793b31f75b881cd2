//! [`HubError`]: the one error type of the runtime.

use colloquy_core::{ConversationId, CoreError, ModuleName};
use colloquy_registry::RegistryError;
use colloquy_router::RouteError;
use colloquy_storage::StoreError;

/// Everything a [`Hub`](crate::Hub) call can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Routing failed: unknown conversation or target, a handler that timed out, failed,
    /// panicked or answered something that cannot be applied, shutdown. (A route error
    /// that wraps a store failure or a refusal of the model arrives as
    /// [`Store`](Self::Store) or [`Refused`](Self::Refused) instead: one arm per cause.)
    #[error(transparent)]
    Route(RouteError),

    /// Registering or unregistering a module failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// The store failed; nothing of the operation was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The conversation model refused: a turn not accepted (not active, expired, not a
    /// participant, turn limit, content too large or too deep), an invalid name, id or
    /// setting.
    #[error(transparent)]
    Refused(#[from] CoreError),

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
    #[error("conversation {conversation} has several possible targets ({list}); use send_to to choose one", list = ModuleName::join(participants))]
    AmbiguousTarget {
        /// The conversation.
        conversation: ConversationId,
        /// Its participants.
        participants: Vec<ModuleName>,
    },

    /// The hub cannot take part in its cluster (its link cannot listen, or would listen
    /// beyond this machine without a secret): the message of the
    /// [`ClusterError`](colloquy_cluster::ClusterError) says what to change.
    #[error("{reason}")]
    Cluster {
        /// What went wrong, and what to change.
        reason: String,
    },

    /// A caller participant (the name network clients speak as) has the name of a module
    /// the hub reaches: it would take the module's place. Give the caller another name.
    #[error("the caller participant {participant} has the name of a module of the hub; a caller cannot speak as a module: give the participant another name")]
    CallerIsModule {
        /// The participant.
        participant: ModuleName,
    },

    /// No module declares the capability a broadcast asked for.
    #[error("no registered module other than the sender declares capability {capability}")]
    NoModuleWithCapability {
        /// The capability.
        capability: String,
    },
}

impl From<RouteError> for HubError {
    /// Unwraps the causes other layers own, so that each cause has one arm.
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::Storage(e) => Self::Store(e),
            RouteError::Refused(e) => Self::Refused(e),
            other => Self::Route(other),
        }
    }
}

impl From<colloquy_cluster::ClusterError> for HubError {
    fn from(e: colloquy_cluster::ClusterError) -> Self {
        Self::Cluster {
            reason: e.to_string(),
        }
    }
}
