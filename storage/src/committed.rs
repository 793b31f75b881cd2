//! The shared context each recently written conversation was last committed with, by
//! allocation: an append whose conversation still holds that same context leaves the stored
//! one as it is, instead of serializing it, sending it and rewriting it at every turn (a
//! turn's cost would otherwise grow with the size of the context it does not change).
//!
//! Contexts are shared (`Arc`) and copied on write (`Arc::make_mut` moves a value that weak
//! references point at), so the same allocation means the same content. A `Weak` keeps the
//! allocation's address from being reused without keeping the context alive.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};

use colloquy_core::{Conversation, ConversationId};

use crate::StoreError;

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// How many conversations' committed contexts are remembered (a few dozen bytes each);
/// past it the memory starts over and the next append of each writes its context again.
const REMEMBERED: usize = 4_096;

/// The contexts a store handle committed last, per conversation.
#[derive(Debug, Default)]
pub(crate) struct CommittedContexts(Mutex<HashMap<ConversationId, Weak<JsonMap>>>);

impl CommittedContexts {
    fn map(&self) -> MutexGuard<'_, HashMap<ConversationId, Weak<JsonMap>>> {
        // Map operations cannot leave it inconsistent; a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `conversation`'s context is the one this handle committed for it last.
    pub(crate) fn holds(&self, conversation: &Conversation) -> bool {
        // The map a context `Arc` points at is its allocation's value: comparing addresses
        // needs no clone of the `Arc`.
        self.map()
            .get(&conversation.id())
            .is_some_and(|committed| std::ptr::eq(committed.as_ptr(), conversation.context()))
    }

    /// Records the outcome of a write that carried `conversation`'s state: its context is
    /// the stored one after a commit; after a failure nothing is assumed.
    pub(crate) fn note<T>(&self, conversation: &Conversation, written: &Result<T, StoreError>) {
        let mut map = self.map();
        if written.is_ok() {
            if map.len() >= REMEMBERED {
                map.clear();
            }
            map.insert(
                conversation.id(),
                Arc::downgrade(&conversation.shared_context()),
            );
        } else {
            map.remove(&conversation.id());
        }
    }
}
