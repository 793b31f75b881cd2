//! Other writers of the same store (hubs of a cluster): waiting for another writer's exchange,
//! and taking over a dead writer's.

use std::{sync::Arc, time::Duration};

use colloquy_core::{ConversationId, Message};
use colloquy_registry::Registered;
use tracing::{debug, Instrument};

use crate::{cache::Hot, RouteError, RouteOptions};

use super::Router;

/// The longest pause between two reads of a conversation another writer's exchange keeps
/// busy.
pub(super) const OTHER_EXCHANGE_POLL: Duration = Duration::from_millis(10);

impl Router {
    /// Concludes the exchange a dead writer left in conversation `id`, if it has one: its
    /// request is delivered again to its module, under its own message id, and the reply
    /// written (at-least-once to the handler, exactly once in the transcript). What a hub
    /// runs for the conversations it claimed from a fenced member
    /// (the cluster's orphan claims), so that they need not wait for their next sender.
    /// `Ok(true)`: a reply (or the conversation's end) was stored for it.
    pub async fn take_over_exchange(&self, id: ConversationId) -> Result<bool, RouteError> {
        let _flight = self.enter()?;
        let span = tracing::debug_span!("take_over", conversation_id = %id);
        async {
            let lease = self.cache.lease(id).await;
            // The claim says another member wrote the conversation since this hub last saw
            // it: a copy held in memory is stale (it would not show the exchange at all).
            *lease.slot().state.lock().await = None;
            let guard = self.lock_loaded(&lease, id).await?;
            let before = guard.as_ref().map(|hot| hot.conversation.version());
            let guard = self.take_over(&lease, id, guard).await?;
            let after = guard.as_ref().map(|hot| hot.conversation.version());
            let ended = guard
                .as_ref()
                .is_none_or(|hot| hot.conversation.status().is_terminal());
            drop(guard);
            if ended {
                self.cache.forget(id, lease);
            }
            Ok(after != before)
        }
        .instrument(span)
        .await
    }

    /// Concludes a dead writer's exchange, if the conversation held by `guard` has one
    /// ([`Router::orphaned_request`]): its request is delivered again, under its own message
    /// id, and its reply written; then the conversation is locked and loaded again (the
    /// exchange may have ended it, and then the caller's request is refused as for any ended
    /// conversation).
    pub(super) async fn take_over<'l>(
        &self,
        lease: &'l crate::cache::Lease<'_>,
        id: ConversationId,
        guard: tokio::sync::MutexGuard<'l, Option<Hot>>,
    ) -> Result<tokio::sync::MutexGuard<'l, Option<Hot>>, RouteError> {
        let Some((request, target, deadline)) = self.orphaned_request(lease.slot(), &guard) else {
            return Ok(guard);
        };
        debug!(request = %request.id, "delivering a dead writer's request again");
        let resumed = self
            .deliver_stored(
                lease,
                guard,
                request,
                &target,
                deadline,
                &RouteOptions::default(),
                true,
            )
            .await;
        debug!(
            resumed = resumed.is_ok(),
            "a dead writer's exchange concluded"
        );
        self.lock_loaded(lease, id).await
    }

    /// The request of an exchange a dead writer left without an answer, with its target and
    /// deadline, on a store several hubs share: the conversation is still busy after
    /// [`Router::wait_for_other_exchange`] gave up waiting (the writer was fenced, or its
    /// deadline passed), the busy state is not this router's own, and its last turn is a
    /// request. On a store of one process a crash's leftover request stays unanswered (the
    /// next exchange follows it).
    pub(super) fn orphaned_request(
        &self,
        slot: &crate::cache::Slot,
        state: &Option<Hot>,
    ) -> Option<(Arc<Message>, Registered, Duration)> {
        self.others.get()?;
        let hot = state.as_ref()?;
        let last = hot.history.back()?;
        hot.conversation
            .unanswered_request(self.clock.now(), slot.own_request(), last)?;
        let target = self.registered(&last.target).ok()?;
        let deadline = target.deadline.unwrap_or(self.config.handler_deadline);
        Some((Arc::clone(last), target, deadline))
    }

    /// One order across writers: while the conversation just loaded is in an exchange that
    /// another writer started (another hub on the same database: stored busy, and not at the
    /// version of this router's own last request), waits for that exchange to end (its
    /// reply written, or its deadline passed), re-reading the store with a pause that
    /// doubles up to [`OTHER_EXCHANGE_POLL`]. So this router's request never lands between
    /// another's request and its reply.
    ///
    /// Only while that writer may be alive ([`WriterLiveness`](crate::WriterLiveness)): on a store of one
    /// process (no membership), or once the member that wrote the exchange is fenced (dead,
    /// or gone), a busy state left behind is a dead writer's and is not waited for.
    pub(super) async fn wait_for_other_exchange(
        &self,
        slot: &crate::cache::Slot,
        state: &mut Option<Hot>,
        id: ConversationId,
    ) -> Result<bool, RouteError> {
        let mut pause = Duration::from_millis(1);
        let mut waited = false;
        loop {
            let Some(hot) = state.as_ref() else {
                return Ok(waited);
            };
            let now = self.clock.now();
            let colloquy_core::InFlight::Other { until } =
                hot.conversation.in_flight(now, slot.own_request())
            else {
                return Ok(waited);
            };
            let held = match self.others.get() {
                Some(others) => others.writer_may_be_alive(id).await?,
                None => false,
            };
            if !held {
                return Ok(waited);
            }
            waited = true;
            debug!(conversation_id = %id, "another writer's exchange is in progress, waiting");
            tokio::time::sleep(pause.min(until.saturating_duration_since(now))).await;
            pause = pause.saturating_mul(2).min(OTHER_EXCHANGE_POLL);
            *state = None;
            self.load(state, id).await?;
        }
    }
}
