//! What crosses between hubs: a turn, and the hosting hub's answer. The same JSON goes over
//! the link and, where the link is not used, into the database's delivery rows.
//!
//! Compatibility: a field added later is optional (`#[serde(default)]`), so hubs of two
//! versions meet during a rolling upgrade; `Answer::Unavailable` is sent over the link only,
//! where both ends are of a version that knows it.

use std::{sync::Arc, time::Duration};

use colloquy_core::Message;
use colloquy_registry::{ConversationView, History, ModuleError, Response, Turn};
use colloquy_router::RouteError;
use serde::{Deserialize, Serialize};

/// A turn as it is sent: serialized from borrowed parts, nothing copied.
#[derive(Serialize)]
pub(crate) struct OutgoingTurn<'a> {
    message: &'a Message,
    conversation: &'a ConversationView,
    history: Vec<&'a Message>,
}

impl<'a> OutgoingTurn<'a> {
    pub(crate) fn new(turn: &'a Turn) -> Self {
        Self {
            message: &turn.message,
            conversation: &turn.conversation,
            history: turn.history.iter().map(|m| &**m).collect(),
        }
    }
}

/// A turn as it is received.
#[derive(Deserialize)]
pub(crate) struct IncomingTurn {
    message: Message,
    conversation: ConversationView,
    history: Vec<Message>,
}

impl IncomingTurn {
    /// The turn, handed to the module with `deadline` (what is left of the sender's).
    pub(crate) fn into_turn(self, deadline: Duration) -> Turn {
        Turn {
            message: Arc::new(self.message),
            conversation: self.conversation,
            history: History::from(self.history.into_iter().map(Arc::new).collect::<Vec<_>>()),
            deadline,
        }
    }
}

/// The hosting hub's answer to a turn.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    /// The module's response.
    Response(Response),
    /// The module failed, panicked or ran out of time: the sender's turn fails with this.
    Error(String),
    /// The hub could not run the turn (it is shutting down, or no longer hosts the
    /// module): the sender tries another way. Over the link only.
    Unavailable(String),
}

impl Answer {
    /// What a hosted call came to.
    pub(crate) fn hosted(result: Result<Response, RouteError>) -> Self {
        match result {
            Ok(response) => Self::Response(response),
            Err(RouteError::ShuttingDown) => {
                Self::Unavailable("the hosting hub is shutting down".into())
            }
            Err(RouteError::HandlerFailed { message, .. }) => Self::Error(message),
            Err(other) => Self::Error(other.to_string()),
        }
    }

    /// The sender's view: the module's response, or why there is none.
    pub(crate) fn into_result(self) -> Result<Response, ModuleError> {
        match self {
            Self::Response(response) => Ok(response),
            Self::Error(message) | Self::Unavailable(message) => Err(ModuleError::new(message)),
        }
    }
}
