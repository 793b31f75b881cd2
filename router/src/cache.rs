//! The hot set: at most `capacity` conversations in memory, each with its turn lock.
//!
//! One map serves as both the conversation cache and the lock map, so the two can never
//! disagree or outgrow each other. An entry is evicted only when nobody holds or waits for
//! it (its `Arc` is held by the map alone); when every entry is busy, a newcomer waits for
//! room instead of growing the map, which is the backpressure that bounds memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

use colloquy_core::{Conversation, ConversationId, Message, Timestamp};

use crate::Clock;
use tokio::sync::Notify;

/// A conversation held in memory between turns.
#[derive(Debug)]
pub(crate) struct Hot {
    pub(crate) conversation: Conversation,
    /// The most recent messages, oldest first, at most the history window. Shared with
    /// the turn being handled; by the time it changes that turn is over, so the change
    /// happens in place (copy-on-write only if a handler kept its turn).
    pub(crate) history: Arc<VecDeque<Arc<Message>>>,
}

impl Hot {
    pub(crate) fn new(conversation: Conversation, history: VecDeque<Arc<Message>>) -> Self {
        Self {
            conversation,
            history: Arc::new(history),
        }
    }

    pub(crate) fn remember(&mut self, message: Arc<Message>, window: usize) {
        if window == 0 {
            return;
        }
        let history = Arc::make_mut(&mut self.history);
        while history.len() >= window {
            history.pop_front();
        }
        history.push_back(message);
    }
}

/// One entry: the turn lock (a FIFO tokio mutex: first come, first served) around the
/// state, which is `None` until loaded or after being invalidated.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) state: tokio::sync::Mutex<Option<Hot>>,
    last_used: AtomicU64,
    /// When the conversation held here expires if nothing happens (ms; 0 = none or not
    /// known), published after each change so the reaper can sleep until the earliest one
    /// without taking any turn lock.
    deadline: AtomicU64,
    /// The version of the last request this router stored in the conversation (0: none).
    /// A conversation loaded busy at exactly this version is busy with this router's own
    /// exchange (whose end could not be written), not another writer's.
    own_request: AtomicU64,
}

impl Slot {
    /// Records that this router stored a request, making the conversation `version`.
    pub(crate) fn stored_request(&self, version: u64) {
        self.own_request.store(version, Ordering::Relaxed);
    }

    /// The version this router's own last stored request made, if it stored one (what
    /// [`Conversation::in_flight`] asks).
    pub(crate) fn own_request(&self) -> Option<u64> {
        Some(self.own_request.load(Ordering::Relaxed)).filter(|version| *version != 0)
    }

    /// Publishes the deadline of the conversation now held here.
    pub(crate) fn publish(&self, conversation: &Conversation) {
        let deadline = conversation.deadline().map_or(0, |t| t.as_millis());
        self.deadline.store(deadline, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct HotCache {
    map: Mutex<HashMap<ConversationId, Arc<Slot>>>,
    capacity: usize,
    room: Notify,
    clock: Clock,
    high_water: AtomicUsize,
    /// Newcomers waiting for room; leases only notify when this is non-zero.
    waiters: AtomicUsize,
}

/// A claim on a slot; while it lives the slot cannot be evicted.
pub(crate) struct Lease<'a> {
    // Fields drop in order: the slot first, then the wake-up, so a woken waiter already
    // sees the slot as idle.
    slot: Arc<Slot>,
    _wake: WakeOnDrop<'a>,
}

/// Wakes newcomers waiting for room, if there are any.
struct WakeOnDrop<'a>(&'a HotCache);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        // A read-modify-write, not a load: if it comes after a waiter's increment it sees
        // it (and the waiter registered before incrementing); if it comes before, the
        // waiter's increment synchronizes with it and the waiter sees the released slot.
        if self.0.waiters.fetch_add(0, Ordering::AcqRel) > 0 {
            self.0.room.notify_waiters();
        }
    }
}

impl Lease<'_> {
    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl HotCache {
    pub(crate) fn new(capacity: usize, clock: Clock) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            room: Notify::new(),
            clock,
            high_water: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
        }
    }

    // Critical sections are plain map operations that cannot panic.
    fn map(&self) -> MutexGuard<'_, HashMap<ConversationId, Arc<Slot>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self, slot: &Slot) {
        slot.last_used
            .store(self.clock.now().as_millis(), Ordering::Relaxed);
    }

    /// The slot of `id`, created empty if absent; waits while the cache is full of busy
    /// conversations.
    pub(crate) async fn lease(&self, id: ConversationId) -> Lease<'_> {
        if let Some(lease) = self.try_lease(id) {
            return lease;
        }
        loop {
            // Register for wake-ups, then announce the wait, then look again: a lease
            // dropped after the look sees the announcement and wakes this registration.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiters.fetch_add(1, Ordering::AcqRel);
            let found = self.try_lease(id);
            if found.is_none() {
                notified.await;
            }
            self.waiters.fetch_sub(1, Ordering::AcqRel);
            if let Some(lease) = found {
                return lease;
            }
        }
    }

    /// The slot of `id` if it is held, without counting as a use (for the reaper).
    pub(crate) fn peek(&self, id: ConversationId) -> Option<Lease<'_>> {
        let slot = Arc::clone(self.map().get(&id)?);
        Some(Lease {
            slot,
            _wake: WakeOnDrop(self),
        })
    }

    fn try_lease(&self, id: ConversationId) -> Option<Lease<'_>> {
        let mut map = self.map();
        let slot = match map.get(&id) {
            Some(slot) => Arc::clone(slot),
            None => {
                if map.len() >= self.capacity {
                    Self::evict_lru(&mut map, self.capacity.div_ceil(10));
                }
                if map.len() >= self.capacity {
                    return None;
                }
                let slot = Arc::new(Slot::default());
                map.insert(id, Arc::clone(&slot));
                self.high_water.fetch_max(map.len(), Ordering::Relaxed);
                slot
            }
        };
        self.touch(&slot);
        Some(Lease {
            slot,
            _wake: WakeOnDrop(self),
        })
    }

    /// Evicts up to `count` idle entries, least recently used first.
    fn evict_lru(map: &mut HashMap<ConversationId, Arc<Slot>>, count: usize) -> usize {
        let mut idle: Vec<(u64, ConversationId)> = map
            .iter()
            .filter(|(_, slot)| Arc::strong_count(slot) == 1)
            .map(|(id, slot)| (slot.last_used.load(Ordering::Relaxed), *id))
            .collect();
        idle.sort_unstable();
        let evicted = idle.len().min(count);
        for (_, id) in idle.into_iter().take(evicted) {
            map.remove(&id);
        }
        evicted
    }

    /// Removes `id` (an ended conversation) unless someone else still holds or waits for it;
    /// those holders find it again through the store.
    pub(crate) fn forget(&self, id: ConversationId, lease: Lease<'_>) {
        self.forget_held(id, &lease);
    }

    /// [`forget`](Self::forget) while the caller still holds its lease.
    pub(crate) fn forget_held(&self, id: ConversationId, _lease: &Lease<'_>) {
        let mut map = self.map();
        // The map's reference plus this lease's: nobody else is queued on the slot.
        if map
            .get(&id)
            .is_some_and(|slot| Arc::strong_count(slot) <= 2)
        {
            map.remove(&id);
        }
    }

    /// Evicts every entry nobody holds; returns how many.
    pub(crate) fn evict_idle(&self) -> usize {
        let mut map = self.map();
        let count = map.len();
        Self::evict_lru(&mut map, count)
    }

    /// Evicts every idle entry not used for `cold_after`.
    pub(crate) fn evict_cold(&self, cold_after: std::time::Duration) -> usize {
        let cutoff = self.clock.now().saturating_sub(cold_after).as_millis();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.last_used.load(Ordering::Relaxed) >= cutoff
        });
        before - map.len()
    }

    /// The earliest moment a held conversation needs the reaper: its idle deadline, or the
    /// moment it turns cold (`cold_after` unused). `None` when nothing is held.
    pub(crate) fn earliest(&self, cold_after: std::time::Duration) -> Option<Timestamp> {
        let cold = colloquy_core::duration_millis(cold_after);
        self.map()
            .values()
            .map(|slot| {
                let cold_at = slot.last_used.load(Ordering::Relaxed).saturating_add(cold);
                match slot.deadline.load(Ordering::Relaxed) {
                    0 => cold_at,
                    deadline => deadline.min(cold_at),
                }
            })
            .min()
            .map(Timestamp::from_millis)
    }

    /// The ids currently held.
    pub(crate) fn ids(&self) -> Vec<ConversationId> {
        self.map().keys().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
