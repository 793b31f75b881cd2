//! The transitions of a [`Conversation`]: settings, turn acceptance, the handshake,
//! phases, pause and resume, the endings and transfers. Each takes `now`, and a refused one
//! leaves the conversation exactly as it was.

use std::{sync::Arc, time::Duration};

use serde_json::{Map, Value};

use crate::{context::merge_patch, CoreError, Draft, Message, MessageId, ModuleName, Timestamp};

use super::{Conversation, HandshakeOutcome, Intent, Phase, Status};

impl Conversation {
    /// Changes the idle timeout (must be positive).
    pub fn set_idle_timeout(&mut self, idle_timeout: Duration) -> Result<(), CoreError> {
        if idle_timeout.is_zero() {
            return Err(CoreError::ZeroIdleTimeout);
        }
        self.refuse_if_terminal("change the idle timeout of")?;
        self.parts.idle_timeout_ms = crate::time::duration_millis(idle_timeout);
        Ok(())
    }

    /// Changes the turn limit (`None` removes it). A limit below the turns already taken
    /// is refused with [`CoreError::MaxTurnsBelowTurnCount`].
    pub fn set_max_turns(&mut self, max_turns: Option<u64>) -> Result<(), CoreError> {
        self.refuse_if_terminal("change the turn limit of")?;
        let max_turns = max_turns.map(|m| m.min(i64::MAX as u64));
        if let Some(max) = max_turns {
            if max < self.parts.turn_count {
                return Err(CoreError::MaxTurnsBelowTurnCount {
                    conversation: self.parts.id,
                    max_turns: max,
                    turn_count: self.parts.turn_count,
                });
            }
        }
        self.parts.max_turns = max_turns;
        Ok(())
    }

    /// Checks whether `draft` would be accepted at `now` and returns its turn number.
    ///
    /// Does not change the conversation.
    pub fn check_draft(&self, draft: &Draft, now: Timestamp) -> Result<u64, CoreError> {
        let p = &self.parts;
        if p.status != Status::Active {
            return Err(CoreError::NotActive {
                conversation: p.id,
                status: p.status.clone(),
            });
        }
        if self.expired(now) {
            return Err(CoreError::Expired {
                conversation: p.id,
                idle_for: self.idle_for(now).unwrap_or_default(),
                idle_timeout: self.idle_timeout(),
            });
        }
        for module in [&draft.source, &draft.target] {
            if !self.is_participant(module) {
                return Err(CoreError::NotParticipant {
                    conversation: p.id,
                    module: module.clone(),
                    participants: p.participants.to_vec(),
                });
            }
        }
        if draft.source == draft.target {
            return Err(CoreError::SelfAddressed {
                conversation: p.id,
                module: draft.source.clone(),
            });
        }
        if let Some(max_turns) = p.max_turns {
            if p.turn_count >= max_turns {
                return Err(CoreError::MaxTurnsReached {
                    conversation: p.id,
                    max_turns,
                });
            }
        }
        p.turn_count
            .checked_add(1)
            .ok_or(CoreError::MaxTurnsReached {
                conversation: p.id,
                max_turns: u64::MAX,
            })
    }

    /// Accepts `draft` as the next turn, giving it `id` and the time `now`.
    ///
    /// Ends the turn in progress, if any (a reply is accepted this way). On success the
    /// turn count grows by exactly one; on error nothing changes.
    pub fn accept(
        &mut self,
        draft: Draft,
        id: MessageId,
        now: Timestamp,
    ) -> Result<Message, CoreError> {
        let turn = self.check_draft(&draft, now)?;
        self.parts.turn_count = turn;
        self.parts.busy_until = None;
        self.touch(now);
        Ok(Message {
            id,
            conversation_id: self.parts.id,
            turn,
            source: draft.source,
            target: draft.target,
            kind: draft.kind,
            content: draft.content,
            in_reply_to: draft.in_reply_to,
            sent_at: now,
        })
    }

    /// Accepts `draft` as a request that is about to be delivered, whose reply is due by
    /// `reply_by` (the handler's deadline): until then the conversation is busy, not idle,
    /// however long the handler works. The turn ends with the reply ([`accept`]) or with
    /// [`end_turn`].
    ///
    /// Content larger than `max_request_bytes` serialized, or nested deeper than
    /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH), is refused first
    /// ([`check_content`](crate::check_content)), as
    /// [`conclude_turn`](Self::conclude_turn) refuses such a reply.
    ///
    /// [`accept`]: Self::accept
    /// [`end_turn`]: Self::end_turn
    pub fn begin_turn(
        &mut self,
        draft: Draft,
        id: MessageId,
        now: Timestamp,
        reply_by: Timestamp,
        max_request_bytes: Option<usize>,
    ) -> Result<Message, CoreError> {
        crate::check_content(&draft.content, max_request_bytes)?;
        let message = self.accept(draft, id, now)?;
        self.parts.busy_until = Some(reply_by.max(now));
        Ok(message)
    }

    /// Ends the turn in progress without a reply (the handler answered nothing, failed or
    /// ran out of time): idleness counts from `now`. Does nothing if no turn is in progress.
    pub fn end_turn(&mut self, now: Timestamp) {
        if self.parts.busy_until.take().is_some() {
            self.touch(now);
        }
    }

    /// Merges `patch` into the context (JSON merge patch, RFC 7396: `null` removes a key).
    ///
    /// Refused once the conversation has ended; on error the context is unchanged.
    pub fn apply_context_patch(
        &mut self,
        patch: &Map<String, Value>,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("patch the context of")?;
        merge_patch(Arc::make_mut(&mut self.parts.context), patch)?;
        self.touch(now);
        Ok(())
    }

    /// Applies the invited participants' combined answer to the invitation.
    ///
    /// Accept moves to Negotiation (intent Negotiate) or Execution; Counter moves to
    /// Negotiation; Reject fails the conversation with a reason naming `responder`.
    pub fn conclude_handshake(
        &mut self,
        responder: &ModuleName,
        outcome: &HandshakeOutcome,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("conclude the handshake of")?;
        if self.parts.phase != Phase::Handshake {
            return Err(CoreError::HandshakeOver {
                conversation: self.parts.id,
                phase: self.parts.phase,
            });
        }
        if !self.is_participant(responder) {
            return Err(CoreError::NotParticipant {
                conversation: self.parts.id,
                module: responder.clone(),
                participants: self.parts.participants.to_vec(),
            });
        }
        match outcome {
            HandshakeOutcome::Accept if self.parts.intent == Intent::Negotiate => {
                self.parts.phase = Phase::Negotiation;
            }
            HandshakeOutcome::Accept => self.parts.phase = Phase::Execution,
            HandshakeOutcome::Counter { .. } => self.parts.phase = Phase::Negotiation,
            HandshakeOutcome::Reject { reason } => {
                return self.end(
                    Status::Failed {
                        reason: format!("{responder} rejected the invitation: {reason}"),
                    },
                    "fail",
                    now,
                );
            }
        }
        self.touch(now);
        Ok(())
    }

    /// Moves to `to`: forward only, except that Execution may repeat.
    pub fn advance_phase(&mut self, to: Phase, now: Timestamp) -> Result<(), CoreError> {
        self.refuse_if_terminal("change the phase of")?;
        let from = self.parts.phase;
        if to < from || (to == from && to != Phase::Execution) {
            return Err(CoreError::PhaseRegression {
                conversation: self.parts.id,
                from,
                to,
            });
        }
        self.parts.phase = to;
        self.touch(now);
        Ok(())
    }

    /// Active -> Paused. A paused conversation accepts no turns and does not expire.
    pub fn pause(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Active, "pause")?;
        self.parts.status = Status::Paused;
        self.parts.busy_until = None;
        self.touch(now);
        Ok(())
    }

    /// Paused -> Active. The idle clock restarts at `now`.
    pub fn resume(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Paused, "resume")?;
        self.parts.status = Status::Active;
        self.touch(now);
        Ok(())
    }

    /// Active or Paused -> Completed; the phase becomes Termination.
    pub fn complete(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.end(Status::Completed, "complete", now)
    }

    /// Active or Paused -> Failed with `reason`.
    pub fn fail(&mut self, reason: impl Into<String>, now: Timestamp) -> Result<(), CoreError> {
        self.end(
            Status::Failed {
                reason: reason.into(),
            },
            "fail",
            now,
        )
    }

    /// Active -> TimedOut, allowed only once [`expired`](Self::expired) is true at `now`.
    pub fn time_out(&mut self, now: Timestamp) -> Result<(), CoreError> {
        self.require(Status::Active, "time out")?;
        if let Some(deadline) = self.deadline() {
            if now < deadline {
                return Err(CoreError::NotExpired {
                    conversation: self.parts.id,
                    remaining: deadline.saturating_duration_since(now),
                });
            }
        }
        // A timed-out conversation's last activity stays the last real activity.
        self.parts.status = Status::TimedOut;
        self.parts.busy_until = None;
        self.parts.phase = Phase::Termination;
        self.parts.ended_at = Some(now.max(self.parts.last_activity));
        Ok(())
    }

    /// Replaces participant `from` with `to` (in the same position), for handoffs.
    pub fn transfer(
        &mut self,
        from: &ModuleName,
        to: ModuleName,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal("transfer")?;
        let Some(slot) = self.parts.participants.iter().position(|m| m == from) else {
            return Err(CoreError::NotParticipant {
                conversation: self.parts.id,
                module: from.clone(),
                participants: self.parts.participants.to_vec(),
            });
        };
        if self.is_participant(&to) {
            return Err(CoreError::DuplicateParticipant { module: to });
        }
        let mut participants = self.parts.participants.to_vec();
        participants[slot] = to;
        self.parts.participants = participants.into();
        self.touch(now);
        Ok(())
    }

    pub(crate) fn end(
        &mut self,
        status: Status,
        action: &'static str,
        now: Timestamp,
    ) -> Result<(), CoreError> {
        self.refuse_if_terminal(action)?;
        self.parts.status = status;
        self.parts.phase = Phase::Termination;
        self.parts.busy_until = None;
        self.touch(now);
        self.parts.ended_at = Some(self.parts.last_activity);
        Ok(())
    }

    pub(crate) fn require(&self, status: Status, action: &'static str) -> Result<(), CoreError> {
        if self.parts.status == status {
            Ok(())
        } else {
            Err(self.invalid(action))
        }
    }

    pub(crate) fn refuse_if_terminal(&self, action: &'static str) -> Result<(), CoreError> {
        if self.parts.status.is_terminal() {
            Err(self.invalid(action))
        } else {
            Ok(())
        }
    }

    pub(crate) fn invalid(&self, action: &'static str) -> CoreError {
        CoreError::InvalidTransition {
            conversation: self.parts.id,
            from: self.parts.status.clone(),
            action,
        }
    }

    /// Records activity at `now`; time never moves backwards within a conversation.
    pub(crate) fn touch(&mut self, now: Timestamp) {
        self.parts.last_activity = self.parts.last_activity.max(now);
    }
}
