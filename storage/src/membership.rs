//! What a store several hubs share keeps for their cluster, as three narrow traits: the
//! [`Members`] (join, heartbeat, fencing, leaving, listing), the [`Claims`] on exchanges (whose
//! is the exchange in progress, and the claim of a fenced member's), and the [`TurnQueue`]
//! (turns queued for a hub hosting their module, where the hubs' link does not serve).
//! [`Membership`] is the three together, which a store offers through
//! [`ConversationStore::membership`]: PostgreSQL, and
//! [`MemoryStore::cluster`](crate::MemoryStore::cluster) for hubs of one process. Stores of
//! one hub (SQLite, a plain `MemoryStore`) do not.

use std::time::Duration;

use async_trait::async_trait;
use colloquy_core::{ConversationId, ModuleInfo, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

/// One hub's membership: its id, and the fencing epoch of this run of it (new at every
/// join; a write conditioned on it is refused once the hub was fenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The hub, for as long as the process runs.
    pub id: Uuid,
    /// This run's fencing epoch.
    pub epoch: i64,
}

/// Which member stored a turn: on a store several hubs share, each turn is written by the
/// hub that made it (its sender's hub for a request, the module's for a reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnWriter {
    /// The turn.
    pub turn: u64,
    /// The member whose write stored it.
    pub member: Member,
    /// The name that member gave when it joined, while the store still has its record.
    pub name: Option<String>,
}

/// A member as recorded, for health and listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member.
    pub member: Member,
    /// The name it gave (host and process id by default).
    pub name: String,
    /// When it joined.
    pub joined_at: Timestamp,
    /// Its last heartbeat, on the database server's clock.
    pub heartbeat_at: Timestamp,
    /// True while its heartbeat is younger than the member timeout (on the server's clock).
    pub alive: bool,
    /// True once another member declared it dead (or it left): nothing it writes
    /// afterwards as this member is accepted.
    pub fenced: bool,
    /// True when it left cleanly (it shut down and said so); a member fenced without
    /// having left was lost: killed, paused or cut off, and its exchanges taken over.
    pub left: bool,
    /// The modules it hosts.
    pub modules: Vec<ModuleInfo>,
    /// Where other hubs reach it directly (`host:port` of its cluster link), if it
    /// advertised one; turns to its modules then go hub to hub instead of through the
    /// database. Absent for a hub without a link (or of a version before links).
    #[serde(default)]
    pub address: Option<String>,
}

impl MemberRecord {
    /// How it stands, in one word: `alive`; `silent` (past its heartbeat, not fenced yet);
    /// `left` (it shut down and said so); `lost` (the others fenced it: killed, paused, cut
    /// off).
    pub fn state(&self) -> &'static str {
        match (self.alive, self.fenced, self.left) {
            (true, _, _) => "alive",
            (false, false, _) => "silent",
            (false, true, true) => "left",
            (false, true, false) => "lost",
        }
    }

    /// The modules it hosts that turns can be addressed to: callers (the participants
    /// network clients speak as, [`ModuleInfo::is_caller`]) left out.
    pub fn hosted(&self) -> impl Iterator<Item = &ModuleInfo> {
        self.modules.iter().filter(|m| !m.is_caller())
    }
}

/// A turn queued for a module that another hub hosts: the request's message id (the key: a
/// request is queued again under the same id, never as a new one), the module, and the turn
/// as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedTurn {
    /// The request's message id.
    pub message_id: Uuid,
    /// The module it is addressed to.
    pub module: String,
    /// The turn, as the hosting hub hands it to the module (JSON).
    pub turn: serde_json::Value,
    /// Until when an answer is useful (the sender's handler deadline), in milliseconds
    /// since the epoch.
    pub deadline_ms: u64,
}

/// What [`TurnQueue::signal`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// A delivery was queued.
    Deliveries,
    /// The delivery of this request (by message id) was answered.
    Answered(Uuid),
}

/// The hubs sharing one store: who they are, whether they are alive, who is fenced. Times
/// are judged on the store's clock (the database server's), so that hubs whose clocks
/// disagree still agree on who is alive.
#[async_trait]
pub trait Members: Send + Sync {
    /// Joins as a new member named `name`, reachable by other hubs at `address` (its
    /// cluster link, if it has one), hosting `modules`.
    async fn join(
        &self,
        name: &str,
        address: Option<&str>,
        modules: &[ModuleInfo],
    ) -> Result<Member, StoreError>;

    /// Records that `member` is alive and hosts `modules`. `Ok(false)`: the member was
    /// fenced (declared dead while it did not heartbeat); it must stop acting as that member
    /// and join again.
    async fn heartbeat(&self, member: Member, modules: &[ModuleInfo]) -> Result<bool, StoreError>;

    /// Conditions every conversation write of this store handle on `member` not being
    /// fenced (`None`: unconditioned): a write after the others fenced it is refused with
    /// [`StoreError::Fenced`], whatever conversation it touches.
    fn write_as(&self, member: Option<Member>);

    /// True while more than one member is not fenced: another process may be writing.
    async fn shared(&self) -> Result<bool, StoreError>;

    /// Leaves: the member is fenced at once, so others need not wait for its timeout.
    async fn leave(&self, member: Member) -> Result<(), StoreError>;

    /// Fences every member whose heartbeat is older than `timeout` and is not fenced yet;
    /// returns them. One conditional update: when several members notice the same dead one,
    /// exactly one fences it.
    async fn fence_silent(&self, timeout: Duration) -> Result<Vec<Member>, StoreError>;

    /// Every member not fenced, and the fenced ones of the last `recent` (for health),
    /// judged alive by `timeout`; sorted by join time.
    async fn members(
        &self,
        timeout: Duration,
        recent: Duration,
    ) -> Result<Vec<MemberRecord>, StoreError>;

    /// Which member wrote each of `conversation`'s turns in `range`, in turn order. Turns
    /// written by a handle that wrote as no member ([`Members::write_as`] `None`) are left
    /// out; an unknown conversation has none.
    async fn turn_writers(
        &self,
        conversation: ConversationId,
        range: crate::MessageRange,
    ) -> Result<Vec<TurnWriter>, StoreError>;
}

/// Who holds a conversation's exchange in progress, and the claim of those a fenced member
/// left.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Whether the exchange in progress in `conversation` belongs to another writer that may
    /// still be alive: the member that wrote the conversation last is not the one this
    /// handle writes as ([`Members::write_as`]) and is not fenced. A conversation last
    /// written by no member (a writer outside the cluster): whether another member is
    /// alive at all ([`Members::shared`]). The router waits for such an exchange before
    /// starting its own, and takes over one whose writer was fenced.
    async fn held_by_other(&self, conversation: ConversationId) -> Result<bool, StoreError>;

    /// Claims for `member` up to `limit` conversations that a fenced member left in an
    /// exchange (its request stored, no reply): each is recorded as `member`'s, so the
    /// others wait for `member` to conclude it, and returned. Claims are exclusive (`FOR
    /// UPDATE SKIP LOCKED`): two members never claim one conversation; nothing is claimed
    /// once `member` itself is fenced.
    async fn claim_orphans(
        &self,
        member: Member,
        limit: usize,
    ) -> Result<Vec<ConversationId>, StoreError>;
}

/// Turns queued for a hub that hosts their module: the way between hubs where their link
/// does not serve (a hub without one, a link that fails, a host gone silent mid-call).
#[async_trait]
pub trait TurnQueue: Send + Sync {
    /// Queues `delivery` for a hub that hosts its module.
    /// `Ok(false)`: a delivery of that request was queued before (the request is delivered
    /// again after a takeover); it keeps its row, and its answer if it has one.
    async fn send_delivery(&self, delivery: &QueuedTurn) -> Result<bool, StoreError>;

    /// Claims, for `member`, up to `limit` unanswered deliveries to `modules`: those nobody
    /// claimed, or that a fenced member had claimed (they are delivered again). Claims are
    /// exclusive (`FOR UPDATE SKIP LOCKED`): two hubs never claim one delivery at once.
    async fn claim_deliveries(
        &self,
        member: Member,
        modules: &[String],
        limit: usize,
    ) -> Result<Vec<QueuedTurn>, StoreError>;

    /// Records `answer` to a delivery `member` claimed. `Ok(false)`: the claim is no longer
    /// its own (it was fenced), and the answer was not recorded.
    async fn answer_delivery(
        &self,
        member: Member,
        message_id: Uuid,
        answer: &serde_json::Value,
    ) -> Result<bool, StoreError>;

    /// The answer to the delivery of `message_id`, once there is one; taking it removes the
    /// delivery.
    async fn take_answer(&self, message_id: Uuid) -> Result<Option<serde_json::Value>, StoreError>;

    /// Resolves when the store hears of `signal` (a hint, such as PostgreSQL's `NOTIFY`: it
    /// can be missed, so callers also poll); the default never resolves. Register before
    /// checking: call it, check the table, then await it.
    fn signal(
        &self,
        signal: Signal,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let _ = signal;
        Box::pin(std::future::pending())
    }
}

/// Everything a store several hubs share keeps for their cluster: [`Members`], [`Claims`]
/// and the [`TurnQueue`]. Implemented for every type that implements the three.
pub trait Membership: Members + Claims + TurnQueue {}

impl<T: Members + Claims + TurnQueue> Membership for T {}
