//! [`ConversationHandle`]: one participant's grip on one conversation.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use colloquy_core::{
    Conversation, ConversationId, Draft, HandshakeOutcome, Message, MessageKind, ModuleName, Phase,
};
use colloquy_router::{Change, Exchange, RouteOptions};
use colloquy_storage::MessageRange;
use serde_json::{Map, Value};

use crate::{Hub, HubError};

/// A participant's handle on one conversation: it sends as that participant and reads only
/// that conversation.
///
/// Handles are cheap to clone. A module can only obtain a handle on a conversation it takes
/// part in ([`Hub::conversation`] checks), and a handle cannot reach any other
/// conversation.
#[derive(Clone)]
pub struct ConversationHandle {
    hub: Hub,
    id: ConversationId,
    speaker: ModuleName,
    participants: Arc<Mutex<Arc<[ModuleName]>>>,
    handshake: Option<Arc<HandshakeOutcome>>,
}

impl std::fmt::Debug for ConversationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationHandle")
            .field("id", &self.id)
            .field("speaker", &self.speaker)
            .finish_non_exhaustive()
    }
}

impl ConversationHandle {
    pub(crate) fn new(
        hub: Hub,
        id: ConversationId,
        speaker: ModuleName,
        participants: Vec<ModuleName>,
        handshake: Option<HandshakeOutcome>,
    ) -> Self {
        Self {
            hub,
            id,
            speaker,
            participants: Arc::new(Mutex::new(participants.into())),
            handshake: handshake.map(Arc::new),
        }
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        self.id
    }

    /// The participant this handle speaks as.
    pub fn speaker(&self) -> &ModuleName {
        &self.speaker
    }

    /// How the invited participants answered (Accept, or a Counter proposal to consider),
    /// for the handle that opened the conversation. `None` for a handle re-attached with
    /// [`Hub::conversation`]: the answer is not stored, and a made-up one would mislead.
    pub fn handshake(&self) -> Option<&HandshakeOutcome> {
        self.handshake.as_deref()
    }

    fn known_participants(&self) -> Arc<[ModuleName]> {
        self.participants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn learn(&self, exchange: &Exchange) {
        *self
            .participants
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&exchange.participants);
    }

    /// The same conversation, speaking as `participant`.
    pub async fn as_participant(
        &self,
        participant: ModuleName,
    ) -> Result<ConversationHandle, HubError> {
        self.hub.conversation(self.id, participant).await
    }

    /// Sends `content` to the only other participant (a two-party conversation) and waits
    /// for the turn to complete: stored, delivered, reply stored.
    pub async fn send(&self, content: impl Into<Value>) -> Result<Exchange, HubError> {
        let participants = self.known_participants();
        let mut others = participants.iter().filter(|p| **p != self.speaker);
        match (others.next(), others.next()) {
            (Some(target), None) => {
                let target = target.clone();
                self.send_to(target, content).await
            }
            _ => Err(HubError::AmbiguousTarget {
                conversation: self.id,
                participants: participants.to_vec(),
            }),
        }
    }

    /// Sends a request to `target`.
    pub async fn send_to(
        &self,
        target: ModuleName,
        content: impl Into<Value>,
    ) -> Result<Exchange, HubError> {
        self.send_draft(
            Draft::request(self.speaker.clone(), target, content.into()),
            RouteOptions::default(),
        )
        .await
    }

    /// Sends a message of any kind to `target` with per-call options (such as a handler
    /// deadline for this call).
    pub async fn send_with(
        &self,
        target: ModuleName,
        kind: MessageKind,
        content: impl Into<Value>,
        options: RouteOptions,
    ) -> Result<Exchange, HubError> {
        self.send_draft(
            Draft::new(self.speaker.clone(), target, kind, content.into()),
            options,
        )
        .await
    }

    async fn send_draft(&self, draft: Draft, options: RouteOptions) -> Result<Exchange, HubError> {
        let exchange = self.hub.route(self.id, draft, options).await?;
        self.learn(&exchange);
        Ok(exchange)
    }

    /// The last `limit` messages, oldest first, from the store.
    pub async fn history(&self, limit: u64) -> Result<Vec<Message>, HubError> {
        Ok(self
            .hub
            .router()
            .messages(self.id, MessageRange::Last(limit))
            .await?)
    }

    /// Every message, oldest first.
    pub async fn transcript(&self) -> Result<Vec<Message>, HubError> {
        Ok(self
            .hub
            .router()
            .messages(self.id, MessageRange::All)
            .await?)
    }

    /// The conversation's stored state.
    pub async fn state(&self) -> Result<Conversation, HubError> {
        Ok(self.hub.router().conversation(self.id).await?)
    }

    async fn change(&self, change: Change) -> Result<Conversation, HubError> {
        let conversation = self.hub.router().apply(self.id, change).await?;
        *self
            .participants
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = conversation.shared_participants();
        Ok(conversation)
    }

    /// Ends the conversation (Completed).
    pub async fn end(&self) -> Result<Conversation, HubError> {
        self.change(Change::Complete).await
    }

    /// Ends the conversation as Failed with `reason`.
    pub async fn fail(&self, reason: impl Into<String>) -> Result<Conversation, HubError> {
        self.change(Change::Fail(reason.into())).await
    }

    /// Pauses it: no turns, no idle expiry, until resumed.
    pub async fn pause(&self) -> Result<Conversation, HubError> {
        self.change(Change::Pause).await
    }

    /// Resumes a paused conversation; its idle clock restarts.
    pub async fn resume(&self) -> Result<Conversation, HubError> {
        self.change(Change::Resume).await
    }

    /// Hands participant `from`'s place to the registered module `to`.
    pub async fn transfer(
        &self,
        from: ModuleName,
        to: ModuleName,
    ) -> Result<Conversation, HubError> {
        self.change(Change::Transfer { from, to }).await
    }

    /// Moves to a later phase.
    pub async fn advance_phase(&self, phase: Phase) -> Result<Conversation, HubError> {
        self.change(Change::Phase(phase)).await
    }

    /// Merges `patch` into the shared context.
    /// Changes the conversation's idle timeout (stored: it holds after a restart and for
    /// every hub on the same database).
    pub async fn set_idle_timeout(&self, idle_timeout: Duration) -> Result<Conversation, HubError> {
        self.change(Change::IdleTimeout(idle_timeout)).await
    }

    /// Changes the conversation's turn limit (`None` removes it); stored like the idle
    /// timeout. A limit below the turns already taken is refused.
    pub async fn set_max_turns(&self, max_turns: Option<u64>) -> Result<Conversation, HubError> {
        self.change(Change::MaxTurns(max_turns)).await
    }

    /// Merges `patch` into the shared context (JSON merge patch).
    pub async fn patch_context(&self, patch: Map<String, Value>) -> Result<Conversation, HubError> {
        self.change(Change::Patch(patch)).await
    }
}
