//! The memory store's index of message ids: where each id is stored (conversation, turn),
//! sharded by id, so that a retried message is recognised and no id is stored twice.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use colloquy_core::{ConversationId, Message, MessageId};

use super::{lock, shard_of, SHARDS};

/// Every stored message id, over [`SHARDS`] locks.
///
/// Ordered maps, not hash maps: message ids are UUID v7, which grow with time, so new ids
/// land at the right edge of the tree, whose path stays in the CPU cache; a hash table of
/// every id would miss the cache on nearly every insert.
#[derive(Debug)]
pub(super) struct MessageIds(Vec<Mutex<BTreeMap<MessageId, (ConversationId, u64)>>>);

impl Default for MessageIds {
    fn default() -> Self {
        Self((0..SHARDS).map(|_| Mutex::default()).collect())
    }
}

impl MessageIds {
    // `shard_of` is below SHARDS and the vector holds SHARDS locks, so indexing cannot fail.
    fn shard(&self, id: MessageId) -> &Mutex<BTreeMap<MessageId, (ConversationId, u64)>> {
        &self.0[shard_of(id.as_uuid().as_bytes())]
    }

    /// Where `id` is stored, if it is.
    pub(super) fn get(&self, id: MessageId) -> Option<(ConversationId, u64)> {
        lock(self.shard(id)).get(&id).copied()
    }

    /// Claims every message's id for `conversation`, one lookup each. If an id is taken,
    /// releases the ids claimed so far and returns the message whose id was taken.
    pub(super) fn claim_all<'m>(
        &self,
        conversation: ConversationId,
        messages: &'m [Arc<Message>],
    ) -> Result<(), &'m Message> {
        use std::collections::btree_map::Entry as Claim;
        for (i, m) in messages.iter().enumerate() {
            let mut ids = lock(self.shard(m.id));
            match ids.entry(m.id) {
                Claim::Vacant(slot) => {
                    slot.insert((conversation, m.turn));
                }
                Claim::Occupied(_) => {
                    drop(ids);
                    for claimed in &messages[..i] {
                        self.release(claimed.id);
                    }
                    return Err(m);
                }
            }
        }
        Ok(())
    }

    /// Forgets `id` (its message was pruned, or its claim given up).
    pub(super) fn release(&self, id: MessageId) {
        lock(self.shard(id)).remove(&id);
    }
}
