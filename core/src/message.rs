//! [`Message`], the turn a conversation accepted, and [`Draft`], a message before it has a turn.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ConversationId, CoreError, MessageId, ModuleName, Timestamp};

named_enum!(
    /// What a message is for.
    #[non_exhaustive]
    MessageKind, "message kind" {
        /// Asks the target for a reply.
        Request = "request",
        /// Answers an earlier message (`in_reply_to` names it).
        Reply = "reply",
        /// Tells the target something; no reply is expected.
        Inform = "inform",
        /// A protocol message: handshake, end, transfer, failure notes.
        Control = "control",
    }
);

/// A message that a conversation accepted: it has a turn number and will never change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id (UUID v7).
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its turn: starts at 1 and is contiguous within a conversation.
    pub turn: u64,
    /// The sending participant.
    pub source: ModuleName,
    /// The receiving participant.
    pub target: ModuleName,
    /// What it is for.
    pub kind: MessageKind,
    /// The payload.
    pub content: Value,
    /// The message this one answers, if any.
    pub in_reply_to: Option<MessageId>,
    /// When the conversation accepted it.
    pub sent_at: Timestamp,
}

/// A message before a conversation has accepted it (no id, no turn, no time yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The sending participant.
    pub source: ModuleName,
    /// The receiving participant.
    pub target: ModuleName,
    /// What it is for.
    pub kind: MessageKind,
    /// The payload.
    pub content: Value,
    /// The message this one answers, if any.
    pub in_reply_to: Option<MessageId>,
}

impl Draft {
    /// A request from `source` to `target`.
    pub fn request(source: ModuleName, target: ModuleName, content: Value) -> Self {
        Self::new(source, target, MessageKind::Request, content)
    }

    /// A draft of any kind.
    pub fn new(source: ModuleName, target: ModuleName, kind: MessageKind, content: Value) -> Self {
        Self {
            source,
            target,
            kind,
            content,
            in_reply_to: None,
        }
    }

    /// A reply from `source` to the sender of `to`.
    pub fn reply(to: &Message, source: ModuleName, content: Value) -> Self {
        Self {
            source,
            target: to.source.clone(),
            kind: MessageKind::Reply,
            content,
            in_reply_to: Some(to.id),
        }
    }
}
