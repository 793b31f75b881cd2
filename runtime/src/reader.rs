//! [`StoreReader`]: the hub's store, for reading only. Every write goes through the router
//! (under the conversation's turn lock, through the hot cache, versioned), so the hub hands
//! out no way to write past it.

use std::sync::Arc;

use colloquy_core::{Conversation, ConversationId, Message};
use colloquy_storage::{
    Analytics, ConversationPage, ConversationStore, ListFilter, MessageRange, ModuleRecord,
    StatusCounts, StoreError, TimeRange,
};

/// Read-only access to a hub's store: conversations, messages, listings, analytics and
/// module records, exactly as stored.
#[derive(Clone)]
pub struct StoreReader(Arc<dyn ConversationStore>);

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreReader")
            .field(&self.0.backend())
            .finish()
    }
}

impl StoreReader {
    pub(crate) fn new(store: Arc<dyn ConversationStore>) -> Self {
        Self(store)
    }

    /// The backend's name ("memory", "sqlite", ...).
    pub fn backend(&self) -> &'static str {
        self.0.backend()
    }

    /// The stored state of a conversation, or `None`.
    pub async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        self.0.conversation(id).await
    }

    /// What each write changed in a conversation's shared state, in version order (see
    /// [`ConversationStore::state_changes`](colloquy_storage::ConversationStore::state_changes)).
    pub async fn state_changes(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        self.0.state_changes(id).await
    }

    /// Messages of a conversation in ascending turn order.
    pub async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        self.0.messages(id, range).await
    }

    /// Conversations matching `filter`, newest first, one page at a time.
    pub async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        self.0.list(filter).await
    }

    /// Aggregates over the conversations started within `range`.
    pub async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        self.0.analytics(range).await
    }

    /// Where the time went: per module, the requests sent to it within `range`, those
    /// without a reply, and the answered ones' times by bucket.
    pub async fn exchanges(
        &self,
        range: TimeRange,
    ) -> Result<Vec<colloquy_storage::ModuleExchanges>, StoreError> {
        self.0.exchanges(range).await
    }

    /// Turns whose content holds a text, newest first (see `TextSearch`).
    pub async fn search(
        &self,
        search: &colloquy_storage::TextSearch,
    ) -> Result<Vec<colloquy_storage::SearchHit>, StoreError> {
        self.0.search(search).await
    }

    /// How many conversations are in each status now (cheap: for every metrics scrape).
    pub async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        self.0.count_by_status().await
    }

    /// Every recorded module registration, sorted by name.
    pub async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.0.modules().await
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }
}
