//! [`McpError`]: the one error type of this crate.

use colloquy_runtime::{HubError, ModuleName};

/// What setting up or running an MCP front, or an MCP server as a module, can fail with.
/// (A failed tool call of a client is not an error: it is a tool result with `isError`.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The hub refused (registering the caller participants or the module, a store failure).
    #[error(transparent)]
    Hub(HubError),

    /// A caller participant has the name of one of the hub's modules: the front would
    /// speak as that module. Choose another participant name (`--as`, or the token's).
    #[error("the MCP caller participant {participant} is the name of a module of this hub; give callers another name")]
    CallerIsModule {
        /// The participant.
        participant: ModuleName,
    },

    /// A session was asked for as a participant that is not one of the server's callers.
    /// Give it in the options ([`McpOptions::caller`](crate::McpOptions::caller) or a token).
    #[error("{participant} is not a caller of this MCP server; name it in its options (caller or a token) first")]
    UnknownCaller {
        /// The participant.
        participant: ModuleName,
    },

    /// The MCP session could not be set up or broke (the transport closed during the
    /// handshake, a protocol violation).
    #[error("MCP session with {peer}: {detail}")]
    Session {
        /// The other side: `stdio`, a command or a URL.
        peer: String,
        /// What went wrong, as the SDK reports it.
        detail: String,
    },

    /// The MCP server's command could not be started.
    #[error("could not start the MCP server {command:?}: {detail}; check that the command exists and runs")]
    Spawn {
        /// The command line.
        command: String,
        /// Why, as the operating system reports it.
        detail: String,
    },

    /// An MCP server offers no tools: as a module it could answer nothing.
    #[error("the MCP server {peer} offers no tools; a module needs at least one")]
    NoTools {
        /// The command or URL.
        peer: String,
    },

    /// The module name derived from an MCP server, or given for it, is not a valid name.
    #[error("{name:?} is not a valid module name for the MCP server {peer}: {detail}")]
    BadName {
        /// The name.
        name: String,
        /// The command or URL.
        peer: String,
        /// Why it is refused.
        detail: String,
    },
}

impl From<HubError> for McpError {
    /// A caller named like a module is this front's own error (it names the front's
    /// setting to change); every other refusal of the hub is passed on as it is.
    fn from(e: HubError) -> Self {
        match e {
            HubError::CallerIsModule { participant } => Self::CallerIsModule { participant },
            other => Self::Hub(other),
        }
    }
}
