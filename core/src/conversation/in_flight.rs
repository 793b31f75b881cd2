//! The exchange-state rules: is an exchange in flight, whose, and until when. Pure
//! functions of the stored state, the time and what the asking writer knows of its own
//! last request; the router decides with them whether to wait for another writer's
//! exchange (another hub on the same database) or to conclude one its dead writer left.

use super::Conversation;
use crate::{Message, MessageKind, Timestamp};

/// Whose exchange a conversation is in, as one writer sees the stored state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InFlight {
    /// No exchange is in flight: a request may be accepted.
    Idle,
    /// The asking writer's own exchange: the state is the one its last stored request
    /// made (its reply could not be written, or is being written).
    Own,
    /// Another writer's exchange, whose reply is due by `until` (still to come).
    Other {
        /// When its reply is due: the handler's deadline.
        until: Timestamp,
    },
    /// Another writer's exchange whose reply was due by `until`, which has passed: its
    /// writer gave up or died without ending the turn.
    Lapsed {
        /// When its reply was due.
        until: Timestamp,
    },
}

impl InFlight {
    /// True for another writer's exchange, due or lapsed.
    pub fn is_another_writers(self) -> bool {
        matches!(self, Self::Other { .. } | Self::Lapsed { .. })
    }
}

impl Conversation {
    /// Whose exchange this conversation is in at `now`, for a writer whose own last stored
    /// request made version `own_request` of it (`None`: it stored none here).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use colloquy_core::*;
    /// let t = Timestamp::from_millis(1_000);
    /// let mut c = Conversation::new(
    ///     ConversationId::from_parts(t, [1; 10]),
    ///     vec!["a".parse()?, "b".parse()?],
    ///     Intent::Query,
    ///     Duration::from_secs(60),
    ///     t,
    /// )?;
    /// assert_eq!(c.in_flight(t, None), InFlight::Idle);
    /// let due = Timestamp::from_millis(6_000);
    /// let draft = Draft::request("a".parse()?, "b".parse()?, serde_json::json!("hi"));
    /// c.begin_turn(draft, MessageId::from_parts(t, [2; 10]), t, due, None)?;
    /// c.bump_version();
    /// assert_eq!(c.in_flight(t, Some(c.version())), InFlight::Own);
    /// assert_eq!(c.in_flight(t, None), InFlight::Other { until: due });
    /// assert_eq!(c.in_flight(due, None), InFlight::Lapsed { until: due });
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn in_flight(&self, now: Timestamp, own_request: Option<u64>) -> InFlight {
        let Some(until) = self.busy_until() else {
            return InFlight::Idle;
        };
        if own_request.is_some_and(|own| own == self.version()) {
            InFlight::Own
        } else if until > now {
            InFlight::Other { until }
        } else {
            InFlight::Lapsed { until }
        }
    }

    /// The request of another writer's exchange that has no answer yet, given the latest
    /// stored message `last`: `last` itself when the conversation is in another writer's
    /// exchange ([`in_flight`](Self::in_flight), due or lapsed) and `last` is this
    /// conversation's latest turn and a request. What a writer that takes over from a dead
    /// one delivers again.
    pub fn unanswered_request<'m>(
        &self,
        now: Timestamp,
        own_request: Option<u64>,
        last: &'m Message,
    ) -> Option<&'m Message> {
        (self.in_flight(now, own_request).is_another_writers()
            && last.conversation_id == self.id()
            && last.turn == self.turn_count()
            && last.kind == MessageKind::Request)
            .then_some(last)
    }
}
