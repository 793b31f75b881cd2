//! [`FaultyStore`]: a decorator that makes any store fail, stall or disconnect on command,
//! for testing what sits above a store (the router, a hub, an application) against the
//! failures a real backend has. Feature `faults`.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, Timestamp};

use crate::{
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StoreError, TimeRange,
};

/// Wraps a store and injects faults that a [`Faults`] handle arms: the next N writes (or
/// reads) fail with a given error, every call is delayed (on tokio's clock, so paused-time
/// tests stay instant), or the store is "disconnected" (every call fails) until reconnected.
/// Unarmed, it forwards every call unchanged.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use colloquy_storage::{ConversationStore, FaultyStore, MemoryStore, StoreError};
/// let (store, faults) = FaultyStore::new(MemoryStore::new());
/// faults.fail_next_writes(1, StoreError::Full { detail: "injected".into() });
/// assert!(matches!(store.prune(colloquy_core::Timestamp::from_millis(0)).await, Err(StoreError::Full { .. })));
/// assert_eq!(store.prune(colloquy_core::Timestamp::from_millis(0)).await?, 0);
/// assert_eq!(faults.writes_failed(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Faults,
}

/// The handle that arms a [`FaultyStore`]'s faults; clones arm the same store.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Plan>>);

#[derive(Debug, Default)]
struct Plan {
    /// Writes to let through first, then writes to fail, and with what.
    failing_writes: Option<(usize, usize, StoreError)>,
    failing_reads: Option<(usize, StoreError)>,
    delay: Option<Duration>,
    disconnected: bool,
    /// Writes whose answer is lost after they committed.
    losing_acks: usize,
    writes_failed: usize,
    reads_failed: usize,
    writes: usize,
}

impl<S: ConversationStore> FaultyStore<S> {
    /// Wraps `inner`; the returned handle arms the faults.
    pub fn new(inner: S) -> (Self, Faults) {
        let faults = Faults::default();
        (
            Self {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }

    /// The wrapped store, to set up or inspect state behind the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl Faults {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        // Every critical section is a few assignments; a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `count` writes (create, append, update, prune, record_module) fail with
    /// `error` and change nothing.
    pub fn fail_next_writes(&self, count: usize, error: StoreError) {
        self.fail_writes_after(0, count, error);
    }

    /// Lets the next `skip` writes through, then fails `count` writes with `error` (to hit
    /// one step of a sequence: `fail_writes_after(1, 1, ..)` fails a turn's reply, not its
    /// request).
    pub fn fail_writes_after(&self, skip: usize, count: usize, error: StoreError) {
        self.plan().failing_writes = (count > 0).then_some((skip, count, error));
    }

    /// The next `count` writes go through, and then their answer is lost: the caller gets
    /// [`StoreError::Unavailable`], as when a connection dies after the commit was sent.
    /// The write is stored; a retry must find it (appends are idempotent on message id).
    pub fn lose_next_acks(&self, count: usize) {
        self.plan().losing_acks = count;
    }

    /// Called after a write committed: the lost answer, if one is armed.
    fn after_write(&self) -> Result<(), StoreError> {
        let mut plan = self.plan();
        if plan.losing_acks == 0 {
            return Ok(());
        }
        plan.losing_acks -= 1;
        plan.writes_failed += 1;
        Err(StoreError::Unavailable {
            backend: "faulty",
            detail: "the connection died after the commit (injected fault)".into(),
        })
    }

    /// The next `count` reads fail with `error`.
    pub fn fail_next_reads(&self, count: usize, error: StoreError) {
        self.plan().failing_reads = (count > 0).then_some((count, error));
    }

    /// Every call waits `delay` (tokio's clock) before it runs; `None` removes the delay.
    pub fn delay(&self, delay: Option<Duration>) {
        self.plan().delay = delay;
    }

    /// Every call fails with a backend error until [`reconnect`](Self::reconnect).
    pub fn disconnect(&self) {
        self.plan().disconnected = true;
    }

    /// Ends a [`disconnect`](Self::disconnect).
    pub fn reconnect(&self) {
        self.plan().disconnected = false;
    }

    /// Writes that failed because of an injected fault.
    pub fn writes_failed(&self) -> usize {
        self.plan().writes_failed
    }

    /// Reads that failed because of an injected fault.
    pub fn reads_failed(&self) -> usize {
        self.plan().reads_failed
    }

    /// Writes attempted (failed or not).
    pub fn writes(&self) -> usize {
        self.plan().writes
    }

    /// Applies the armed faults to one call: waits for the delay, then says whether the call
    /// fails and with what.
    async fn before(&self, write: bool) -> Result<(), StoreError> {
        let delay = self.plan().delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut plan = self.plan();
        if write {
            plan.writes += 1;
        }
        if plan.disconnected {
            if write {
                plan.writes_failed += 1;
            } else {
                plan.reads_failed += 1;
            }
            return Err(StoreError::Backend {
                backend: "faulty",
                message: "disconnected (injected fault)".into(),
            });
        }
        let failure = if write {
            match plan.failing_writes.take() {
                Some((skip, count, error)) if skip > 0 => {
                    plan.failing_writes = Some((skip - 1, count, error));
                    None
                }
                Some((_, count, error)) => {
                    if count > 1 {
                        plan.failing_writes = Some((0, count - 1, error.clone()));
                    }
                    plan.writes_failed += 1;
                    Some(error)
                }
                None => None,
            }
        } else {
            match plan.failing_reads.take() {
                Some((count, error)) => {
                    if count > 1 {
                        plan.failing_reads = Some((count - 1, error.clone()));
                    }
                    plan.reads_failed += 1;
                    Some(error)
                }
                None => None,
            }
        };
        failure.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl<S: ConversationStore> ConversationStore for FaultyStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.faults.before(true).await?;
        self.inner.create(conversation).await
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        self.faults.before(true).await?;
        let outcome = self.inner.append(conversation, messages).await?;
        self.faults.after_write()?;
        Ok(outcome)
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.faults.before(true).await?;
        self.inner.update(conversation).await?;
        self.faults.after_write()
    }

    async fn message(&self, id: colloquy_core::MessageId) -> Result<Option<Message>, StoreError> {
        self.faults.before(false).await?;
        self.inner.message(id).await
    }

    async fn state_changes(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        self.faults.before(false).await?;
        self.inner.state_changes(id).await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.faults.before(false).await?;
        self.inner.conversation(id).await
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        self.faults.before(false).await?;
        self.inner.messages(id, range).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        self.faults.before(false).await?;
        self.inner.list(filter).await
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        self.faults.before(false).await?;
        self.inner.analytics(range).await
    }

    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        self.faults.before(false).await?;
        self.inner.exchanges(range).await
    }

    async fn search(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        self.faults.before(false).await?;
        self.inner.search(search).await
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.faults.before(true).await?;
        self.inner.prune(ended_before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.faults.before(false).await?;
        self.inner.ping().await
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.faults.before(true).await?;
        self.inner.record_module(module, registered_at).await
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        self.faults.before(false).await?;
        self.inner.modules().await
    }

    fn membership(&self) -> Option<&dyn crate::Membership> {
        self.inner.membership()
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
