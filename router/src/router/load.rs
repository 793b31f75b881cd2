//! Loading a conversation into the hot cache under its turn lock.

use std::{collections::VecDeque, sync::Arc};

use colloquy_core::ConversationId;
use colloquy_storage::MessageRange;
use tracing::debug;

use crate::{cache::Hot, RouteError};

use super::Router;

impl Router {
    /// Takes the slot's turn lock and loads the conversation into it if needed; an unknown
    /// conversation's empty slot leaves the cache again.
    pub(super) async fn lock_loaded<'l>(
        &self,
        lease: &'l crate::cache::Lease<'_>,
        id: ConversationId,
    ) -> Result<tokio::sync::MutexGuard<'l, Option<Hot>>, RouteError> {
        let mut guard = lease.slot().state.lock().await;
        let cold = guard.is_none();
        let loaded = match self.load(&mut guard, id).await {
            Ok(_) if cold => self
                .wait_for_other_exchange(lease.slot(), &mut guard, id)
                .await
                .map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            drop(guard);
            self.cache.forget_held(id, lease);
            return Err(e);
        }
        if let (true, Some(hot)) = (cold, guard.as_ref()) {
            self.publish(lease.slot(), &hot.conversation);
        }
        Ok(guard)
    }

    /// Loads the conversation into the slot if it is not there yet.
    pub(super) async fn load<'g>(
        &self,
        state: &'g mut Option<Hot>,
        id: ConversationId,
    ) -> Result<&'g mut Hot, RouteError> {
        if state.is_none() {
            let conversation = self
                .db()
                .conversation(id)
                .await
                .map_err(|e| self.noted(e))?
                .ok_or(RouteError::UnknownConversation { conversation: id })?;
            let window = self.config.history_window as u64;
            let history = if window == 0 || conversation.turn_count() == 0 {
                VecDeque::new()
            } else {
                self.db()
                    .messages(id, MessageRange::Last(window))
                    .await
                    .map_err(|e| self.noted(e))?
                    .into_iter()
                    .map(Arc::new)
                    .collect()
            };
            debug!(conversation_id = %id, turns = conversation.turn_count(), "conversation loaded from the store");
            *state = Some(Hot::new(conversation, history));
        }
        match state.as_mut() {
            Some(hot) => Ok(hot),
            None => Err(RouteError::UnknownConversation { conversation: id }),
        }
    }
}
