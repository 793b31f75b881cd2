//! [`TextSearch`]: finding turns across conversations by a text in their content.
//!
//! Every backend runs the same substring search on the content's JSON text (keys and
//! values, as stored), case-insensitive for ASCII letters: SQLite with `instr` over
//! `lower(content)`, PostgreSQL with `strpos` over `lower(content::text)`, memory in Rust.
//! No index is kept for it, so a write costs nothing more; a search reads the messages
//! (newest first, up to its limit), which suits an inspector's occasional query, not a
//! hot path.

use colloquy_core::{ConversationId, Message, ModuleName, Timestamp};
use serde::{Deserialize, Serialize};

/// Which turns to find.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TextSearch {
    /// The text the content must hold (trimmed; ASCII letters in any case).
    pub text: String,
    /// Only turns of conversations this participant takes part in now.
    pub participant: Option<ModuleName>,
    /// At most this many turns, newest first (clamped to 1..=500).
    pub limit: usize,
}

impl TextSearch {
    /// Turns holding `text`, in any conversation, at most 50.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            participant: None,
            limit: 50,
        }
    }

    /// Only in conversations `participant` takes part in.
    pub fn participant(mut self, participant: ModuleName) -> Self {
        self.participant = Some(participant);
        self
    }

    /// At most `limit` turns.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The text as the backends compare it: trimmed, ASCII letters lowercased; `None` when
    /// empty (nothing is searched).
    pub fn needle(&self) -> Option<String> {
        let text = self.text.trim();
        (!text.is_empty()).then(|| text.to_ascii_lowercase())
    }

    /// The limit, clamped.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, 500)
    }

    /// Whether `message`'s content holds the needle (the memory backend's test).
    pub fn matches(needle: &str, message: &Message) -> bool {
        message
            .content
            .to_string()
            .to_ascii_lowercase()
            .contains(needle)
    }
}

/// A turn found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its turn.
    pub turn: u64,
    /// When it was stored.
    pub sent_at: Timestamp,
}

/// Newest first; ties (the same millisecond) by conversation then turn, descending, the
/// order every backend sorts in.
pub(crate) fn newest_first(hits: &mut [SearchHit]) {
    hits.sort_by(|a, b| {
        (b.sent_at, b.conversation, b.turn).cmp(&(a.sent_at, a.conversation, a.turn))
    });
}
