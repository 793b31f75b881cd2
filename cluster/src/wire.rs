//! What crosses between hubs: a turn, and the hosting hub's answer. The same JSON goes over
//! the link and, where the link is not used, into the database's delivery rows.
//!
//! Compatibility: a field added later is optional (`#[serde(default)]`), so hubs of two
//! versions meet during a rolling upgrade; `Answer::Unavailable` is sent over the link only,
//! where both ends are of a version that knows it.

use std::{sync::Arc, time::Duration};

use colloquy_core::{Message, MessageId};
use colloquy_registry::{ConversationView, History, ModuleError, Response, Turn};
use colloquy_router::RouteError;
use serde::{Deserialize, Serialize};

/// A turn as it is sent: serialized from borrowed parts, nothing copied. Its history is the
/// whole window, or (over the link) only the messages after `since`, a request the host
/// ran before and remembers with its window (see `history.rs`); `window` is the whole
/// window's length.
#[derive(Serialize)]
pub(crate) struct OutgoingTurn<'a> {
    message: &'a Message,
    conversation: &'a ConversationView,
    history: Vec<&'a Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<MessageId>,
    window: usize,
}

impl<'a> OutgoingTurn<'a> {
    /// The turn with its whole window.
    pub(crate) fn new(turn: &'a Turn) -> Self {
        Self::after(turn, None)
    }

    /// The turn with the messages of its window after `since` (the whole window when
    /// `since` is `None` or no longer in it).
    pub(crate) fn after(turn: &'a Turn, since: Option<MessageId>) -> Self {
        let (since, history) = crate::history::after(&turn.history, since);
        Self {
            message: &turn.message,
            conversation: &turn.conversation,
            history,
            since,
            window: turn.history.len(),
        }
    }
}

/// A turn as it is received.
#[derive(Deserialize)]
pub(crate) struct IncomingTurn {
    message: Message,
    conversation: ConversationView,
    history: Vec<Message>,
    #[serde(default)]
    since: Option<MessageId>,
    /// Absent from hubs that always send the whole window.
    #[serde(default)]
    window: Option<usize>,
}

impl IncomingTurn {
    /// The turn, handed to the module with `deadline` (what is left of the sender's), its
    /// window rebuilt from `hosted` when only its newer part came. `None`: the part it
    /// builds on is not remembered here (the sender sends the whole window again).
    pub(crate) fn into_turn(
        self,
        deadline: Duration,
        hosted: Option<&crate::history::Hosted>,
    ) -> Option<Turn> {
        let newer: Vec<Arc<Message>> = self.history.into_iter().map(Arc::new).collect();
        let history = match self.since {
            None => newer,
            Some(since) => {
                let remembered = hosted?.get(self.conversation.id)?;
                let window = self.window.unwrap_or(usize::MAX);
                crate::history::rebuild(&remembered, since, newer, window)?
            }
        };
        Some(Turn {
            message: Arc::new(self.message),
            conversation: self.conversation,
            history: History::from(history),
            deadline,
        })
    }

    /// True when only the newer part of the window came (the rest is remembered here).
    pub(crate) fn by_reference(&self) -> bool {
        self.since.is_some()
    }

    /// How many messages of the window came.
    pub(crate) fn sent(&self) -> usize {
        self.history.len()
    }

    /// The length of the sender's window.
    pub(crate) fn window(&self) -> usize {
        self.window.unwrap_or(self.history.len())
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
