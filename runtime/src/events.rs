//! What the hub writes, as it writes it: [`HubEvent`]s for whoever subscribed
//! ([`Hub::subscribe`](crate::Hub::subscribe)), such as the web inspector's live pages.
//!
//! The hub's store is wrapped in an [`ObservedStore`], which announces every write that
//! landed (after it landed) on a broadcast channel; with nobody subscribed it costs one
//! atomic load per write. Only this hub's writes are seen: on a database several hubs share,
//! another hub's turns reach its own subscribers.

use std::sync::Arc;

use async_trait::async_trait;
use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, Timestamp};
use colloquy_storage::{
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StoreError, TimeRange,
};
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it is told it lagged.
const EVENTS_BUFFERED: usize = 1024;

/// A write the hub made, after it was stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HubEvent {
    /// A conversation was opened.
    Opened {
        /// Its state as stored.
        conversation: Arc<Conversation>,
    },
    /// Turns were stored, with the conversation's new state.
    Stored {
        /// Its state after the write.
        conversation: Arc<Conversation>,
        /// The new messages, in turn order.
        messages: Vec<Arc<Message>>,
    },
    /// The conversation's state changed without a new turn (it ended, timed out, was
    /// paused or resumed, its context was patched, a turn ended without a reply).
    Changed {
        /// Its state after the write.
        conversation: Arc<Conversation>,
    },
}

impl HubEvent {
    /// The conversation the event is about.
    pub fn conversation(&self) -> &Conversation {
        match self {
            Self::Opened { conversation }
            | Self::Stored { conversation, .. }
            | Self::Changed { conversation } => conversation,
        }
    }

    /// Its id.
    pub fn conversation_id(&self) -> ConversationId {
        self.conversation().id()
    }
}

/// A store that announces each write that landed (see the module's doc).
pub(crate) struct ObservedStore {
    inner: Arc<dyn ConversationStore>,
    events: broadcast::Sender<HubEvent>,
}

impl ObservedStore {
    pub(crate) fn new(inner: Arc<dyn ConversationStore>) -> Self {
        Self {
            inner,
            events: broadcast::channel(EVENTS_BUFFERED).0,
        }
    }

    /// A new subscription: every event from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }

    /// Announces the event `make` builds, if anyone listens (built only then).
    fn announce(&self, make: impl FnOnce() -> HubEvent) {
        if self.events.receiver_count() > 0 {
            // A send fails only when every receiver left meanwhile: nobody to tell.
            let _ = self.events.send(make());
        }
    }
}

#[async_trait]
impl ConversationStore for ObservedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.inner.create(conversation).await?;
        self.announce(|| HubEvent::Opened {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = self.inner.append(conversation, messages).await?;
        if outcome.inserted > 0 {
            self.announce(|| HubEvent::Stored {
                conversation: Arc::new(conversation.clone()),
                messages: messages[outcome.duplicates..]
                    .iter()
                    .cloned()
                    .map(Arc::new)
                    .collect(),
            });
        }
        Ok(outcome)
    }

    async fn append_shared(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = self.inner.append_shared(conversation, messages).await?;
        if outcome.inserted > 0 {
            self.announce(|| HubEvent::Stored {
                conversation: Arc::new(conversation.clone()),
                messages: messages[outcome.duplicates..].to_vec(),
            });
        }
        Ok(outcome)
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.inner.update(conversation).await?;
        self.announce(|| HubEvent::Changed {
            conversation: Arc::new(conversation.clone()),
        });
        Ok(())
    }

    async fn state_changes(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        self.inner.state_changes(id).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.inner.conversation(id).await
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        self.inner.messages(id, range).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        self.inner.list(filter).await
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        self.inner.analytics(range).await
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.inner.prune(ended_before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.record_module(module, registered_at).await
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.inner.modules().await
    }

    fn membership(&self) -> Option<&dyn colloquy_storage::Membership> {
        self.inner.membership()
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
