//! [`A2aError`]: the one error type of the network front.

use std::time::Duration;

use colloquy_runtime::{HubError, ModuleName};

/// What setting up or serving the network front can fail with. (Protocol errors go to the
/// caller as JSON-RPC errors; they are not this type.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum A2aError {
    /// The hub refused (registering the caller participant, a bad name).
    #[error(transparent)]
    Hub(HubError),

    /// A remote agent (or its card) could not be reached, or answered with an HTTP error.
    #[error("the A2A agent at {url} cannot be reached: {reason}; check the URL and that the agent is running")]
    AgentUnreachable {
        /// What was asked for.
        url: String,
        /// The network's or the HTTP status's word.
        reason: String,
    },

    /// A remote agent's card is not a card this client can use.
    #[error("the agent card at {url} cannot be used: {reason}")]
    BadCard {
        /// The card's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A remote agent ended the task without an answer: failed, rejected or canceled.
    #[error("the A2A agent {agent} ended task {task} as {state}: {reason}")]
    AgentFailed {
        /// The agent, by its module name.
        agent: ModuleName,
        /// The agent's task id.
        task: String,
        /// How it ended (`failed`, `rejected`, `canceled`, ...).
        state: String,
        /// The agent's status message, or "no reason given".
        reason: String,
    },

    /// A remote agent answered with a JSON-RPC error.
    #[error("the A2A agent {agent} refused the call with error {code}: {message}")]
    AgentError {
        /// The agent, by its module name.
        agent: ModuleName,
        /// The JSON-RPC error code.
        code: i64,
        /// The agent's error message.
        message: String,
    },

    /// A remote agent did not answer within the module's deadline.
    #[error("the A2A agent {agent} did not answer within {deadline:?}; raise the module's deadline or check the agent")]
    AgentTimedOut {
        /// The agent, by its module name.
        agent: ModuleName,
        /// The deadline it missed.
        deadline: Duration,
    },

    /// A remote agent's answer is not A2A.
    #[error("the A2A agent {agent} answered with something that is not A2A v1.0: {reason}")]
    BadAnswer {
        /// The agent, by its module name.
        agent: ModuleName,
        /// What could not be read.
        reason: String,
    },

    /// A caller participant (the anonymous caller, or a token's) has the name of a module
    /// of the hub: it would take the module's place.
    #[error("the caller participant {participant} has the name of a module of the hub; a caller cannot speak as a module: give the participant another name")]
    CallerIsModule {
        /// The participant.
        participant: ModuleName,
    },

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

impl From<HubError> for A2aError {
    /// A caller named like a module is this front's own error (it names the front's
    /// setting to change); every other refusal of the hub is passed on as it is.
    fn from(e: HubError) -> Self {
        match e {
            HubError::CallerIsModule { participant } => Self::CallerIsModule { participant },
            other => Self::Hub(other),
        }
    }
}
