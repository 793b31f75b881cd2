//! [`MemoryStore`]: a complete in-memory backend, for tests and for hubs that need no
//! durability.
//!
//! Conversations are spread over [`SHARDS`] locks by id, and message ids over as many
//! more, so appends to different conversations rarely wait for each other. The listing
//! order (by start time) has its own lock, touched only when conversations are created or
//! pruned.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use async_trait::async_trait;
use colloquy_core::{
    Conversation, ConversationId, Message, MessageId, ModuleInfo, ModuleName, StateChange,
    Timestamp,
};

mod ids;
mod members;

use crate::{
    batch::{
        check_append, check_create, check_state, check_update, check_write, plan_append, Existing,
        StoredState,
    },
    Analytics, AppendOutcome, ConversationPage, ConversationStore, ListFilter, MessageRange,
    ModuleRecord, StatusCounts, StoreError, TimeRange,
};

/// The maps' hasher: the standard library's SipHash is built to resist hash flooding by
/// chosen keys, at several times the cost; keys here are UUIDs and foldhash still seeds
/// every map at random.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How many locks conversations (and, separately, message ids) are spread over.
const SHARDS: usize = 16;

/// Conversations, messages and module records held in process memory.
///
/// Clones share the same data, so a clone behaves like a second handle on the same
/// database; closing one closes the store for all of them (writes fail with
/// [`StoreError::Closed`], reads go on). Nothing survives the process. It passes the same
/// conformance suite as [`SqliteStore`](crate::SqliteStore).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
    /// The members of the cluster this store is shared by ([`MemoryStore::cluster`]).
    cluster: Option<Arc<members::SharedCluster>>,
    /// The member this handle writes as (`Members::write_as`); clones share it,
    /// [`MemoryStore::handle`] makes a new one.
    writer: Arc<Mutex<Option<crate::Member>>>,
}

#[derive(Debug)]
struct Inner {
    shards: Vec<RwLock<Map<ConversationId, Entry>>>,
    /// Where each message id is stored: (conversation, turn).
    message_ids: ids::MessageIds,
    /// Listing order: newest first is a reverse walk.
    by_start: RwLock<BTreeSet<(Timestamp, ConversationId)>>,
    modules: RwLock<BTreeMap<ModuleName, ModuleRecord>>,
    /// Set by `close`: writes are refused from then on.
    closed: std::sync::atomic::AtomicBool,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            message_ids: ids::MessageIds::default(),
            by_start: RwLock::default(),
            modules: RwLock::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

#[derive(Debug)]
struct Entry {
    conversation: Conversation,
    /// `messages[i].turn == i + 1`; shared with the router, which made them.
    messages: Vec<Arc<Message>>,
    /// What each write changed in the shared state, in version order.
    changes: Vec<StateChange>,
    /// The cluster member whose write stored it last (`None`: a writer outside a cluster).
    written_by: Option<crate::Member>,
    /// Which member wrote each turn.
    turn_writers: members::WriterRuns,
}

impl Entry {
    fn stored(&self) -> StoredState {
        StoredState {
            version: self.conversation.version(),
            status: self.conversation.status().kind(),
            turns: self.messages.len() as u64,
        }
    }
}

// A panic while holding a lock can only come from a bug in this file; the data is still
// consistent because every write validates before it mutates, so poisoning is ignored
// instead of propagated as a panic.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Folds a UUID into a shard index (any deterministic function is correct; this one
/// spreads minted ids evenly).
pub(super) fn shard_of(uuid: &[u8; 16]) -> usize {
    let folded = uuid.iter().fold(0u8, |acc, b| acc ^ b);
    usize::from(folded) % SHARDS
}

impl Inner {
    // `shard_of` is below SHARDS and the vector holds SHARDS locks, so indexing cannot fail.
    fn shard(&self, id: ConversationId) -> &RwLock<Map<ConversationId, Entry>> {
        &self.shards[shard_of(id.as_uuid().as_bytes())]
    }

    fn stored_id(&self, id: MessageId) -> Option<(ConversationId, u64)> {
        self.message_ids.get(id)
    }

    /// Appends checked messages (see [`ConversationStore::append`]).
    fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
        writer: Option<crate::Member>,
    ) -> Result<AppendOutcome, StoreError> {
        let id = conversation.id();
        // Copy outside the lock, so concurrent appends wait only for the bookkeeping. (A
        // state bumped for this write already counts itself as stored: a plain clone.)
        let state_copy = conversation.clone();
        let change = conversation.state_change();
        let mut shard = write(self.shard(id));
        let entry = shard.get_mut(&id).ok_or_else(|| not_found(id))?;
        let stored_turns = entry.messages.len() as u64;
        let continues = messages
            .iter()
            .zip(stored_turns + 1..)
            .all(|(m, turn)| m.turn == turn);
        // The append every routed turn makes (new ids continuing the stored turns) needs
        // one lookup per message; anything else gets the full checks, which say why.
        let first_new = if continues {
            check_write(id, conversation.version(), entry.stored())?;
            if self.message_ids.claim_all(id, messages).is_ok() {
                0
            } else {
                self.plan_and_claim(id, messages, entry.stored(), conversation)?
            }
        } else {
            self.plan_and_claim(id, messages, entry.stored(), conversation)?
        };
        let inserted = messages.len() - first_new;
        let mut replaced = None;
        if inserted > 0 {
            replaced = Some(std::mem::replace(&mut entry.conversation, state_copy));
            entry.messages.extend(messages[first_new..].iter().cloned());
            entry.changes.extend(change);
            entry.written_by = writer;
            entry.turn_writers.note(stored_turns + 1, writer);
        }
        // The previous state is freed after the lock is released.
        drop(shard);
        drop(replaced);
        Ok(AppendOutcome {
            inserted,
            duplicates: first_new,
        })
    }

    /// The general append check (duplicates, conflicts, gaps, then the conditional write
    /// if anything is new) and claim of the new ids. Returns the index of the first new
    /// message.
    fn plan_and_claim(
        &self,
        id: ConversationId,
        messages: &[Arc<Message>],
        stored: StoredState,
        conversation: &Conversation,
    ) -> Result<usize, StoreError> {
        let key = |m: &Arc<Message>| (m.id, m.turn);
        let first_new = plan_append(id, messages, stored.turns, key, |m| {
            Ok(match self.stored_id(m.id) {
                Some((conv, turn)) => Existing::SameId {
                    same_place: conv == id && turn == m.turn,
                },
                None if m.turn <= stored.turns => Existing::TurnTaken,
                None => Existing::New,
            })
        })?;
        if first_new == messages.len() {
            // A retried append that is stored already: nothing to write, nothing to compare.
            return Ok(first_new);
        }
        check_write(id, conversation.version(), stored)?;
        // Claim the new ids; one claimed meanwhile by another conversation's append (the
        // only race left, since this conversation is locked) undoes the claims.
        self.message_ids
            .claim_all(id, &messages[first_new..])
            .map_err(|taken| StoreError::Conflict {
                conversation: id,
                turn: taken.turn,
                reason: format!(
                    "message id {} is already stored at another turn or conversation",
                    taken.id
                ),
            })?;
        Ok(first_new)
    }

    fn refuse_if_closed(&self) -> Result<(), StoreError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that several hubs of this process share as a cluster: it offers
    /// [`Membership`](crate::Membership) (join, heartbeat, fencing, orphan claims, the
    /// delivery queue), with liveness judged on `now` (the cluster's clock: pass the hubs'
    /// clock, so that paused time fences and takes over in tests without waiting). Give each
    /// hub its own [`handle`](Self::handle): a handle writes as the member it joined as.
    pub fn cluster(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self {
            cluster: Some(Arc::new(members::SharedCluster::new(Box::new(now)))),
            ..Self::default()
        }
    }

    /// Another handle on the same data (and cluster), writing as no member until told
    /// (`Members::write_as`): what a second hub of a [`cluster`](Self::cluster) opens.
    pub fn handle(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            cluster: self.cluster.clone(),
            writer: Arc::default(),
        }
    }

    /// In a cluster: the members' lock, held across a conversation write so that "this
    /// handle's member is not fenced" and the write are one step; refuses the write of a
    /// fenced member. Outside a cluster: nothing to hold.
    fn fence(
        &self,
    ) -> Result<
        (
            Option<MutexGuard<'_, members::Table>>,
            Option<crate::Member>,
        ),
        StoreError,
    > {
        let Some(cluster) = &self.cluster else {
            return Ok((None, None));
        };
        let table = cluster.table();
        let writer = *lock(&self.writer);
        if let Some(member) = writer {
            if table.is_fenced(member) {
                return Err(StoreError::Fenced {
                    member: format!("{} epoch {}", member.id, member.epoch),
                });
            }
        }
        Ok((Some(table), writer))
    }
}

fn not_found(id: ConversationId) -> StoreError {
    StoreError::NotFound { conversation: id }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.inner.refuse_if_closed()?;
        check_create(conversation)?;
        let id = conversation.id();
        let (_fence, written_by) = self.fence()?;
        let entry = Entry {
            conversation: conversation.stored_copy(),
            messages: Vec::new(),
            changes: conversation.state_change().into_iter().collect(),
            written_by,
            turn_writers: members::WriterRuns::default(),
        };
        {
            let mut shard = write(self.inner.shard(id));
            if shard.contains_key(&id) {
                return Err(StoreError::AlreadyExists { conversation: id });
            }
            shard.insert(id, entry);
        }
        write(&self.inner.by_start).insert((conversation.started_at(), id));
        Ok(())
    }

    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.refuse_if_closed()?;
        check_append(conversation, messages)?;
        let (_fence, writer) = self.fence()?;
        self.inner.append(conversation, messages, writer)
    }

    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.inner.refuse_if_closed()?;
        check_state(conversation)?;
        let id = conversation.id();
        let copy = conversation.clone();
        let change = conversation.state_change();
        let (fence, writer) = self.fence()?;
        let mut shard = write(self.inner.shard(id));
        let entry = shard.get_mut(&id).ok_or_else(|| not_found(id))?;
        check_update(id, conversation.turn_count(), entry.messages.len() as u64)?;
        check_write(id, conversation.version(), entry.stored())?;
        let replaced = std::mem::replace(&mut entry.conversation, copy);
        entry.changes.extend(change);
        entry.written_by = writer;
        drop(shard);
        drop(fence);
        if replaced.started_at() != conversation.started_at() {
            let mut by_start = write(&self.inner.by_start);
            by_start.remove(&(replaced.started_at(), id));
            by_start.insert((conversation.started_at(), id));
        }
        Ok(())
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let Some((conversation, turn)) = self.inner.stored_id(id) else {
            return Ok(None);
        };
        let shard = read(self.inner.shard(conversation));
        Ok(shard
            .get(&conversation)
            .and_then(|entry| {
                entry
                    .messages
                    .get(usize::try_from(turn).ok()?.checked_sub(1)?)
            })
            .filter(|m| m.id == id)
            .map(|m| Message::clone(m)))
    }

    async fn state_changes(&self, id: ConversationId) -> Result<Vec<StateChange>, StoreError> {
        let shard = read(self.inner.shard(id));
        let entry = shard.get(&id).ok_or_else(|| not_found(id))?;
        Ok(entry.changes.clone())
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        Ok(read(self.inner.shard(id))
            .get(&id)
            .map(|e| e.conversation.clone()))
    }

    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        let shard = read(self.inner.shard(id));
        let entry = shard.get(&id).ok_or_else(|| not_found(id))?;
        let count = entry.messages.len() as u64;
        let (start, end) = match range {
            MessageRange::All => (0, count),
            MessageRange::After(turn) => (turn.min(count), count),
            MessageRange::Last(n) => (count.saturating_sub(n), count),
            MessageRange::Turns { first, last } => {
                (first.saturating_sub(1).min(count), last.min(count))
            }
        };
        let (start, end) = (start as usize, end.max(start) as usize);
        Ok(entry
            .messages
            .get(start..end)
            .map(|shared| shared.iter().map(|m| Message::clone(m)).collect())
            .unwrap_or_default())
    }

    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError> {
        let limit = filter.effective_limit();
        let by_start = read(&self.inner.by_start);
        let candidates = by_start
            .iter()
            .rev()
            .filter(|key| filter.after.is_none_or(|c| (c.started_at, c.id) > **key))
            .filter_map(|key| {
                read(self.inner.shard(key.1))
                    .get(&key.1)
                    .map(|e| e.conversation.clone())
            })
            .filter(|conversation| filter.matches(conversation))
            .map(Ok);
        ConversationPage::from_candidates(limit, candidates)
    }

    async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        let mut out = StatusCounts::default();
        for shard in &self.inner.shards {
            for entry in read(shard).values() {
                out.add(entry.conversation.status().kind(), 1);
            }
        }
        Ok(out)
    }

    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        let mut tally = crate::AnalyticsTally::default();
        for shard in &self.inner.shards {
            for entry in read(shard).values() {
                if range.contains(entry.conversation.started_at()) {
                    tally.add(
                        &entry.conversation,
                        entry.messages.iter().map(|m| &m.source),
                    );
                }
            }
        }
        Ok(tally.finish())
    }

    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        let mut tally = crate::ExchangeTally::default();
        for shard in &self.inner.shards {
            for entry in read(shard).values() {
                tally.add(entry.messages.iter().map(|m| &**m), |m| {
                    range.contains(m.sent_at)
                });
            }
        }
        Ok(tally.finish())
    }

    async fn search(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        let Some(needle) = search.needle() else {
            return Ok(Vec::new());
        };
        let mut hits = Vec::new();
        for shard in &self.inner.shards {
            for entry in read(shard).values() {
                let c = &entry.conversation;
                if search
                    .participant
                    .as_ref()
                    .is_some_and(|p| !c.is_participant(p))
                {
                    continue;
                }
                hits.extend(
                    entry
                        .messages
                        .iter()
                        .filter(|m| crate::TextSearch::matches(&needle, m))
                        .map(|m| crate::SearchHit {
                            conversation: c.id(),
                            turn: m.turn,
                            sent_at: m.sent_at,
                        }),
                );
            }
        }
        crate::search::newest_first(&mut hits);
        hits.truncate(search.effective_limit());
        Ok(hits)
    }

    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.inner.refuse_if_closed()?;
        let mut pruned = Vec::new();
        for shard in &self.inner.shards {
            let mut shard = write(shard);
            let doomed: Vec<ConversationId> = shard
                .values()
                .filter(|e| e.conversation.ended_at().is_some_and(|t| t < ended_before))
                .map(|e| e.conversation.id())
                .collect();
            for id in doomed {
                if let Some(entry) = shard.remove(&id) {
                    pruned.push(entry);
                }
            }
        }
        let mut by_start = write(&self.inner.by_start);
        for entry in &pruned {
            by_start.remove(&(entry.conversation.started_at(), entry.conversation.id()));
            for m in &entry.messages {
                self.inner.message_ids.release(m.id);
            }
        }
        Ok(pruned.len() as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        drop(read(&self.inner.by_start));
        Ok(())
    }

    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.refuse_if_closed()?;
        write(&self.inner.modules).insert(
            module.name.clone(),
            ModuleRecord {
                info: module.clone(),
                registered_at,
            },
        );
        Ok(())
    }

    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        Ok(read(&self.inner.modules).values().cloned().collect())
    }

    fn membership(&self) -> Option<&dyn crate::Membership> {
        self.cluster
            .as_ref()
            .map(|_| self as &dyn crate::Membership)
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Nothing to flush; every later write (from any clone) is refused.
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
