//! State changes without a turn (end, pause, resume, transfer, context patches).

use colloquy_core::{Conversation, ConversationId};
use colloquy_storage::StoreError;
use tracing::{debug, Instrument};

use crate::{Change, RouteError};

use super::{conflict::Conflicts, Router};

impl Router {
    /// Applies a state change under the conversation's turn lock and stores it.
    pub async fn apply(
        &self,
        id: ConversationId,
        change: Change,
    ) -> Result<Conversation, RouteError> {
        let _flight = self.enter()?;
        let span = tracing::debug_span!("change", conversation_id = %id, change = ?change);
        async {
            let lease = self.cache.lease(id).await;
            let mut guard = self.lock_loaded(&lease, id).await?;
            // Seeded only when a conflict comes (an id is minted for it).
            let mut conflicts: Option<Conflicts> = None;
            loop {
                let Some(hot) = guard.as_mut() else {
                    return Err(RouteError::UnknownConversation { conversation: id });
                };
                let now = self.clock.now();
                let mut next = hot.conversation.clone();
                match &change {
                    Change::Pause => next.pause(now)?,
                    Change::Resume => next.resume(now)?,
                    Change::Complete => next.complete(now)?,
                    Change::Fail(reason) => next.fail(reason.clone(), now)?,
                    Change::Transfer { from, to } => {
                        self.registered(to)?;
                        next.transfer(from, to.clone(), now)?;
                    }
                    Change::Phase(phase) => next.advance_phase(*phase, now)?,
                    Change::Patch(patch) => next.apply_context_patch(patch, now)?,
                    Change::IdleTimeout(timeout) => next.set_idle_timeout(*timeout)?,
                    Change::MaxTurns(max_turns) => next.set_max_turns(*max_turns)?,
                }
                next.bump_version();
                match self.update_durably(&next).await {
                    Ok(()) => {}
                    // Another writer changed the conversation: decide again on the truth
                    // (nothing was announced, so deciding again is safe).
                    Err(StoreError::Conflict { .. })
                        if conflicts
                            .get_or_insert_with(|| Conflicts::new(self.ids.message(now)))
                            .again()
                            .await =>
                    {
                        debug!("change conflicts with the stored conversation, reloading");
                        *guard = None;
                        if let Err(e) = self.load(&mut guard, id).await {
                            drop(guard);
                            self.cache.forget_held(id, &lease);
                            return Err(e);
                        }
                        continue;
                    }
                    Err(e) => {
                        *guard = None;
                        return Err(e.into());
                    }
                }
                debug!(status = %next.status(), "change stored");
                hot.conversation = next.clone();
                // A shorter idle timeout may bring the deadline forward.
                self.publish(lease.slot(), &next);
                if next.status().is_terminal() {
                    *guard = None;
                    drop(guard);
                    self.cache.forget(id, lease);
                }
                return Ok(next);
            }
        }
        .instrument(span)
        .await
    }
}
