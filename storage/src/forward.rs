//! Every store behind an [`Arc`] is a store: the forwarding impl, so that a hub, a router
//! and a test can share one handle. `clippy::missing_trait_methods` is denied on it, so a
//! method added to [`ConversationStore`] cannot be forgotten here (the trait's default
//! would silently answer for every shared store instead of the store's own).

use std::sync::Arc;

use async_trait::async_trait;
use colloquy_core::{
    Conversation, ConversationId, Message, MessageId, ModuleInfo, StateChange, Timestamp,
};

use crate::{
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StatusCounts, StoreError, TimeRange,
};

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ConversationStore + ?Sized> ConversationStore for Arc<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        (**self).create(conversation).await
    }
    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        (**self).append(conversation, messages).await
    }
    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        (**self).update(conversation).await
    }
    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        (**self).message(id).await
    }

    async fn state_changes(&self, id: ConversationId) -> Result<Vec<StateChange>, StoreError> {
        (**self).state_changes(id).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        (**self).conversation(id).await
    }
    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        (**self).messages(id, range).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        (**self).list(filter).await
    }
    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        (**self).analytics(range).await
    }
    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        (**self).exchanges(range).await
    }
    async fn search(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        (**self).search(search).await
    }
    async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        (**self).count_by_status().await
    }
    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        (**self).prune(ended_before).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).record_module(module, registered_at).await
    }
    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        (**self).modules().await
    }
    fn membership(&self) -> Option<&dyn crate::Membership> {
        (**self).membership()
    }
    async fn close(&self) -> Result<(), StoreError> {
        (**self).close().await
    }
}
