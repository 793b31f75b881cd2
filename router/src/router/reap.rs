//! Reaping: idle conversations are timed out (hot ones, and a batch of stored active ones
//! per pass) and cold ones leave memory.

use std::{
    sync::{atomic::Ordering, PoisonError},
    time::Duration,
};

use colloquy_core::{ConversationId, Timestamp};
use colloquy_storage::{ListCursor, ListFilter, StoreError};
use tracing::debug;

use super::{conflict::Conflicts, Router};
use crate::{cache::Hot, ReapReport, RouteError};

impl Router {
    /// One full reaper pass: [`reap_hot`](Self::reap_hot), then the catch-up scan of a
    /// batch of stored active conversations (continuing where the last scan stopped), for
    /// conversations no hub holds in memory (left by a hub that stopped, or by another
    /// process).
    pub async fn reap(&self, cold_after: Duration) -> ReapReport {
        let mut report = self.reap_hot(cold_after).await;
        let cursor = *self
            .reap_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.reap_stored_page(cursor, &mut report).await {
            Ok(next) => {
                *self
                    .reap_cursor
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = next;
            }
            Err(e) => debug!(error = %e, "reaper could not list active conversations"),
        }
        if report.timed_out > 0 || report.evicted > 0 {
            debug!(?report, "reaper pass");
        }
        report
    }

    /// Times out every stored active conversation that is expired now, walking the store
    /// page by page once (not a batch per pass, as [`reap`](Self::reap) does): what an
    /// operator runs once when no hub is running (`colloquy reap`). Each conversation is
    /// timed out under its turn lock with a conditional write, so a hub reaping at the same
    /// time times each out once between them.
    ///
    /// Errors: [`RouteError::Storage`] when the store cannot list the conversations.
    pub async fn reap_stored(&self) -> Result<ReapReport, RouteError> {
        let mut report = ReapReport::default();
        let mut cursor = None;
        // Keyset pages (by start and id) are not disturbed by the conversations this walk
        // times out.
        loop {
            cursor = self.reap_stored_page(cursor, &mut report).await?;
            if cursor.is_none() {
                return Ok(report);
            }
        }
    }

    /// Times out the expired conversations of one page of stored active ones (after
    /// `cursor`), adding to `report`; returns the cursor of the next page.
    async fn reap_stored_page(
        &self,
        cursor: Option<ListCursor>,
        report: &mut ReapReport,
    ) -> Result<Option<ListCursor>, colloquy_storage::StoreError> {
        let now = self.clock.now();
        let mut filter = ListFilter::new()
            .status(colloquy_core::StatusKind::Active)
            .limit(self.config.reap_batch);
        if let Some(cursor) = cursor {
            filter = filter.after(cursor);
        }
        let page = self.db().list(&filter).await?;
        report.scanned += page.conversations.len();
        for conversation in page.conversations.iter().filter(|c| c.expired(now)) {
            report.timed_out += usize::from(self.reap_one(conversation.id(), now, false).await);
        }
        Ok(page.next)
    }

    /// Times out the expired conversations held in memory and evicts those not used for
    /// `cold_after`. Reads no stored conversation it does not hold.
    pub async fn reap_hot(&self, cold_after: Duration) -> ReapReport {
        let mut report = ReapReport::default();
        let now = self.clock.now();
        for id in self.cache.ids() {
            report.timed_out += usize::from(self.reap_one(id, now, true).await);
        }
        report.evicted = self.cache.evict_cold(cold_after);
        report
    }

    /// When the reaper is next needed for the conversations in memory: the earliest idle
    /// deadline, or the moment one turns cold. `None` when none is held. (A deadline that
    /// comes before the planned wake-up, of a new conversation, a finished turn or a
    /// shorter idle timeout, is signalled by [`earlier_deadline`](Self::earlier_deadline).)
    pub fn next_reap(&self, cold_after: Duration) -> Option<Timestamp> {
        self.cache.earliest(cold_after)
    }

    /// Records when the reaper plans to wake (`None`: no plan), so that an earlier deadline
    /// wakes it through [`earlier_deadline`](Self::earlier_deadline).
    pub fn plan_reap(&self, at: Option<Timestamp>) {
        self.reaper_wake
            .store(at.map_or(u64::MAX, Timestamp::as_millis), Ordering::Release);
    }

    /// When the reaper planned to wake (what [`plan_reap`](Self::plan_reap) recorded).
    pub fn planned_reap(&self) -> Option<Timestamp> {
        match self.reaper_wake.load(Ordering::Acquire) {
            u64::MAX => None,
            millis => Some(Timestamp::from_millis(millis)),
        }
    }

    /// Completes when a conversation's deadline comes before the planned wake-up.
    pub async fn earlier_deadline(&self) {
        self.earlier_deadline.notified().await;
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

    /// Marks the slot's conversation TimedOut and stores it; a write another writer got in
    /// before is decided again on the stored state (times out only what is still expired),
    /// as `conflict.rs` says. On any failure the hot state is dropped so the store stays
    /// the truth.
    pub(super) async fn expire(&self, state: &mut Option<Hot>, now: Timestamp) -> bool {
        let mut conflicts: Option<Conflicts> = None;
        let done = loop {
            let Some(hot) = state.as_mut() else {
                return false;
            };
            let id = hot.conversation.id();
            let mut next = hot.conversation.clone();
            if next.time_out(now).is_err() {
                break false;
            }
            next.bump_version();
            match self.update_durably(&next).await {
                Ok(()) => {
                    debug!(conversation_id = %id, "conversation timed out");
                    break true;
                }
                Err(StoreError::Conflict { .. })
                    if conflicts
                        .get_or_insert_with(|| Conflicts::new(self.ids.message(now)))
                        .again()
                        .await =>
                {
                    *state = None;
                    if self.load(state, id).await.is_err() {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        *state = None;
        done
    }
}
