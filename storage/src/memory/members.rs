//! [`Membership`] for [`MemoryStore::cluster`]: hubs of one process sharing one in-memory
//! store as a cluster, judged on a clock the caller gives (tokio's, in tests on paused
//! time). It keeps the contract PostgreSQL keeps (the membership conformance suite runs on
//! both): epochs only grow, a silent member is fenced exactly once, a fenced member's every
//! write is refused, orphans and deliveries are claimed exactly once.
//!
//! One lock holds the members and the delivery queue; a conversation write of a clustered
//! store takes it before the conversation's shard, so "not fenced" and the write are one
//! step, as in PostgreSQL's single statement. It serializes the cluster's writes: this is a
//! test double for several hubs, not a fast path.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{ConversationId, ModuleInfo, Timestamp};
use uuid::Uuid;

use super::{lock, write, MemoryStore};
use crate::{
    Claims, Member, MemberRecord, Members, MessageRange, QueuedTurn, StoreError, TurnQueue,
    TurnWriter,
};

/// Which member wrote each turn of a conversation, as runs: `(first turn, writer)`, a new
/// run only where the writer changes (an exchange within one hub is one run).
#[derive(Debug, Default)]
pub(super) struct WriterRuns(Vec<(u64, Option<Member>)>);

impl WriterRuns {
    /// Turns from `first` on were written by `writer`.
    pub(super) fn note(&mut self, first: u64, writer: Option<Member>) {
        if self.0.last().map(|(_, w)| *w) != Some(writer) {
            self.0.push((first, writer));
        }
    }

    /// The writer of `turn` (`None`: a writer outside a cluster, or a turn not written).
    fn of(&self, turn: u64) -> Option<Member> {
        let run = self.0.partition_point(|(first, _)| *first <= turn);
        run.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .and_then(|(_, w)| *w)
    }
}

/// The members and deliveries of one in-memory cluster.
pub(super) struct SharedCluster {
    /// The cluster's clock ("the server's"), as [`MemoryStore::cluster`] was given it.
    now: Box<dyn Fn() -> Timestamp + Send + Sync>,
    state: Mutex<Table>,
}

impl std::fmt::Debug for SharedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCluster").finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(super) struct Table {
    next_epoch: i64,
    /// In join order.
    rows: Vec<Row>,
    /// Keyed by the request's message id; `queued` orders the claims.
    deliveries: BTreeMap<Uuid, Queued>,
    queued: u64,
}

struct Row {
    member: Member,
    name: String,
    address: Option<String>,
    modules: Vec<ModuleInfo>,
    joined_at: Timestamp,
    heartbeat_at: Timestamp,
    fenced: bool,
    left: bool,
}

struct Queued {
    delivery: QueuedTurn,
    order: u64,
    claimed: Option<Member>,
    answer: Option<serde_json::Value>,
}

impl Table {
    fn row(&self, member: Member) -> Option<&Row> {
        self.rows.iter().find(|r| r.member == member)
    }

    /// Fenced, or forgotten: nothing it writes is accepted.
    pub(super) fn is_fenced(&self, member: Member) -> bool {
        self.row(member).is_none_or(|r| r.fenced)
    }

    fn unfenced(&self) -> usize {
        self.rows.iter().filter(|r| !r.fenced).count()
    }
}

impl SharedCluster {
    pub(super) fn new(now: Box<dyn Fn() -> Timestamp + Send + Sync>) -> Self {
        Self {
            now,
            state: Mutex::new(Table::default()),
        }
    }

    pub(super) fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.state)
    }
}

fn since(now: Timestamp, span: Duration) -> Timestamp {
    Timestamp::from_millis(
        now.as_millis()
            .saturating_sub(colloquy_core::duration_millis(span)),
    )
}

impl MemoryStore {
    fn shared_cluster(&self) -> Result<&Arc<SharedCluster>, StoreError> {
        self.cluster.as_ref().ok_or(StoreError::Backend {
            backend: "memory",
            message: "this memory store is not a cluster's (see MemoryStore::cluster)".into(),
        })
    }
}

#[async_trait]
impl Members for MemoryStore {
    async fn join(
        &self,
        name: &str,
        address: Option<&str>,
        modules: &[ModuleInfo],
    ) -> Result<Member, StoreError> {
        self.inner.refuse_if_closed()?;
        let members = self.shared_cluster()?;
        let now = (members.now)();
        let mut table = members.table();
        table.next_epoch += 1;
        let epoch = table.next_epoch;
        // Unique within the cluster, which is all a member id needs to be here.
        let member = Member {
            id: Uuid::from_u64_pair(0x636f_6c6c_6f71_7579, epoch.unsigned_abs()),
            epoch,
        };
        table.rows.push(Row {
            member,
            name: name.to_owned(),
            address: address.map(str::to_owned),
            modules: modules.to_vec(),
            joined_at: now,
            heartbeat_at: now,
            fenced: false,
            left: false,
        });
        Ok(member)
    }

    async fn heartbeat(&self, member: Member, modules: &[ModuleInfo]) -> Result<bool, StoreError> {
        let members = self.shared_cluster()?;
        let now = (members.now)();
        let mut table = members.table();
        match table
            .rows
            .iter_mut()
            .find(|r| r.member == member && !r.fenced)
        {
            Some(row) => {
                row.heartbeat_at = now;
                row.modules = modules.to_vec();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn write_as(&self, member: Option<Member>) {
        *lock(&self.writer) = member;
    }

    async fn shared(&self) -> Result<bool, StoreError> {
        Ok(self.shared_cluster()?.table().unfenced() > 1)
    }

    async fn leave(&self, member: Member) -> Result<(), StoreError> {
        let mut table = self.shared_cluster()?.table();
        if let Some(row) = table
            .rows
            .iter_mut()
            .find(|r| r.member == member && !r.fenced)
        {
            row.fenced = true;
            row.left = true;
        }
        Ok(())
    }

    async fn fence_silent(&self, timeout: Duration) -> Result<Vec<Member>, StoreError> {
        let members = self.shared_cluster()?;
        let cutoff = since((members.now)(), timeout);
        let mut table = members.table();
        let mut fenced = Vec::new();
        for row in table.rows.iter_mut().filter(|r| !r.fenced) {
            if row.heartbeat_at < cutoff {
                row.fenced = true;
                fenced.push(row.member);
            }
        }
        Ok(fenced)
    }

    async fn members(
        &self,
        timeout: Duration,
        recent: Duration,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let members = self.shared_cluster()?;
        let now = (members.now)();
        let (alive_after, listed_after) = (since(now, timeout), since(now, recent));
        let table = members.table();
        Ok(table
            .rows
            .iter()
            .filter(|r| !r.fenced || r.heartbeat_at >= listed_after)
            .map(|r| MemberRecord {
                member: r.member,
                name: r.name.clone(),
                joined_at: r.joined_at,
                heartbeat_at: r.heartbeat_at,
                alive: !r.fenced && r.heartbeat_at >= alive_after,
                fenced: r.fenced,
                left: r.left,
                modules: r.modules.clone(),
                address: r.address.clone(),
            })
            .collect())
    }

    async fn turn_writers(
        &self,
        conversation: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<TurnWriter>, StoreError> {
        let members = self.shared_cluster()?;
        // The conversation's shard first and alone: writes take the members' lock before
        // a shard, so holding both the other way round could deadlock.
        let written: Vec<(u64, Member)> = {
            let shard = super::read(self.inner.shard(conversation));
            let Some(entry) = shard.get(&conversation) else {
                return Ok(Vec::new());
            };
            let count = entry.messages.len() as u64;
            (1..=count)
                .filter(|turn| range.contains(*turn, count))
                .filter_map(|turn| entry.turn_writers.of(turn).map(|w| (turn, w)))
                .collect()
        };
        let table = members.table();
        Ok(written
            .into_iter()
            .map(|(turn, member)| TurnWriter {
                turn,
                member,
                name: table.row(member).map(|r| r.name.clone()),
            })
            .collect())
    }
}

#[async_trait]
impl Claims for MemoryStore {
    async fn held_by_other(&self, conversation: ConversationId) -> Result<bool, StoreError> {
        let members = self.shared_cluster()?;
        let table = members.table();
        let written_by = super::read(self.inner.shard(conversation))
            .get(&conversation)
            .map(|entry| entry.written_by);
        Ok(match written_by {
            None => false,
            Some(Some(writer)) => Some(writer) != *lock(&self.writer) && !table.is_fenced(writer),
            Some(None) => table.unfenced() > 1,
        })
    }

    async fn claim_orphans(
        &self,
        member: Member,
        limit: usize,
    ) -> Result<Vec<ConversationId>, StoreError> {
        let members = self.shared_cluster()?;
        let table = members.table();
        let mut claimed = Vec::new();
        if table.is_fenced(member) {
            return Ok(claimed);
        }
        for shard in &self.inner.shards {
            let mut shard = write(shard);
            for (id, entry) in shard.iter_mut() {
                if claimed.len() >= limit {
                    return Ok(claimed);
                }
                let orphaned = entry.conversation.busy_until().is_some()
                    && !entry.conversation.status().is_terminal()
                    && entry.written_by.is_some_and(|w| table.is_fenced(w));
                if orphaned {
                    entry.written_by = Some(member);
                    claimed.push(*id);
                }
            }
        }
        Ok(claimed)
    }
}

#[async_trait]
impl TurnQueue for MemoryStore {
    async fn send_delivery(&self, delivery: &QueuedTurn) -> Result<bool, StoreError> {
        self.inner.refuse_if_closed()?;
        let mut table = self.shared_cluster()?.table();
        if table.deliveries.contains_key(&delivery.message_id) {
            return Ok(false);
        }
        table.queued += 1;
        let order = table.queued;
        table.deliveries.insert(
            delivery.message_id,
            Queued {
                delivery: delivery.clone(),
                order,
                claimed: None,
                answer: None,
            },
        );
        Ok(true)
    }

    async fn claim_deliveries(
        &self,
        member: Member,
        modules: &[String],
        limit: usize,
    ) -> Result<Vec<QueuedTurn>, StoreError> {
        let mut table = self.shared_cluster()?.table();
        if table.is_fenced(member) {
            return Ok(Vec::new());
        }
        let mut claimable: Vec<(u64, Uuid)> = table
            .deliveries
            .values()
            .filter(|q| q.answer.is_none() && modules.contains(&q.delivery.module))
            .filter(|q| q.claimed.is_none_or(|c| table.is_fenced(c)))
            .map(|q| (q.order, q.delivery.message_id))
            .collect();
        claimable.sort_unstable();
        claimable.truncate(limit);
        let mut claimed = Vec::with_capacity(claimable.len());
        for (_, id) in claimable {
            if let Some(queued) = table.deliveries.get_mut(&id) {
                queued.claimed = Some(member);
                claimed.push(queued.delivery.clone());
            }
        }
        Ok(claimed)
    }

    async fn answer_delivery(
        &self,
        member: Member,
        message_id: Uuid,
        answer: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut table = self.shared_cluster()?.table();
        if table.is_fenced(member) {
            return Ok(false);
        }
        match table.deliveries.get_mut(&message_id) {
            Some(queued) if queued.claimed == Some(member) && queued.answer.is_none() => {
                queued.answer = Some(answer.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take_answer(&self, message_id: Uuid) -> Result<Option<serde_json::Value>, StoreError> {
        let mut table = self.shared_cluster()?.table();
        if table
            .deliveries
            .get(&message_id)
            .is_some_and(|q| q.answer.is_some())
        {
            return Ok(table.deliveries.remove(&message_id).and_then(|q| q.answer));
        }
        Ok(None)
    }
}
