//! Delivering a stored request to its module and concluding the turn with the answer.

use std::{sync::Arc, time::Duration};

use colloquy_core::{Message, TurnOutcome};
use colloquy_registry::{History, Registered, Response, Turn};
use colloquy_storage::StoreError;
use tracing::{debug, Instrument};

use crate::{cache::Hot, Exchange, RouteError, RouteOptions};

use super::{call::Work, conflict::Conflicts, view, Router};

impl Router {
    /// Delivers a stored request to its target and concludes the turn with the answer (or
    /// its absence): the second half of [`Router::route`], and what a takeover runs for a
    /// dead writer's unanswered request. `in_history`: the request is already in the hot
    /// history (it was loaded from the store).
    #[allow(clippy::too_many_arguments)] // the parts of one exchange, passed once
    pub(super) async fn deliver_stored(
        &self,
        lease: &crate::cache::Lease<'_>,
        mut guard: tokio::sync::MutexGuard<'_, Option<Hot>>,
        message: Arc<Message>,
        target: &Registered,
        deadline: Duration,
        options: &RouteOptions,
        in_history: bool,
    ) -> Result<Exchange, RouteError> {
        let id = message.conversation_id;
        let Some(hot) = guard.as_mut() else {
            return Err(RouteError::UnknownConversation { conversation: id });
        };
        let turn = Turn {
            message: Arc::clone(&message),
            conversation: view(hot),
            history: History::new(Arc::clone(&hot.history)),
            deadline,
        };
        debug!("request stored, delivering");
        if let Some(hook) = &options.on_stored {
            hook.call(&message);
        }
        // Busy until the reply is due: the reaper need not look before then.
        lease.slot().publish(&hot.conversation);
        let work = if target.delivery.is_inline() {
            Work::Inline(target.module.handle(turn))
        } else {
            let module = Arc::clone(&target.module);
            // The task keeps the turn's span, so the handler's own events carry the
            // conversation, turn, source and target.
            Work::Task(Box::pin(
                async move { module.handle(turn).await }.instrument(tracing::Span::current()),
            ))
        };
        let started = self.observers.any().then(|| self.clock.instant());
        let called = self
            .call(id, &message.target, deadline, options.cancel.as_ref(), work)
            .await;
        if let Some(started) = started {
            let elapsed = started.elapsed();
            self.observers.each(|o| o.handled(&message.target, elapsed));
        }
        // The request is stored whatever the handler did. Remembered only now, after the
        // handler's future (and the turn's share of the history) is gone, so the window
        // changes in place instead of being copied.
        if !in_history {
            hot.remember(Arc::clone(&message), self.config.history_window);
        }
        let response = called.and_then(|answer| {
            answer.map_err(|e| RouteError::HandlerFailed {
                conversation: id,
                module: message.target.clone(),
                message: e.message().to_owned(),
            })
        });
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                debug!(error = %e, "no answer from the handler");
                // The turn is over: idleness counts from now, in the store too.
                hot.conversation.end_turn(self.clock.now());
                hot.conversation.bump_version();
                if let Err(store) = self.update_durably(&hot.conversation).await {
                    debug!(error = %store, "end of turn not stored");
                    *guard = None;
                }
                return Err(e);
            }
        };
        let exchange = match self.apply_response(hot, &message, response).await {
            Ok(exchange) => exchange,
            Err(e) => {
                debug!(error = %e, "response not applied");
                *guard = None;
                return Err(e);
            }
        };
        debug!(reply = exchange.reply.as_ref().map(|r| r.turn), status = %exchange.status, "turn complete");
        // The turn is over: the deadline counts from now, usually earlier than the busy one
        // published with the request (the reaper is woken only if that is before its plan).
        self.publish(lease.slot(), &hot.conversation);
        if exchange.status.is_terminal() {
            // Ended: the caller forgets the slot (it holds the lease).
            *guard = None;
        }
        Ok(exchange)
    }

    /// Concludes the turn with the handler's response (core decides, all or nothing) and
    /// stores it in one write. On error the caller drops the hot state, so a half-applied
    /// response is never kept.
    pub(super) async fn apply_response(
        &self,
        hot: &mut Hot,
        request: &Arc<Message>,
        response: Response,
    ) -> Result<Exchange, RouteError> {
        let outcome = TurnOutcome::from(response);
        if let Some(to) = &outcome.transfer_to {
            self.registered(to)?;
        }
        // What it takes to decide the same answer again on a reloaded state (the reply's
        // content is taken back from the reply itself, so nothing large is copied unless
        // a retry happens).
        let again = (
            outcome.context_patch.clone(),
            outcome.transfer_to.clone(),
            outcome.end,
        );
        let now = self.clock.now();
        let mut reply = self.conclude(hot, request, outcome, now)?;
        let mut conflicts = Conflicts::new(request.id);
        loop {
            let conflict = match self.write_conclusion(hot, reply.as_ref()).await {
                Ok(()) => break,
                Err(conflict @ RouteError::Storage(StoreError::Conflict { .. })) => conflict,
                Err(e) => return Err(e),
            };
            // Another writer (another hub) changed the conversation while the handler
            // worked, say a context patch. If nothing was appended since this request, the
            // answer still stands: decide it again on the stored state.
            if !conflicts.again().await {
                return Err(conflict);
            }
            let id = hot.conversation.id();
            let fresh = self
                .db()
                .conversation(id)
                .await?
                .ok_or(RouteError::UnknownConversation { conversation: id })?;
            if fresh.turn_count() != request.turn {
                return Err(conflict);
            }
            debug!("reply conflicts with another writer's change, deciding it again");
            hot.conversation = fresh;
            let (context_patch, transfer_to, end) = again.clone();
            let mut outcome = TurnOutcome::nothing();
            outcome.reply = reply.as_ref().map(|r| (r.kind, r.content.clone()));
            outcome.context_patch = context_patch;
            outcome.transfer_to = transfer_to;
            outcome.end = end;
            reply = self.conclude(hot, request, outcome, self.clock.now())?;
        }
        if let Some(reply) = &reply {
            hot.remember(Arc::clone(reply), self.config.history_window);
        }
        Ok(Exchange {
            request: Arc::clone(request),
            reply,
            status: hot.conversation.status().clone(),
            participants: hot.conversation.shared_participants(),
        })
    }

    /// Core concludes the turn on the hot state (all or nothing) and mints the reply.
    pub(super) fn conclude(
        &self,
        hot: &mut Hot,
        request: &Message,
        outcome: TurnOutcome,
        now: colloquy_core::Timestamp,
    ) -> Result<Option<Arc<Message>>, RouteError> {
        hot.conversation
            .conclude_turn(
                request,
                outcome,
                self.ids.message(now),
                now,
                Some(self.config.max_content_bytes),
            )
            .map(|reply| reply.map(Arc::new))
            .map_err(|refusal| RouteError::InvalidResponse {
                conversation: hot.conversation.id(),
                module: request.target.clone(),
                refusal,
            })
    }
}
