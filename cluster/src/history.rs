//! The history window sent by reference over the link. A turn carries its conversation's
//! recent messages (twenty by default); sent whole every time, they were most of a linked
//! turn's bytes and of the CPU both hubs spent on it. The host remembers, per conversation,
//! the window and request of the last turn it ran; the sender remembers, per peer and
//! conversation, the last request it sent there. The next turn to that peer sends only the
//! messages after that request (`since`), and the host rebuilds the window from what it
//! remembers. A host that no longer remembers (evicted, restarted) says so, and the sender
//! sends the whole window again; a turn through the database always carries it whole.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use colloquy_core::{ConversationId, Message, MessageId};
use colloquy_registry::History;

/// Most conversations either side remembers; past it, everything is forgotten at once (the
/// next turn of each sends its whole window again). Bounded, so neither side grows with the
/// number of conversations.
const REMEMBERED: usize = 4_096;

/// The messages of `history` after `since` (all of it when `since` is `None` or not in the
/// window), and the `since` that applies.
pub(crate) fn after(
    history: &History,
    since: Option<MessageId>,
) -> (Option<MessageId>, Vec<&Message>) {
    let messages: Vec<&Message> = history.iter().map(|m| &**m).collect();
    match since.and_then(|id| messages.iter().position(|m| m.id == id)) {
        Some(at) => (since, messages[at + 1..].to_vec()),
        None => (None, messages),
    }
}

/// The window the sender's router handed its module: what the host remembers up to and
/// including `since`, then `newer`, the last `window` of them. `None`: `since` is not
/// remembered.
pub(crate) fn rebuild(
    remembered: &[Arc<Message>],
    since: MessageId,
    newer: Vec<Arc<Message>>,
    window: usize,
) -> Option<Vec<Arc<Message>>> {
    let at = remembered.iter().position(|m| m.id == since)?;
    let mut rebuilt: Vec<Arc<Message>> = remembered[..=at].to_vec();
    rebuilt.extend(newer);
    let excess = rebuilt.len().saturating_sub(window);
    rebuilt.drain(..excess);
    Some(rebuilt)
}

/// The sender's side: per conversation, the last request sent to one peer.
#[derive(Default)]
pub(crate) struct Sent(Mutex<HashMap<ConversationId, MessageId>>);

impl Sent {
    pub(crate) fn last(&self, conversation: ConversationId) -> Option<MessageId> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&conversation)
            .copied()
    }

    /// `request` reached the host and was answered: the host remembers it.
    pub(crate) fn remember(&self, conversation: ConversationId, request: MessageId) {
        let mut sent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if sent.len() >= REMEMBERED && !sent.contains_key(&conversation) {
            sent.clear();
        }
        sent.insert(conversation, request);
    }

    pub(crate) fn forget(&self, conversation: ConversationId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&conversation);
    }
}

/// The host's side: per conversation, the window and request of the last turn it ran.
#[derive(Default)]
pub(crate) struct Hosted(Mutex<HashMap<ConversationId, Arc<[Arc<Message>]>>>);

impl Hosted {
    pub(crate) fn get(&self, conversation: ConversationId) -> Option<Arc<[Arc<Message>]>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&conversation)
            .cloned()
    }

    /// Remembers `history` and `request`, the turn just run, keeping at most `window + 1`.
    pub(crate) fn remember(&self, history: &History, request: &Arc<Message>, window: usize) {
        let mut kept: Vec<Arc<Message>> = history.iter().cloned().collect();
        kept.push(Arc::clone(request));
        let excess = kept.len().saturating_sub(window + 1);
        kept.drain(..excess);
        let mut hosted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if hosted.len() >= REMEMBERED && !hosted.contains_key(&request.conversation_id) {
            hosted.clear();
        }
        hosted.insert(request.conversation_id, kept.into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use colloquy_core::{MessageKind, Timestamp};

    fn message(turn: u64) -> Arc<Message> {
        Arc::new(Message {
            id: MessageId::from_parts(Timestamp::from_millis(turn), [turn as u8; 10]),
            conversation_id: ConversationId::from_parts(Timestamp::from_millis(0), [0; 10]),
            turn,
            source: "a".parse().unwrap(),
            target: "b".parse().unwrap(),
            kind: MessageKind::Request,
            content: serde_json::json!(turn),
            in_reply_to: None,
            sent_at: Timestamp::from_millis(turn),
        })
    }

    fn turns(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().map(|m| m.turn).collect()
    }

    #[test]
    fn the_window_is_rebuilt_from_what_the_host_remembers_and_what_is_newer() {
        let all: Vec<Arc<Message>> = (1..=8).map(message).collect();
        // The host ran turn 5 with the window 2..=4: it remembers 2..=5.
        let remembered = &all[1..5];
        // The sender's next window (of 4) is 4..=7: it sends 6 and 7, after 5.
        let rebuilt = rebuild(remembered, all[4].id, all[5..7].to_vec(), 4).unwrap();
        assert_eq!(turns(&rebuilt), [4, 5, 6, 7]);
        // A window larger than what is remembered keeps all of it.
        let rebuilt = rebuild(remembered, all[4].id, all[5..7].to_vec(), 10).unwrap();
        assert_eq!(turns(&rebuilt), [2, 3, 4, 5, 6, 7]);
        // A `since` the host does not remember cannot be rebuilt.
        assert!(rebuild(remembered, all[7].id, Vec::new(), 4).is_none());
    }

    #[test]
    fn only_the_messages_after_the_last_request_sent_go_out() {
        let history = History::from((3..=7).map(message).collect::<Vec<_>>());
        let since = message(5).id;
        let (applies, newer) = after(&history, Some(since));
        assert_eq!(applies, Some(since));
        assert_eq!(newer.iter().map(|m| m.turn).collect::<Vec<_>>(), [6, 7]);
        // Not in the window (it scrolled out): the whole window, and no `since`.
        let (applies, newer) = after(&history, Some(message(1).id));
        assert_eq!(applies, None);
        assert_eq!(newer.len(), 5);
    }
}
