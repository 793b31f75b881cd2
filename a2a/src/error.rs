//! [`A2aError`]: the one error type of the network front.

use colloquy_runtime::HubError;

/// What setting up or serving the network front can fail with. (Protocol errors go to the
/// caller as JSON-RPC errors; they are not this type.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum A2aError {
    /// The hub refused (registering the caller participant, a bad name).
    #[error(transparent)]
    Hub(#[from] HubError),

    /// Binding or serving the HTTP listener failed.
    #[error("the A2A server's listener failed: {0}; check the address and that the port is free")]
    Io(#[source] std::io::Error),
}

impl A2aError {
    /// Wraps a listener's IO error.
    pub fn io(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}
