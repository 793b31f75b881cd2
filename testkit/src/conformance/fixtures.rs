//! Building blocks of the checks: ids, conversations and exchanges made deterministically.

use std::sync::atomic::{AtomicU64, Ordering};

use colloquy_core::{
    Conversation, ConversationId, Draft, HandshakeOutcome, Intent, Message, MessageId, ModuleName,
    Timestamp,
};
use serde_json::json;

use super::Failure;

/// A fixed origin, so that every time in the suite is a readable offset from it.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// `T0` plus `offset_ms`.
pub(crate) fn at(offset_ms: u64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// Unique random bytes for ids (a counter: unique within the process, never repeating).
fn unique() -> [u8; 10] {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    [n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], 0xC0, 0x11]
}

pub(crate) fn message_id(t: Timestamp) -> MessageId {
    MessageId::from_parts(t, unique())
}

pub(crate) fn name(s: &str) -> Result<ModuleName, Failure> {
    Ok(s.parse()?)
}

/// An active conversation in its Execution phase, started at `started`.
pub(crate) fn conversation(
    participants: &[&str],
    started: Timestamp,
) -> Result<Conversation, Failure> {
    let names = participants
        .iter()
        .map(|p| name(p))
        .collect::<Result<Vec<_>, _>>()?;
    let responder = names
        .get(1)
        .cloned()
        .ok_or_else(|| Failure("fixture needs two participants".into()))?;
    let mut c = Conversation::new(
        ConversationId::from_parts(started, unique()),
        names,
        Intent::Collaborate,
        std::time::Duration::from_secs(300),
        started,
    )?;
    c.conclude_handshake(&responder, &HandshakeOutcome::Accept, started)?;
    Ok(c)
}

/// Accepts `turns` more messages, alternating between the first two participants, one
/// second apart from `start`; replies point at the message before. The state becomes the
/// next write of the conversation (its version goes up by one), ready to be appended with
/// the returned messages in one batch.
pub(crate) fn talk(
    c: &mut Conversation,
    turns: u64,
    start: Timestamp,
) -> Result<Vec<Message>, Failure> {
    let (a, b) = match c.participants() {
        [a, b, ..] => (a.clone(), b.clone()),
        _ => return Err(Failure("fixture needs two participants".into())),
    };
    let mut out: Vec<Message> = Vec::new();
    for i in 0..turns {
        let now = Timestamp::from_millis(start.as_millis() + i * 1000);
        let turn = c.turn_count() + 1;
        let (from, to) = if turn % 2 == 1 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let mut draft = Draft::request(
            from,
            to,
            json!({ "turn": turn, "text": format!("message {turn}") }),
        );
        if let Some(prev) = out.last() {
            draft.in_reply_to = Some(prev.id);
        }
        out.push(c.accept(draft, message_id(now), now)?);
    }
    if turns > 0 {
        c.bump_version();
    }
    Ok(out)
}

/// Creates `c` in `store`, then appends `turns` messages in one batch.
pub(crate) async fn stored_with_turns(
    store: &impl colloquy_storage::ConversationStore,
    participants: &[&str],
    started: Timestamp,
    turns: u64,
) -> Result<(Conversation, Vec<Message>), Failure> {
    let mut c = conversation(participants, started)?;
    store.create(&c).await?;
    let messages = talk(&mut c, turns, started)?;
    if turns > 0 {
        store.append(&c, &shared(&messages)).await?;
    }
    Ok((c, messages))
}

/// The members of a JSON object literal (empty for anything else).
/// `messages` behind `Arc`, as [`ConversationStore::append`] takes them.
///
/// [`ConversationStore::append`]: colloquy_storage::ConversationStore::append
pub(crate) fn shared(messages: &[Message]) -> Vec<std::sync::Arc<Message>> {
    messages.iter().cloned().map(std::sync::Arc::new).collect()
}

pub(crate) fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}
