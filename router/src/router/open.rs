//! Opening a conversation and its handshake.

use std::{collections::VecDeque, sync::Arc};

use colloquy_core::{Conversation, Draft, HandshakeOutcome, ModuleName, Status};
use colloquy_registry::Invitation;
use tracing::{debug, Instrument};

use crate::{
    cache::{Hot, Lease},
    ConversationSpec, FirstExchange, Opened, RouteError, RouteOptions,
};

use super::{call::Work, Router};

impl Router {
    /// Opens a conversation and runs the handshake: every invited participant's
    /// `on_invite` is asked in turn (within its deadline). A rejection fails the
    /// conversation; a counter-proposal moves it to Negotiation.
    pub async fn open(&self, spec: ConversationSpec) -> Result<Opened, RouteError> {
        let _flight = self.enter()?;
        let (mut conversation, span) = self.conversation_for(&spec)?;
        async {
            let (responder, outcome) = self.handshake(&mut conversation, spec).await?;
            self.store_opened(conversation, responder, outcome).await
        }
        .instrument(span)
        .await
    }

    /// Stores the handshake's outcome on its own and keeps an active conversation hot.
    async fn store_opened(
        &self,
        mut conversation: Conversation,
        responder: ModuleName,
        outcome: HandshakeOutcome,
    ) -> Result<Opened, RouteError> {
        conversation.bump_version();
        self.update_durably(&conversation).await?;
        if conversation.status() == &Status::Active {
            let lease = self.cache.lease(conversation.id()).await;
            let mut state = lease.slot().state.lock().await;
            if state.is_none() {
                *state = Some(Hot::new(conversation.clone(), VecDeque::new()));
                self.publish(lease.slot(), &conversation);
            }
        }
        debug!(outcome = ?outcome, "conversation opened");
        Ok(Opened {
            conversation,
            outcome,
            responder,
        })
    }

    /// [`open`](Self::open), then [`route`](Self::route) of the conversation's first
    /// request, with one store write fewer: when the handshake leaves the conversation
    /// active, its outcome is stored by the request's own write instead of one of its own.
    ///
    /// Nothing is delivered before it is stored, as with the two calls: the conversation is
    /// created before the invitations go out, and the request (with the handshake's
    /// outcome) is stored before it is delivered. No one sees the outcome before it is
    /// stored either: the conversation's turn lock is held from the handshake to the
    /// request's write. If the request is refused before it is stored (its content too
    /// large, its target unknown, the store failing), the outcome is stored on its own, as
    /// [`open`](Self::open) would have, and the refusal is the exchange's result.
    ///
    /// A rejection ends the conversation as in [`open`](Self::open) and routes nothing:
    /// [`FirstExchange::exchange`] is `None`.
    pub async fn open_and_route(
        &self,
        spec: ConversationSpec,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<FirstExchange, RouteError> {
        let _flight = self.enter()?;
        let (mut conversation, span) = self.conversation_for(&spec)?;
        async {
            let (responder, outcome) = self.handshake(&mut conversation, spec).await?;
            let id = conversation.id();
            if conversation.status() != &Status::Active {
                return Ok(FirstExchange {
                    opened: self.store_opened(conversation, responder, outcome).await?,
                    exchange: None,
                });
            }
            debug!(outcome = ?outcome, "conversation opened, its handshake stored with the first request");
            let lease = self.cache.lease(id).await;
            let mut guard = lease.slot().state.lock().await;
            // Nobody else knows the id yet (the create just succeeded), unless a caller
            // chose it and raced this one: then the store decides, as for any two writers.
            *guard = Some(Hot::new(conversation.clone(), VecDeque::new()));
            let exchange = self
                .measured(id, draft, |draft| {
                    self.route_held(&lease, id, guard, draft, options)
                })
                .await;
            if exchange.is_err() && lease.slot().own_request().is_none() {
                self.store_handshake(&lease, &conversation).await;
            }
            Ok(FirstExchange {
                opened: Opened {
                    conversation,
                    outcome,
                    responder,
                },
                exchange: Some(exchange),
            })
        }
        .instrument(span)
        .await
    }

    /// The conversation `spec` describes, not stored yet, and the span its opening runs in.
    fn conversation_for(
        &self,
        spec: &ConversationSpec,
    ) -> Result<(Conversation, tracing::Span), RouteError> {
        let now = self.clock.now();
        let idle_timeout = spec.idle_timeout.unwrap_or(self.config.idle_timeout);
        let mut conversation = Conversation::new(
            spec.id.unwrap_or_else(|| self.ids.conversation(now)),
            spec.participants.clone(),
            spec.intent,
            idle_timeout,
            now,
        )?
        .with_context(spec.context.clone())
        .with_metadata(spec.metadata.clone());
        if let Some(max) = spec.max_turns {
            conversation = conversation.with_max_turns(max);
        }
        conversation.check_json()?;
        let span = tracing::debug_span!("open", conversation_id = %conversation.id(), initiator = %spec.participants.first().map(ModuleName::as_str).unwrap_or_default());
        Ok((conversation, span))
    }

    /// Creates `conversation` and asks each invited participant in turn; the combined
    /// answer is concluded in `conversation` but not stored.
    async fn handshake(
        &self,
        conversation: &mut Conversation,
        spec: ConversationSpec,
    ) -> Result<(ModuleName, HandshakeOutcome), RouteError> {
        let mut modules = Vec::with_capacity(spec.participants.len());
        for name in &spec.participants {
            modules.push(self.registered(name)?);
        }
        let id = conversation.id();
        self.create_durably(conversation).await?;
        let invitation = Invitation {
            conversation: id,
            initiator: conversation.initiator().clone(),
            participants: spec.participants,
            intent: spec.intent,
            context: spec.context,
            metadata: spec.metadata,
        };
        let mut answers = Vec::with_capacity(modules.len().saturating_sub(1));
        for invited in modules.iter().skip(1) {
            let name = invited.info.name.clone();
            let deadline = invited.deadline.unwrap_or(self.config.handler_deadline);
            let work = if invited.delivery.is_inline() {
                Work::Inline(invited.module.on_invite(&invitation))
            } else {
                let module = Arc::clone(&invited.module);
                let invitation = invitation.clone();
                Work::Task(Box::pin(
                    async move { module.on_invite(&invitation).await }
                        .instrument(tracing::Span::current()),
                ))
            };
            let answer = self
                .call(id, &name, deadline, None, work)
                .await
                .unwrap_or_else(|e| HandshakeOutcome::Reject {
                    reason: format!("did not answer the invitation: {e}"),
                });
            debug!(module = %name, outcome = ?answer, "invitation answered");
            answers.push((name, answer));
        }
        let (responder, outcome) = match HandshakeOutcome::combine(answers) {
            Some(found) => found,
            // check_participants guarantees an invitee, so this is never reached.
            None => (conversation.initiator().clone(), HandshakeOutcome::Accept),
        };
        conversation.conclude_handshake(&responder, &outcome, self.clock.now())?;
        Ok((responder, outcome))
    }

    /// Stores the handshake's outcome on its own, after the first request that was to
    /// carry it was refused before it was stored. Conditional, as every write: if the
    /// stored conversation moved on meanwhile (the refusal was an expiry, written with the
    /// outcome, or another writer got in first), nothing is written and the next use
    /// reloads it.
    async fn store_handshake(&self, lease: &Lease<'_>, concluded: &Conversation) {
        let mut guard = lease.slot().state.lock().await;
        if guard
            .as_ref()
            .is_some_and(|hot| hot.conversation.version() != concluded.version())
        {
            return;
        }
        let mut conversation = concluded.clone();
        conversation.bump_version();
        match self.update_durably(&conversation).await {
            Ok(()) => {
                self.publish(lease.slot(), &conversation);
                *guard = Some(Hot::new(conversation, VecDeque::new()));
            }
            Err(e) => {
                debug!(error = %e, "the handshake's outcome was not stored on its own");
                *guard = None;
            }
        }
    }
}
