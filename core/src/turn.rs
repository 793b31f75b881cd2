//! How a turn ends, decided purely: the handler's answer in the model's terms
//! ([`TurnOutcome`]) applied to the conversation in one step
//! ([`Conversation::conclude_turn`]), and the invitees' answers combined into one
//! ([`HandshakeOutcome::combine`]).

use serde_json::{Map, Value};

use crate::{
    check_content, Conversation, CoreError, Draft, HandshakeOutcome, Message, MessageId,
    MessageKind, ModuleName, Timestamp,
};

/// What a handler's answer does to its conversation: an optional reply, an optional
/// context patch, an optional handover, and whether the conversation ends.
///
/// `colloquy-registry` turns a handler's `Response` into this; the router applies it with
/// [`Conversation::conclude_turn`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TurnOutcome {
    /// A reply to the request's sender, as its kind and content.
    pub reply: Option<(MessageKind, Value)>,
    /// Merged into the shared context (JSON merge patch), in the same step as the reply.
    pub context_patch: Option<Map<String, Value>>,
    /// The module that takes over the answering participant's place.
    pub transfer_to: Option<ModuleName>,
    /// The conversation ends (Completed) after the reply.
    pub end: bool,
}

impl TurnOutcome {
    /// Nothing: the turn ends without a reply or a change.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// A reply with `content` (kind [`MessageKind::Reply`]).
    pub fn reply(content: Value) -> Self {
        Self {
            reply: Some((MessageKind::Reply, content)),
            ..Self::default()
        }
    }
}

impl Conversation {
    /// Ends the turn that `request` began ([`begin_turn`](Self::begin_turn)) the way
    /// `outcome` says, all or nothing: the context patch is merged, the reply (checked
    /// against the JSON rule and `max_reply_bytes`) is accepted as the next turn with `id`
    /// and `in_reply_to` set, the answering participant is replaced by `transfer_to`, and
    /// the conversation completes if `end`. Returns the reply.
    ///
    /// On error nothing changes. Time spent inside the turn never counts against the reply:
    /// it is accepted up to the request's deadline.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use colloquy_core::*;
    /// # let (a, b): (ModuleName, ModuleName) = ("asker".parse()?, "answerer".parse()?);
    /// # let t0 = Timestamp::from_millis(1_000);
    /// # let mut conv = Conversation::new(ConversationId::from_parts(t0, [1; 10]), vec![a.clone(), b.clone()], Intent::Query, Duration::from_secs(1), t0)?;
    /// let deadline = t0.saturating_add(Duration::from_secs(60));
    /// let request = conv.begin_turn(Draft::request(a, b, "work".into()), MessageId::from_parts(t0, [2; 10]), t0, deadline, None)?;
    /// // The handler took 15 s, far past the 1 s idle timeout but within its deadline.
    /// let later = t0.saturating_add(Duration::from_secs(15));
    /// let reply = conv.conclude_turn(&request, TurnOutcome::reply("done".into()), MessageId::from_parts(later, [3; 10]), later, None)?;
    /// assert_eq!(reply.map(|r| r.turn), Some(2));
    /// assert_eq!(conv.idle_since(), Some(later));
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn conclude_turn(
        &mut self,
        request: &Message,
        outcome: TurnOutcome,
        id: MessageId,
        now: Timestamp,
        max_reply_bytes: Option<usize>,
    ) -> Result<Option<Message>, CoreError> {
        let reply_draft = |kind, content| Draft {
            source: request.target.clone(),
            target: request.source.clone(),
            kind,
            content,
            in_reply_to: Some(request.id),
        };
        // The common answer, a plain reply (or nothing), is one step that is all or nothing
        // by itself: no copy of the conversation is needed.
        if outcome.context_patch.is_none() && outcome.transfer_to.is_none() && !outcome.end {
            return match outcome.reply {
                Some((kind, content)) => {
                    check_content(&content, max_reply_bytes)?;
                    Ok(Some(self.accept(reply_draft(kind, content), id, now)?))
                }
                None => {
                    self.end_turn(now);
                    Ok(None)
                }
            };
        }
        let mut next = self.clone();
        if let Some(patch) = &outcome.context_patch {
            next.apply_context_patch(patch, now)?;
        }
        let reply = match outcome.reply {
            Some((kind, content)) => {
                check_content(&content, max_reply_bytes)?;
                Some(next.accept(reply_draft(kind, content), id, now)?)
            }
            None => {
                next.end_turn(now);
                None
            }
        };
        if let Some(to) = outcome.transfer_to {
            next.transfer(&request.target, to, now)?;
        }
        if outcome.end {
            next.complete(now)?;
        }
        *self = next;
        Ok(reply)
    }
}

impl HandshakeOutcome {
    /// Combines the invited participants' answers into the conversation's: the first
    /// rejection, else the first counter-proposal, else acceptance. `None` when nobody
    /// answered.
    ///
    /// ```
    /// # use colloquy_core::*;
    /// let (b, c): (ModuleName, ModuleName) = ("b".parse()?, "c".parse()?);
    /// let answers = [
    ///     (b.clone(), HandshakeOutcome::Accept),
    ///     (c.clone(), HandshakeOutcome::Reject { reason: "busy".into() }),
    /// ];
    /// let (who, what) = HandshakeOutcome::combine(answers).unwrap();
    /// assert_eq!(who, c);
    /// assert!(matches!(what, HandshakeOutcome::Reject { .. }));
    /// # Ok::<(), CoreError>(())
    /// ```
    pub fn combine(
        answers: impl IntoIterator<Item = (ModuleName, HandshakeOutcome)>,
    ) -> Option<(ModuleName, HandshakeOutcome)> {
        let mut combined: Option<(ModuleName, HandshakeOutcome)> = None;
        for (name, answer) in answers {
            let replace = match (&combined, &answer) {
                (None, _) => true,
                (Some((_, Self::Reject { .. })), _) => false,
                (Some(_), Self::Reject { .. }) => true,
                (Some((_, Self::Accept)), Self::Counter { .. }) => true,
                _ => false,
            };
            if replace {
                combined = Some((name, answer));
            }
        }
        combined
    }
}
