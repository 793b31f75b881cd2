//! Reaping: idle conversations are timed out (hot ones, and a batch of stored active ones
//! per pass) and cold ones leave memory.

use std::{sync::PoisonError, time::Duration};

use colloquy_core::{ConversationId, Timestamp};
use colloquy_storage::ListFilter;
use tracing::debug;

use super::Router;
use crate::{cache::Hot, ReapReport};

impl Router {
    /// One reaper pass: times out expired conversations (hot ones, and a batch of stored
    /// active ones, continuing where the last pass stopped) and evicts hot conversations
    /// not used for `cold_after`.
    pub async fn reap(&self, cold_after: Duration) -> ReapReport {
        let mut report = ReapReport::default();
        let now = self.clock.now();
        for id in self.cache.ids() {
            report.timed_out += usize::from(self.reap_one(id, now, true).await);
        }
        let cursor = *self
            .reap_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut filter = ListFilter::new()
            .status(colloquy_core::StatusKind::Active)
            .limit(self.config.reap_batch);
        if let Some(cursor) = cursor {
            filter = filter.after(cursor);
        }
        match self.db().list(&filter).await {
            Ok(page) => {
                report.scanned = page.conversations.len();
                for conversation in page.conversations.iter().filter(|c| c.expired(now)) {
                    report.timed_out +=
                        usize::from(self.reap_one(conversation.id(), now, false).await);
                }
                *self
                    .reap_cursor
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = page.next;
            }
            Err(e) => debug!(error = %e, "reaper could not list active conversations"),
        }
        report.evicted = self.cache.evict_cold(cold_after);
        if report.timed_out > 0 || report.evicted > 0 {
            debug!(?report, "reaper pass");
        }
        report
    }

    /// Times out one conversation if it is expired, under its turn lock. A conversation
    /// loaded only for this check (or found expired) leaves memory again.
    async fn reap_one(&self, id: ConversationId, now: Timestamp, only_if_hot: bool) -> bool {
        let lease = if only_if_hot {
            match self.cache.peek(id) {
                Some(lease) => lease,
                None => return false,
            }
        } else {
            self.cache.lease(id).await
        };
        let Ok(mut guard) = lease.slot().state.try_lock() else {
            // A turn is in progress: the conversation is not idle.
            return false;
        };
        let was_hot = guard.is_some();
        let expired = if was_hot || !only_if_hot {
            matches!(self.load(&mut guard, id).await, Ok(hot) if hot.conversation.expired(now))
        } else {
            false
        };
        let timed_out = expired && self.expire(&mut guard, now).await;
        if expired || !was_hot {
            *guard = None;
            drop(guard);
            self.cache.forget(id, lease);
        }
        timed_out
    }

    /// Marks the slot's conversation TimedOut and stores it; on any failure the hot state is
    /// dropped so the store stays the truth.
    pub(super) async fn expire(&self, state: &mut Option<Hot>, now: Timestamp) -> bool {
        let Some(hot) = state.as_mut() else {
            return false;
        };
        let mut next = hot.conversation.clone();
        let done = next.time_out(now).is_ok() && {
            next.bump_version();
            self.db().update(&next).await.is_ok()
        };
        if done {
            debug!(conversation_id = %next.id(), "conversation timed out");
        }
        *state = None;
        done
    }
}
