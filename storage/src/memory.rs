//! [`MemoryStore`]: a complete in-memory backend, for tests and for hubs that need no
//! durability.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use async_trait::async_trait;
use colloquy_core::{
    Conversation, ConversationId, Message, MessageId, ModuleInfo, ModuleName, Timestamp,
};

use crate::{
    batch::{check_append, check_create, check_update, plan_append, Existing},
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListCursor, ListFilter,
    MessageRange, ModuleActivity, ModuleRecord, StoreError, TimeRange,
};

/// Conversations, messages and module records held in process memory.
///
/// Clones share the same data, so a clone behaves like a second handle on the same
/// database. Nothing survives the process. It passes the same conformance suite as
/// [`SqliteStore`](crate::SqliteStore).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
}

#[derive(Debug, Default)]
struct State {
    conversations: HashMap<ConversationId, Entry>,
    /// Where each message id is stored: (conversation, turn).
    message_ids: HashMap<MessageId, (ConversationId, u64)>,
    /// Listing order: newest first is a reverse walk.
    by_start: BTreeSet<(Timestamp, ConversationId)>,
    modules: BTreeMap<ModuleName, ModuleRecord>,
}

#[derive(Debug)]
struct Entry {
    conversation: Conversation,
    /// `messages[i].turn == i + 1`.
    messages: Vec<Message>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock can only come from a bug in this file; the data is
    // still consistent because every write validates before it mutates, so poisoning is
    // ignored instead of propagated as a panic.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn entry(&self, id: ConversationId) -> Result<&Entry, StoreError> {
        self.conversations
            .get(&id)
            .ok_or(StoreError::NotFound { conversation: id })
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        check_create(conversation)?;
        let mut state = self.write();
        let id = conversation.id();
        if state.conversations.contains_key(&id) {
            return Err(StoreError::AlreadyExists { conversation: id });
        }
        state.by_start.insert((conversation.started_at(), id));
        state.conversations.insert(
            id,
            Entry {
                conversation: conversation.clone(),
                messages: Vec::new(),
            },
        );
        Ok(())
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<AppendOutcome, StoreError> {
        check_append(conversation, messages)?;
        // Copy outside the lock, so concurrent appends wait only for the bookkeeping.
        let state_copy = conversation.clone();
        let copies = messages.to_vec();
        let mut state = self.write();
        let id = conversation.id();
        let entry = state.entry(id)?;
        let key = |m: &Message| (m.id, m.turn);
        let first_new = plan_append(id, messages, entry.conversation.turn_count(), key, |m| {
            Ok(match state.message_ids.get(&m.id) {
                Some(&(conv, turn)) => Existing::SameId {
                    same_place: conv == id && turn == m.turn,
                },
                None if m.turn <= entry.messages.len() as u64 => Existing::TurnTaken,
                None => Existing::New,
            })
        })?;
        let inserted = messages.len() - first_new;
        let mut replaced = None;
        if inserted > 0 {
            for m in &messages[first_new..] {
                state.message_ids.insert(m.id, (id, m.turn));
            }
            replaced = store_state(&mut state, state_copy);
            if let Some(entry) = state.conversations.get_mut(&id) {
                entry.messages.extend(copies.into_iter().skip(first_new));
            }
        }
        // The previous state is freed after the lock is released.
        drop(state);
        drop(replaced);
        Ok(AppendOutcome {
            inserted,
            duplicates: first_new,
        })
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        let copy = conversation.clone();
        let mut state = self.write();
        let stored = state.entry(conversation.id())?.conversation.turn_count();
        check_update(conversation.id(), conversation.turn_count(), stored)?;
        let replaced = store_state(&mut state, copy);
        drop(state);
        drop(replaced);
        Ok(())
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(self
            .read()
            .conversations
            .get(&id)
            .map(|e| e.conversation.clone()))
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        let state = self.read();
        let entry = state.entry(id)?;
        let count = entry.messages.len() as u64;
        let (start, end) = match range {
            MessageRange::All => (0, count),
            MessageRange::After(turn) => (turn.min(count), count),
            MessageRange::Last(n) => (count.saturating_sub(n), count),
            MessageRange::Turns { first, last } => {
                (first.saturating_sub(1).min(count), last.min(count))
            }
        };
        let (start, end) = (start as usize, end as usize);
        Ok(entry
            .messages
            .get(start..end)
            .map(<[Message]>::to_vec)
            .unwrap_or_default())
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        let state = self.read();
        let limit = filter.effective_limit();
        let walk = state.by_start.iter().rev();
        let mut conversations = Vec::new();
        let mut more = false;
        for key in walk {
            if filter.after.is_some_and(|c| (c.started_at, c.id) <= *key) {
                continue;
            }
            let Some(entry) = state.conversations.get(&key.1) else {
                continue;
            };
            if !filter.matches(&entry.conversation) {
                continue;
            }
            if conversations.len() == limit {
                more = true;
                break;
            }
            conversations.push(entry.conversation.clone());
        }
        let next = if more {
            conversations.last().map(ListCursor::after)
        } else {
            None
        };
        Ok(ConversationPage {
            conversations,
            next,
        })
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        let state = self.read();
        let mut out = Analytics::default();
        let mut modules: BTreeMap<&ModuleName, (u64, u64)> = BTreeMap::new();
        for entry in state.conversations.values() {
            let c = &entry.conversation;
            if !range.contains(c.started_at()) {
                continue;
            }
            out.conversations += 1;
            out.by_status.add(c.status().kind(), 1);
            out.total_turns += c.turn_count();
            let end = c.ended_at().unwrap_or(c.last_activity());
            out.total_duration_ms +=
                colloquy_core::duration_millis(end.saturating_duration_since(c.started_at()));
            for (position, module) in c.participants().iter().enumerate() {
                let slot = modules.entry(module).or_default();
                slot.0 += u64::from(position == 0);
                slot.1 += 1;
            }
        }
        out.modules = modules
            .into_iter()
            .map(|(module, (initiated, participated))| ModuleActivity {
                module: module.clone(),
                initiated,
                participated,
            })
            .collect();
        Ok(out)
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.write();
        let doomed: Vec<ConversationId> = state
            .conversations
            .values()
            .filter(|e| e.conversation.ended_at().is_some_and(|t| t < ended_before))
            .map(|e| e.conversation.id())
            .collect();
        for id in &doomed {
            if let Some(entry) = state.conversations.remove(id) {
                state
                    .by_start
                    .remove(&(entry.conversation.started_at(), *id));
                for m in &entry.messages {
                    state.message_ids.remove(&m.id);
                }
            }
        }
        Ok(doomed.len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        drop(self.read());
        Ok(())
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write().modules.insert(
            module.name.clone(),
            ModuleRecord {
                info: module.clone(),
                registered_at,
            },
        );
        Ok(())
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        Ok(self.read().modules.values().cloned().collect())
    }
}

/// Replaces the stored state; the start time (and so the listing key) never changes, but
/// it is re-keyed anyway so that a caller-supplied state cannot desynchronise the index.
/// Returns the replaced state, so the caller can free it outside the lock.
fn store_state(state: &mut State, conversation: Conversation) -> Option<Conversation> {
    let id = conversation.id();
    let new_start = conversation.started_at();
    let entry = state.conversations.get_mut(&id)?;
    let old = std::mem::replace(&mut entry.conversation, conversation);
    if old.started_at() != new_start {
        state.by_start.remove(&(old.started_at(), id));
        state.by_start.insert((new_start, id));
    }
    Some(old)
}
