//! Durable writes: each store write the router makes, retried while the store is unavailable,
//! and announced to subscribers once it landed.

use std::{sync::Arc, time::Duration};

use colloquy_core::{Conversation, Message};
use colloquy_storage::StoreError;
use tracing::debug;

use crate::{cache::Hot, RouteError};

use super::Router;

/// How many times a write is tried while the store is unavailable.
pub(super) const WRITE_ATTEMPTS: u32 = 4;

/// The pause before the first retry of a write; it doubles for each next one.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Runs a store write, again while it fails with [`StoreError::Unavailable`] (a
/// connection that died, a server restarting), at most [`WRITE_ATTEMPTS`] times with
/// [`RETRY_PAUSE`] doubling between them. Returns the last outcome and whether the write
/// was retried (then a refusal may be the first attempt's commit seen from outside).
pub(super) async fn retrying<T, F, Fut>(mut write: F) -> (Result<T, StoreError>, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match write().await {
            Err(StoreError::Unavailable { .. }) if attempt < WRITE_ATTEMPTS => {
                debug!(attempt, "store unavailable, writing again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt += 1;
            }
            outcome => return (outcome, attempt > 1),
        }
    }
}

impl Router {
    /// Appends `messages` with `conversation`'s new state, retrying while the store is
    /// unavailable (see [`retrying`]): the same messages with the same state, so a first
    /// attempt that did commit before its answer was lost is found by its message ids (the
    /// store skips them) and never written twice.
    pub(super) async fn append_durably(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<(), StoreError> {
        let outcome = retrying(|| self.db().append(conversation, messages))
            .await
            .0
            .map_err(|e| self.noted(e))?;
        if outcome.inserted > 0 {
            self.announce(|| crate::ConversationEvent::Stored {
                conversation: Arc::new(conversation.clone()),
                messages: messages
                    .get(outcome.duplicates..)
                    .unwrap_or_default()
                    .to_vec(),
            });
        }
        Ok(())
    }

    /// Creates `conversation`, retrying while the store is unavailable; a retry that finds
    /// the conversation already there finds the first attempt's commit (the id was minted
    /// for this call), so it succeeds.
    pub(super) async fn create_durably(
        &self,
        conversation: &Conversation,
    ) -> Result<(), StoreError> {
        match retrying(|| self.db().create(conversation)).await {
            (Err(StoreError::AlreadyExists { .. }), retried) if retried => {}
            (outcome, _) => outcome.map_err(|e| self.noted(e))?,
        }
        self.announce(|| crate::ConversationEvent::Opened {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
    }

    /// Stores `conversation`'s new state, retrying while the store is unavailable; a retry
    /// refused as a conflict succeeds if the stored state is exactly this one (the first
    /// attempt committed before its answer was lost).
    pub(super) async fn update_durably(
        &self,
        conversation: &Conversation,
    ) -> Result<(), StoreError> {
        match retrying(|| self.db().update(conversation)).await {
            (Err(conflict @ StoreError::Conflict { .. }), true) => {
                match self.db().conversation(conversation.id()).await {
                    Ok(Some(stored)) if stored == *conversation => {}
                    _ => return Err(self.noted(conflict)),
                }
            }
            (outcome, _) => outcome.map_err(|e| self.noted(e))?,
        }
        self.announce(|| crate::ConversationEvent::Changed {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
    }

    /// One write ends the turn: the reply with the new state, or the new state alone.
    pub(super) async fn write_conclusion(
        &self,
        hot: &mut Hot,
        reply: Option<&Arc<Message>>,
    ) -> Result<(), RouteError> {
        hot.conversation.bump_version();
        match reply {
            Some(reply) => {
                self.append_durably(&hot.conversation, std::slice::from_ref(reply))
                    .await?;
            }
            None => self.update_durably(&hot.conversation).await?,
        }
        Ok(())
    }
}
