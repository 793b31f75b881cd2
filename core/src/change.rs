//! [`StateChange`]: what one write changed in a conversation's shared state (its context,
//! participants, phase or status), so that a store can keep the history of each next to
//! the write itself, and a reader can see the context as it stood after any turn.
//!
//! A conversation remembers the shared state it was last stored with (or read at); when it
//! becomes the next write ([`Conversation::bump_version`]) the difference is sealed as that
//! version's change ([`Conversation::state_change`]). Nothing else has to remember to record
//! anything: every transition is covered because the comparison is of the states.
//!
//! [`Conversation::bump_version`]: crate::Conversation::bump_version
//! [`Conversation::state_change`]: crate::Conversation::state_change

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ConversationParts, ModuleName, Phase, Status, Timestamp};

/// What one write of a conversation changed in its shared state. Only what changed is
/// set; the context, when it changed, is given whole as it stood after the write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// The version the write stored (the conversation's first write, its creation, is 0).
    pub version: u64,
    /// The turn count after the write: the change happened with (or after) that turn.
    pub turn: u64,
    /// When, as the conversation's last activity after the write.
    pub at: Timestamp,
    /// The shared context after the write, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// The participants after the write, if they changed (a transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ModuleName>>,
    /// The phase after the write, if it changed (the handshake's outcome, for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The status after the write, if it changed (with a failure's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// The shared state a conversation was last stored with.
#[derive(Debug, Clone)]
pub(crate) struct Baseline {
    context: Arc<Map<String, Value>>,
    participants: Arc<[ModuleName]>,
    phase: Phase,
    status: Status,
}

impl Baseline {
    pub(crate) fn of(parts: &ConversationParts) -> Self {
        Self {
            context: Arc::clone(&parts.context),
            participants: Arc::clone(&parts.participants),
            phase: parts.phase,
            status: parts.status.clone(),
        }
    }
}

/// What `parts` changed since `baseline` (everything, when there is none: the creation),
/// or `None` when nothing shared changed.
pub(crate) fn diff(baseline: Option<&Baseline>, parts: &ConversationParts) -> Option<StateChange> {
    let context = match baseline {
        // The same allocation is the same context; otherwise compare the values.
        Some(b) if Arc::ptr_eq(&b.context, &parts.context) || b.context == parts.context => None,
        _ => Some(Map::clone(&parts.context)),
    };
    let participants = match baseline {
        Some(b) if b.participants == parts.participants => None,
        _ => Some(parts.participants.to_vec()),
    };
    let phase = match baseline {
        Some(b) if b.phase == parts.phase => None,
        _ => Some(parts.phase),
    };
    let status = match baseline {
        Some(b) if b.status == parts.status => None,
        _ => Some(parts.status.clone()),
    };
    if context.is_none() && participants.is_none() && phase.is_none() && status.is_none() {
        return None;
    }
    Some(StateChange {
        version: parts.version,
        turn: parts.turn_count,
        at: parts.last_activity,
        context,
        participants,
        phase,
        status,
    })
}
