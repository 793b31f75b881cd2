//! [`ConversationEvent`]: what the router wrote, announced after it landed, to whoever
//! subscribed ([`Router::subscribe`](crate::Router::subscribe)).

use std::sync::Arc;

use colloquy_core::{Conversation, ConversationId, Message};

/// How many events a slow subscriber may fall behind before it is told it lagged.
pub(crate) const EVENTS_BUFFERED: usize = 1024;

/// A write the router made, after the store acknowledged it. Every write goes through the
/// router, so this is every change of every conversation this router touches (not those
/// of another process sharing the database).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConversationEvent {
    /// A conversation was opened.
    Opened {
        /// Its state as stored.
        conversation: Arc<Conversation>,
    },
    /// Turns were stored, with the conversation's new state.
    Stored {
        /// Its state after the write.
        conversation: Arc<Conversation>,
        /// The new messages, in turn order.
        messages: Vec<Arc<Message>>,
    },
    /// The conversation's state changed without a new turn (it ended, timed out, was
    /// paused or resumed, its context was patched, a turn ended without a reply).
    Changed {
        /// Its state after the write.
        conversation: Arc<Conversation>,
    },
}

impl ConversationEvent {
    /// The conversation the event is about, as written (its
    /// [`state_change`](Conversation::state_change) says what the write changed).
    pub fn conversation(&self) -> &Conversation {
        match self {
            Self::Opened { conversation }
            | Self::Stored { conversation, .. }
            | Self::Changed { conversation } => conversation,
        }
    }

    /// Its id.
    pub fn conversation_id(&self) -> ConversationId {
        self.conversation().id()
    }
}
