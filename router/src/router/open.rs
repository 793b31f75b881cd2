//! Opening a conversation and its handshake.

use std::{collections::VecDeque, sync::Arc};

use colloquy_core::{Conversation, HandshakeOutcome, ModuleName, Status};
use colloquy_registry::Invitation;
use tracing::{debug, Instrument};

use crate::{cache::Hot, ConversationSpec, Opened, RouteError};

use super::{call::Work, Router};

impl Router {
    /// Opens a conversation and runs the handshake: every invited participant's
    /// `on_invite` is asked in turn (within its deadline). A rejection fails the
    /// conversation; a counter-proposal moves it to Negotiation.
    pub async fn open(&self, spec: ConversationSpec) -> Result<Opened, RouteError> {
        let _flight = self.enter()?;
        let mut modules = Vec::with_capacity(spec.participants.len());
        for name in &spec.participants {
            modules.push(self.registered(name)?);
        }
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
        let id = conversation.id();
        let span = tracing::debug_span!("open", conversation_id = %id, initiator = %spec.participants.first().map(ModuleName::as_str).unwrap_or_default());
        async {
            self.create_durably(&conversation).await?;
            let invitation = Invitation {
                conversation: id,
                initiator: conversation.initiator().clone(),
                participants: spec.participants.clone(),
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
            conversation.bump_version();
            self.update_durably(&conversation).await?;
            if conversation.status() == &Status::Active {
                let lease = self.cache.lease(id).await;
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
        .instrument(span)
        .await
    }
}
