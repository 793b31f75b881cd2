//! Checks every backend applies to a write before touching storage, so that all backends
//! refuse the same inconsistent calls with the same errors.

#[cfg(doc)]
use colloquy_core::MAX_JSON_DEPTH;
use colloquy_core::{Conversation, ConversationId, CoreError, Message, MessageId, StatusKind};

use crate::StoreError;

/// Refuses what core's JSON rule refuses ([`colloquy_core::check_content`],
/// [`Conversation::check_json`]): JSON nested deeper than [`MAX_JSON_DEPTH`] could not be
/// read back (the parser's limit is 128) and would make serialization recurse without
/// bound.
fn refused(e: CoreError) -> StoreError {
    StoreError::InvalidInput {
        reason: e.to_string(),
    }
}

/// Checks the JSON of a conversation's state (on every write of a state).
pub(crate) fn check_state(conversation: &Conversation) -> Result<(), StoreError> {
    conversation.check_json().map_err(refused)
}

/// Checks a `create` call: a new conversation has no turns.
pub(crate) fn check_create(conversation: &Conversation) -> Result<(), StoreError> {
    check_state(conversation)?;
    if conversation.turn_count() != 0 {
        return Err(StoreError::InvalidInput {
            reason: format!(
                "conversation {} is created with turn count {}; a new conversation has none, append its messages instead",
                conversation.id(),
                conversation.turn_count()
            ),
        });
    }
    Ok(())
}

/// Checks an `append` batch against its own conversation state.
pub(crate) fn check_append<M: std::borrow::Borrow<Message>>(
    conversation: &Conversation,
    messages: &[M],
) -> Result<(), StoreError> {
    let invalid = |reason: String| Err(StoreError::InvalidInput { reason });
    let Some(last) = messages.last().map(std::borrow::Borrow::borrow) else {
        return invalid(
            "append needs at least one message; use update to store state alone".into(),
        );
    };
    let mut previous: Option<u64> = None;
    for message in messages.iter().map(std::borrow::Borrow::borrow) {
        if message.conversation_id != conversation.id() {
            return invalid(format!(
                "message {} belongs to conversation {}, not {}",
                message.id,
                message.conversation_id,
                conversation.id()
            ));
        }
        colloquy_core::check_content(&message.content, None).map_err(refused)?;
        if message.turn == 0 {
            return invalid(format!(
                "message {} has turn 0; turns start at 1",
                message.id
            ));
        }
        if let Some(previous) = previous.filter(|p| message.turn != p + 1) {
            return invalid(format!(
                "message turns must be consecutive, got {} after {previous}",
                message.turn
            ));
        }
        previous = Some(message.turn);
    }
    check_state(conversation)?;
    if last.turn != conversation.turn_count() {
        return invalid(format!(
            "the last message has turn {} but the conversation state has turn count {}",
            last.turn,
            conversation.turn_count()
        ));
    }
    Ok(())
}

/// What a backend found stored for one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Neither its id nor its turn is stored.
    New,
    /// Its id is stored, at this (conversation, turn).
    SameId {
        /// True if stored at the same conversation and turn.
        same_place: bool,
    },
    /// Its id is new but its turn is taken.
    TurnTaken,
}

/// Decides, from what is stored, which messages of a checked batch to insert.
///
/// `key` gives each item's message id and turn; `existing` says what is stored for it.
/// Returns the index of the first item to insert (all after it are new too), or the
/// conflict. `stored_turns` is the stored conversation's turn count.
pub(crate) fn plan_append<T>(
    conversation: ConversationId,
    items: &[T],
    stored_turns: u64,
    key: impl Fn(&T) -> (MessageId, u64),
    mut existing: impl FnMut(&T) -> Result<Existing, StoreError>,
) -> Result<usize, StoreError> {
    let conflict = |turn: u64, reason: String| StoreError::Conflict {
        conversation,
        turn,
        reason,
    };
    let mut first_new = items.len();
    for (i, item) in items.iter().enumerate() {
        let (id, turn) = key(item);
        match existing(item)? {
            Existing::SameId { same_place: true } if first_new == items.len() => continue,
            Existing::SameId { .. } => {
                return Err(conflict(
                    turn,
                    format!("message id {id} is already stored at another turn or conversation"),
                ))
            }
            Existing::TurnTaken => {
                return Err(conflict(
                    turn,
                    format!("turn {turn} is taken by another message"),
                ))
            }
            Existing::New => {
                if first_new == items.len() {
                    first_new = i;
                }
                let expected = stored_turns + 1 + (i - first_new) as u64;
                if turn != expected {
                    return Err(conflict(
                        turn,
                        format!("turn {turn} would leave a gap: the next turn is {expected}"),
                    ));
                }
            }
        }
    }
    Ok(first_new)
}

/// Checks that an `update` does not move the stored turn count.
pub(crate) fn check_update(
    conversation: ConversationId,
    given_turns: u64,
    stored_turns: u64,
) -> Result<(), StoreError> {
    if stored_turns != given_turns {
        return Err(StoreError::Conflict {
            conversation,
            turn: stored_turns,
            reason: format!(
                "the given state has turn count {given_turns} but {stored_turns} turns are stored; update cannot add or drop turns"
            ),
        });
    }
    Ok(())
}

/// What a backend read of the stored conversation before a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredState {
    /// The stored version.
    pub version: u64,
    /// The stored status.
    pub status: StatusKind,
    /// The stored turn count.
    pub turns: u64,
}

/// The compare half of every conversation write's compare-and-set: the given state must
/// have been computed from the stored one (its version is the stored version plus one),
/// and an ended conversation is never written again, by anyone.
pub(crate) fn check_write(
    conversation: ConversationId,
    given_version: u64,
    stored: StoredState,
) -> Result<(), StoreError> {
    let conflict = |reason: String| StoreError::Conflict {
        conversation,
        turn: stored.turns,
        reason,
    };
    if stored.status.is_terminal() {
        return Err(conflict(format!(
            "the conversation has ended ({}) and can no longer be changed or appended to",
            stored.status
        )));
    }
    let expected = stored.version.saturating_add(1);
    if given_version != expected {
        let how = if given_version < expected {
            "stale: it was computed from an older state that another writer has replaced"
        } else {
            "ahead of the store: it skips writes the store never saw"
        };
        return Err(conflict(format!(
            "the given state has version {given_version} but the stored one is version {} (a write must carry the stored version plus one); the given state is {how}",
            stored.version
        )));
    }
    Ok(())
}

/// A number as a signed 64-bit column (SQL backends), or `InvalidInput` naming it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_i64(what: &str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidInput {
        reason: format!("{what} {value} does not fit a signed 64-bit column"),
    })
}

/// A conversation's scalar state as the columns of an SQL backend: its status word and
/// failure reason, and its numbers as signed 64-bit values (times in milliseconds).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct StateColumns {
    pub(crate) status: &'static str,
    pub(crate) failure_reason: Option<String>,
    pub(crate) phase: &'static str,
    pub(crate) intent: &'static str,
    pub(crate) turn_count: i64,
    pub(crate) started_at: i64,
    pub(crate) last_activity: i64,
    pub(crate) ended_at: Option<i64>,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) max_turns: Option<i64>,
    pub(crate) version: i64,
    pub(crate) busy_until: Option<i64>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl StateColumns {
    /// The columns of `conversation`.
    pub(crate) fn of(conversation: &Conversation) -> Result<Self, StoreError> {
        use colloquy_core::{Status, Timestamp};
        let p = conversation.parts();
        Ok(Self {
            status: p.status.kind().as_str(),
            failure_reason: match &p.status {
                Status::Failed { reason } => Some(reason.clone()),
                _ => None,
            },
            phase: p.phase.as_str(),
            intent: p.intent.as_str(),
            turn_count: to_i64("turn count", p.turn_count)?,
            started_at: p.started_at.as_millis_i64(),
            last_activity: p.last_activity.as_millis_i64(),
            ended_at: p.ended_at.map(Timestamp::as_millis_i64),
            idle_timeout_ms: to_i64("idle timeout", p.idle_timeout_ms)?,
            max_turns: p.max_turns.map(|m| to_i64("max turns", m)).transpose()?,
            version: to_i64("version", p.version)?,
            busy_until: p.busy_until.map(Timestamp::as_millis_i64),
        })
    }
}
