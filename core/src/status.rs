//! The named states of a conversation: [`Status`], [`Phase`], [`Intent`] and the
//! [`HandshakeOutcome`] of an invitation.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CoreError;

/// Where a conversation stands. Only `Active` accepts turns; the last three are terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Accepts turns.
    Active,
    /// Held on purpose; accepts no turns and does not expire until resumed.
    Paused,
    /// Ended normally.
    Completed,
    /// Ended because it was idle for its idle timeout.
    TimedOut,
    /// Ended by a failure.
    Failed {
        /// Why it failed.
        reason: String,
    },
}

impl Status {
    /// The status without its data, for filters and counts.
    pub fn kind(&self) -> StatusKind {
        match self {
            Self::Active => StatusKind::Active,
            Self::Paused => StatusKind::Paused,
            Self::Completed => StatusKind::Completed,
            Self::TimedOut => StatusKind::TimedOut,
            Self::Failed { .. } => StatusKind::Failed,
        }
    }

    /// True once the conversation has ended: no transition leaves a terminal status.
    pub fn is_terminal(&self) -> bool {
        self.kind().is_terminal()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { reason } => write!(f, "failed ({reason})"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

named_enum!(
    /// [`Status`] without its data.
    StatusKind, "status" {
        /// See [`Status::Active`].
        Active = "active",
        /// See [`Status::Paused`].
        Paused = "paused",
        /// See [`Status::Completed`].
        Completed = "completed",
        /// See [`Status::TimedOut`].
        TimedOut = "timed_out",
        /// See [`Status::Failed`].
        Failed = "failed",
    }
);

impl StatusKind {
    /// True for the statuses that end a conversation.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::TimedOut | Self::Failed)
    }
}

named_enum!(
    /// The protocol phase. Phases move forward only; `Execution` may repeat.
    Phase, "phase" {
        /// Participants are being invited (the target may accept, reject or counter-propose).
        Handshake = "handshake",
        /// Terms (schemas, plans) are being agreed.
        Negotiation = "negotiation",
        /// The work is being done.
        Execution = "execution",
        /// Results are being confirmed.
        Confirmation = "confirmation",
        /// The conversation is ending or has ended.
        Termination = "termination",
    }
);

named_enum!(
    /// Why the initiator opened the conversation.
    Intent, "intent" {
        /// Ask for information.
        Query = "query",
        /// Agree on terms, such as a schema.
        Negotiate = "negotiate",
        /// Work on something together.
        Collaborate = "collaborate",
        /// Hand work over to another module.
        Transfer = "transfer",
        /// Tell something; little back-and-forth expected.
        Inform = "inform",
    }
);

/// A participant's answer to an invitation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HandshakeOutcome {
    /// Join the conversation.
    Accept,
    /// Refuse to join; the conversation fails with this reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// Join, but on other terms: the conversation moves to Negotiation.
    Counter {
        /// The counter-proposal, for the initiator to consider.
        proposal: Value,
    },
}
