//! Accepting a request as the next turn: the turn lock, the decision, the request's durable
//! write, deciding again on a conflict.

use std::sync::{atomic::Ordering, Arc};

use colloquy_core::{ConversationId, CoreError, Draft, Message};
use colloquy_storage::StoreError;
use tracing::{debug, field, Instrument};

use tokio::sync::MutexGuard;

use crate::{
    cache::{Hot, Lease},
    Exchange, RouteError, RouteOptions,
};

use super::{conflict::Conflicts, lifecycle::Lifecycle, Router};

/// The draft a refused request was accepted from, to decide it again after a reload.
pub(super) fn redraft(message: Arc<Message>) -> Draft {
    let message = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
    Draft {
        source: message.source,
        target: message.target,
        kind: message.kind,
        content: message.content,
        in_reply_to: message.in_reply_to,
    }
}

impl Router {
    /// Routes one message: accept the turn -> persist -> deliver to the target's handler
    /// within its deadline -> persist the reply (or end / transfer) -> return both.
    ///
    /// The request is acknowledged (stored) before delivery; handler failures, timeouts and
    /// panics come back as typed errors and leave the conversation usable.
    pub async fn route(
        &self,
        id: ConversationId,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let _flight = self.enter()?;
        self.measured(id, draft, |draft| self.route_locked(id, draft, options))
            .await
    }

    /// Runs `route` on `draft` in the exchange's span, and tells the observers (if any
    /// listen) its outcome and time.
    pub(super) async fn measured<F, Fut>(
        &self,
        id: ConversationId,
        draft: Draft,
        route: F,
    ) -> Result<Exchange, RouteError>
    where
        F: FnOnce(Draft) -> Fut,
        Fut: std::future::Future<Output = Result<Exchange, RouteError>>,
    {
        let observed = self
            .observers
            .any()
            .then(|| (draft.target.clone(), self.clock.instant()));
        let span = tracing::debug_span!(
            "route",
            conversation_id = %id,
            turn = field::Empty,
            source = %draft.source,
            target = %draft.target,
        );
        let result = route(draft).instrument(span).await;
        if let Some((module, started)) = observed {
            let outcome = crate::ExchangeOutcome::of(&result);
            let elapsed = started.elapsed();
            self.observers
                .each(|o| o.exchange(&module, outcome, elapsed));
        }
        result
    }

    pub(super) async fn route_locked(
        &self,
        id: ConversationId,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let lease = self.cache.lease(id).await;
        if Lifecycle::load(&self.lifecycle, Ordering::Acquire) == Lifecycle::Aborting {
            return Err(RouteError::ShuttingDown);
        }
        let guard = self.lock_loaded(&lease, id).await?;
        let guard = self.take_over(&lease, id, guard).await?;
        self.route_held(&lease, id, guard, draft, options).await
    }

    /// Accepts `draft` as the next turn of the conversation `guard` holds, stores it and
    /// delivers it. The conversation held may carry a change not stored yet (the outcome of
    /// its handshake, from [`open_and_route`](Self::open_and_route)): the request's write
    /// stores it too, as the version after the stored one.
    pub(super) async fn route_held<'l>(
        &self,
        lease: &'l Lease<'_>,
        id: ConversationId,
        mut guard: MutexGuard<'l, Option<Hot>>,
        draft: Draft,
        options: RouteOptions,
    ) -> Result<Exchange, RouteError> {
        let mut draft = draft;
        let mut conflicts: Option<Conflicts> = None;
        // Accept the request and store it, conditional on the state it was accepted from.
        // If another writer (another hub on the same database) changed the conversation
        // meanwhile, the store refuses with a conflict: the truth is reloaded and the draft
        // decided again, as `conflict.rs` says, before anything was delivered.
        let (message, target, deadline) = loop {
            let Some(hot) = guard.as_mut() else {
                return Err(RouteError::UnknownConversation { conversation: id });
            };
            let now = self.clock.now();
            let target = self.registered(&draft.target);
            let deadline = target
                .as_ref()
                .ok()
                .and_then(|t| options.deadline.or(t.deadline))
                .unwrap_or(self.config.handler_deadline);
            let accepted = hot.conversation.begin_turn(
                draft,
                options.message_id.unwrap_or_else(|| self.ids.message(now)),
                now,
                now.saturating_add(deadline),
                Some(self.config.max_content_bytes),
            );
            let message = match accepted {
                Ok(message) => Arc::new(message),
                Err(e) => {
                    debug!(error = %e, "draft refused");
                    if matches!(e, CoreError::Expired { .. }) {
                        self.expire(&mut guard, now).await;
                        drop(guard);
                        self.cache.forget_held(id, lease);
                    }
                    return Err(e.into());
                }
            };
            let target = match target {
                Ok(target) => target,
                Err(e) => {
                    // Accepted only in memory: undo by reloading the truth next time.
                    *guard = None;
                    return Err(e);
                }
            };
            hot.conversation.bump_version();
            tracing::Span::current().record("turn", message.turn);
            match self
                .append_durably(&hot.conversation, std::slice::from_ref(&message))
                .await
            {
                Ok(()) => {
                    lease.slot().stored_request(hot.conversation.version());
                    break (message, target, deadline);
                }
                Err(StoreError::Conflict { .. })
                    if conflicts
                        .get_or_insert_with(|| Conflicts::new(message.id))
                        .may_retry() =>
                {
                    // A caller's own id may conflict because that very request was stored
                    // before: then it is answered as such, never stored again.
                    if options.message_id.is_some() {
                        match self.db().message(message.id).await {
                            Ok(Some(stored)) => {
                                *guard = None;
                                return Err(RouteError::AlreadyStored {
                                    conversation: stored.conversation_id,
                                    message: stored.id,
                                    turn: stored.turn,
                                });
                            }
                            Ok(None) => {}
                            Err(e) => {
                                *guard = None;
                                return Err(e.into());
                            }
                        }
                    }
                    debug!("request conflicts with the stored conversation, reloading");
                    draft = redraft(message);
                    *guard = None;
                    let reloaded = match self.load(&mut guard, id).await {
                        Ok(_) => {
                            self.wait_for_other_exchange(lease.slot(), &mut guard, id)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    match reloaded {
                        // Another writer's exchange was waited for: it made progress, and
                        // this is not a race lost; only races count against the bound.
                        Ok(true) => {}
                        Ok(false) => {
                            // A race lost to another writer: step aside for a moment of
                            // varying length, so that the same writer does not win every
                            // time (writers that always lose would otherwise starve).
                            if let Some(conflicts) = conflicts.as_mut() {
                                conflicts.lost_race();
                                conflicts.step_aside().await;
                            }
                        }
                        Err(e) => {
                            drop(guard);
                            self.cache.forget_held(id, lease);
                            return Err(e);
                        }
                    }
                    guard = self.take_over(lease, id, guard).await?;
                }
                Err(e) => {
                    debug!(error = %e, "request not stored");
                    *guard = None;
                    return Err(e.into());
                }
            }
        };
        let exchange = self
            .deliver_stored(lease, guard, message, &target, deadline, &options, false)
            .await?;
        if exchange.status.is_terminal() {
            self.cache.forget_held(id, lease);
        }
        Ok(exchange)
    }
}
