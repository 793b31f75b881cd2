//! The [`Module`] trait and what a handler receives and returns.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use async_trait::async_trait;
use colloquy_core::{
    ConversationId, HandshakeOutcome, Intent, Message, MessageKind, ModuleInfo, ModuleName, Phase,
    Status,
};
use serde_json::{Map, Value};

/// A participant in conversations: it describes itself, answers invitations and handles
/// turns addressed to it.
///
/// Handlers get everything they need with each turn (the conversation's state, its shared
/// context and a window of recent history), so a module keeps no per-conversation state
/// of its own and two conversations can never see each other's data through it.
///
/// ```
/// use colloquy_registry::{Module, ModuleError, Response, Turn};
/// use colloquy_core::ModuleInfo;
///
/// struct Upper;
///
/// #[async_trait::async_trait]
/// impl Module for Upper {
///     fn info(&self) -> ModuleInfo {
///         ModuleInfo::new("upper".parse().expect("valid name"))
///     }
///     async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
///         let text = turn.message.content.as_str().ok_or_else(|| ModuleError::new("expected a string"))?;
///         Ok(Response::reply(text.to_uppercase()))
///     }
/// }
/// ```
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// What the module is; its `name` is the name it is registered under.
    fn info(&self) -> ModuleInfo;

    /// Answers an invitation to a new conversation. Accepts by default.
    async fn on_invite(&self, invitation: &Invitation) -> HandshakeOutcome {
        let _ = invitation;
        HandshakeOutcome::Accept
    }

    /// Handles one turn addressed to this module.
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError>;
}

/// An invitation to join a conversation, given to [`Module::on_invite`].
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    /// The conversation.
    pub conversation: ConversationId,
    /// Who opened it.
    pub initiator: ModuleName,
    /// Everyone invited, initiator first.
    pub participants: Vec<ModuleName>,
    /// Why it was opened.
    pub intent: Intent,
    /// The initial shared context.
    pub context: Map<String, Value>,
    /// The opener's metadata.
    pub metadata: Map<String, Value>,
}

/// The state of a conversation as a handler sees it during a turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConversationView {
    /// The conversation.
    pub id: ConversationId,
    /// Participants, initiator first.
    pub participants: Arc<[ModuleName]>,
    /// Its status (Active during a turn).
    pub status: Status,
    /// Its phase.
    pub phase: Phase,
    /// Its intent.
    pub intent: Intent,
    /// Turns so far, including the message being handled.
    pub turn_count: u64,
    /// The shared context (a snapshot shared between turns until a patch changes it).
    pub context: Arc<Map<String, Value>>,
}

/// One turn delivered to a handler.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The message addressed to this module.
    pub message: Arc<Message>,
    /// The conversation's state.
    pub conversation: ConversationView,
    /// Recent messages before this one, oldest first (at most the hub's history window).
    pub history: History,
    /// How long the handler has before the turn fails with a timeout.
    pub deadline: Duration,
}

/// Recent messages of a conversation, oldest first: a snapshot that the hub shares with
/// every turn instead of copying it, so cloning a `History` (or a [`Turn`]) is cheap.
///
/// ```
/// use std::sync::Arc;
/// use colloquy_registry::History;
///
/// let empty = History::default();
/// assert!(empty.is_empty());
/// let none: Vec<Arc<colloquy_core::Message>> = Vec::new();
/// assert_eq!(History::from(none).len(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History(Arc<VecDeque<Arc<Message>>>);

impl History {
    /// A history over `messages` (oldest first), shared rather than copied.
    pub fn new(messages: Arc<VecDeque<Arc<Message>>>) -> Self {
        Self(messages)
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages, oldest first.
    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, Arc<Message>> {
        self.0.iter()
    }

    /// The `index`-th message, oldest first.
    pub fn get(&self, index: usize) -> Option<&Arc<Message>> {
        self.0.get(index)
    }

    /// The most recent message.
    pub fn last(&self) -> Option<&Arc<Message>> {
        self.0.back()
    }

    /// The messages as a vector of shared messages (no message is copied).
    pub fn to_vec(&self) -> Vec<Arc<Message>> {
        self.0.iter().cloned().collect()
    }
}

impl From<Vec<Arc<Message>>> for History {
    fn from(messages: Vec<Arc<Message>>) -> Self {
        Self(Arc::new(messages.into()))
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a Arc<Message>;
    type IntoIter = std::collections::vec_deque::Iter<'a, Arc<Message>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A reply: content for the sender, and optionally a patch merged into the shared context
/// (JSON merge patch: `null` removes a key).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// The content.
    pub content: Value,
    /// The message kind (default [`MessageKind::Reply`]).
    pub kind: MessageKind,
    /// Changes to the shared context.
    pub context_patch: Option<Map<String, Value>>,
}

impl Reply {
    /// A plain reply.
    pub fn new(content: impl Into<Value>) -> Self {
        Self {
            content: content.into(),
            kind: MessageKind::Reply,
            context_patch: None,
        }
    }

    /// Adds a context patch.
    pub fn with_context_patch(mut self, patch: Map<String, Value>) -> Self {
        self.context_patch = Some(patch);
        self
    }
}

/// What a handler wants to happen after its turn. Serializable, so that a module hosted by
/// another hub of a cluster can answer across processes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// Reply to the sender; the reply becomes the next turn.
    Reply(Reply),
    /// Nothing to say back.
    NoReply,
    /// Nothing to say back, but merge this patch into the shared context (JSON merge
    /// patch: `null` removes a key). Stored in the one write that ends the turn, so it
    /// costs no extra turn.
    Patch {
        /// Changes to the shared context.
        context_patch: Map<String, Value>,
    },
    /// End the conversation (Completed), after an optional last reply.
    End {
        /// A last reply, if any.
        reply: Option<Reply>,
    },
    /// Hand this module's place in the conversation to another module, after an optional
    /// reply.
    Transfer {
        /// The module that takes over.
        to: ModuleName,
        /// A reply, if any.
        reply: Option<Reply>,
    },
}

impl Response {
    /// A plain reply with `content`.
    pub fn reply(content: impl Into<Value>) -> Self {
        Self::Reply(Reply::new(content))
    }

    /// A reply that also patches the shared context.
    pub fn reply_with_patch(content: impl Into<Value>, patch: Map<String, Value>) -> Self {
        Self::Reply(Reply::new(content).with_context_patch(patch))
    }

    /// No reply; patch the shared context with `patch`.
    pub fn patch(patch: Map<String, Value>) -> Self {
        Self::Patch {
            context_patch: patch,
        }
    }

    /// End the conversation without a last reply.
    pub fn end() -> Self {
        Self::End { reply: None }
    }

    /// End the conversation after replying `content`.
    pub fn end_with(content: impl Into<Value>) -> Self {
        Self::End {
            reply: Some(Reply::new(content)),
        }
    }

    /// Hand over to `to`.
    pub fn transfer(to: ModuleName) -> Self {
        Self::Transfer { to, reply: None }
    }
}

impl From<Response> for colloquy_core::TurnOutcome {
    /// The answer in the model's terms. Exhaustive on purpose: a new `Response` variant
    /// does not compile until it says what it does to the conversation.
    fn from(response: Response) -> Self {
        let mut outcome = Self::nothing();
        let reply = match response {
            Response::Reply(reply) => Some(reply),
            Response::NoReply => None,
            Response::Patch { context_patch } => {
                outcome.context_patch = Some(context_patch);
                None
            }
            Response::End { reply } => {
                outcome.end = true;
                reply
            }
            Response::Transfer { to, reply } => {
                outcome.transfer_to = Some(to);
                reply
            }
        };
        if let Some(reply) = reply {
            outcome.reply = Some((reply.kind, reply.content));
            if reply.context_patch.is_some() {
                outcome.context_patch = reply.context_patch;
            }
        }
        outcome
    }
}

/// A handler's failure. The router reports it to the sender as a typed error, with this
/// message, and the conversation stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleError {
    message: String,
}

impl ModuleError {
    /// A failure with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ModuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ModuleError {}

impl From<String> for ModuleError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for ModuleError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}
