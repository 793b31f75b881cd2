//! [`Membership`] on PostgreSQL: the `hubs` table, judged on the server's clock.

use std::time::Duration;

use async_trait::async_trait;
use colloquy_core::{ConversationId, ModuleInfo, Timestamp};
use serde_json::Value;

use super::{
    named::{Named, Param},
    PostgresStore,
};
use crate::{
    Claims, Member, MemberRecord, Members, MessageRange, QueuedTurn, Signal, StoreError, TurnQueue,
    TurnWriter,
};

/// A statement of this file, its named parameters turned into positions once.
macro_rules! statement {
    ($name:ident, $sql:expr) => {
        static $name: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| Named::new(&$sql));
    };
}

/// The member (`:member_id`, `:member_epoch`) is one the others have not fenced: the
/// condition of every write a member makes about itself or its claims.
const MEMBER_LIVE: &str = "EXISTS (SELECT 1 FROM hubs \
     WHERE id = :member_id AND epoch = :member_epoch AND NOT fenced)";

statement!(
    JOIN,
    "INSERT INTO hubs (id, epoch, name, modules, address) \
     VALUES (gen_random_uuid(), nextval('hub_epochs'), :name, :modules, :address) \
     RETURNING id, epoch"
);
statement!(
    HEARTBEAT,
    "UPDATE hubs SET heartbeat_at = now(), modules = :modules \
     WHERE id = :member_id AND epoch = :member_epoch AND NOT fenced"
);
// A member the others fenced already was lost, whatever it says later.
statement!(
    LEAVE,
    "UPDATE hubs SET fenced = true, left_at = now() \
     WHERE id = :member_id AND epoch = :member_epoch AND NOT fenced"
);
// The fencing, and the housekeeping of long-fenced members and of answers nobody took
// (the sender died and no takeover asked again; kept for as long as a takeover may still
// ask). The three touch disjoint rows (the fenced rows deleted were fenced long before).
statement!(
    FENCE_SILENT,
    "WITH fenced AS (UPDATE hubs SET fenced = true \
     WHERE NOT fenced AND heartbeat_at < now() - make_interval(secs => :timeout_secs) \
     RETURNING id, epoch), \
     forgotten AS (DELETE FROM hubs \
     WHERE fenced AND heartbeat_at < now() - make_interval(secs => :forget_after_secs)), \
     expired AS (DELETE FROM deliveries \
     WHERE deadline_ms < (extract(epoch FROM now()) * 1000)::bigint - (:forget_after_secs * 1000)::bigint) \
     SELECT id, epoch FROM fenced"
);
statement!(
    MEMBERS,
    "SELECT id, epoch, name, \
       (extract(epoch FROM joined_at) * 1000)::bigint, \
       (extract(epoch FROM heartbeat_at) * 1000)::bigint, \
       NOT fenced AND heartbeat_at >= now() - make_interval(secs => :timeout_secs), \
       fenced, modules, left_at IS NOT NULL, address \
     FROM hubs WHERE NOT fenced OR heartbeat_at >= now() - make_interval(secs => :recent_secs) \
     ORDER BY joined_at, id"
);
statement!(
    HELD_BY,
    "SELECT c.written_by_id, c.written_by_epoch, h.fenced FROM conversations c \
     LEFT JOIN hubs h ON h.id = c.written_by_id AND h.epoch = c.written_by_epoch \
     WHERE c.id = :conversation_id"
);
// Orphans: open conversations left in an exchange by a writer the others fenced, found
// from the fenced members (a few) through `conversations_by_writer`. A writer whose member
// row is already forgotten (fenced a day before) is not looked for: the live members
// claimed its exchanges within a heartbeat of fencing it.
statement!(
    CLAIM_ORPHANS,
    format!(
        "WITH orphans AS ( \
           SELECT c.id FROM hubs h \
           JOIN conversations c ON c.written_by_id = h.id AND c.written_by_epoch = h.epoch \
           WHERE h.fenced AND c.ended_at IS NULL AND c.busy_until IS NOT NULL \
           LIMIT :limit FOR UPDATE OF c SKIP LOCKED) \
         UPDATE conversations SET written_by_id = :member_id, written_by_epoch = :member_epoch \
         FROM orphans WHERE conversations.id = orphans.id AND {MEMBER_LIVE} \
         RETURNING conversations.id"
    )
);
// A request delivered again (after a takeover) keeps its row: its answer, if any, stands.
// Queued and announced in one statement (the notification is sent at commit), so the
// hosting hub need not wait for its next poll.
statement!(
    SEND_DELIVERY,
    "WITH queued AS (INSERT INTO deliveries (message_id, module, turn, deadline_ms) \
     VALUES (:message_id, :module, :turn, :deadline_ms) ON CONFLICT (message_id) DO NOTHING RETURNING 1) \
     SELECT (SELECT count(*) FROM queued), pg_notify(:channel, 'd:' || :module)"
);
statement!(
    CLAIM_DELIVERIES,
    "WITH claimable AS ( \
       SELECT d.message_id FROM deliveries d \
       LEFT JOIN hubs h ON h.id = d.claimed_id AND h.epoch = d.claimed_epoch \
       WHERE d.answer IS NULL AND d.module = ANY(:modules) \
         AND (d.claimed_id IS NULL OR h.fenced IS NOT FALSE) \
       ORDER BY d.created_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED) \
     UPDATE deliveries SET claimed_id = :member_id, claimed_epoch = :member_epoch \
     FROM claimable WHERE deliveries.message_id = claimable.message_id \
     RETURNING deliveries.message_id, deliveries.module, deliveries.turn, deliveries.deadline_ms"
);
// Recorded and announced in one statement.
statement!(
    ANSWER_DELIVERY,
    format!(
        "WITH answered AS (UPDATE deliveries SET answer = :answer \
         WHERE message_id = :message_id AND claimed_id = :member_id \
         AND claimed_epoch = :member_epoch AND answer IS NULL AND {MEMBER_LIVE} \
         RETURNING 1) \
         SELECT (SELECT count(*) FROM answered), pg_notify(:channel, 'a:' || :message_id::text)"
    )
);
statement!(
    TAKE_ANSWER,
    "DELETE FROM deliveries WHERE message_id = :message_id AND answer IS NOT NULL RETURNING answer"
);

/// Fenced rows older than this are deleted (the table keeps recent history only).
const FORGET_AFTER_SECS: f64 = 86_400.0;

statement!(
    TURN_WRITERS,
    "SELECT m.turn, m.written_by_id, m.written_by_epoch, h.name FROM messages m \
     LEFT JOIN hubs h ON h.id = m.written_by_id AND h.epoch = m.written_by_epoch \
     WHERE m.conversation_id = :id AND m.written_by_id IS NOT NULL \
     AND m.turn BETWEEN :first AND :last \
     AND m.turn > (SELECT c.turn_count FROM conversations c WHERE c.id = :id) - :last_n \
     ORDER BY m.turn"
);

/// A range of turns as `(first, last, last_n)`: turns `first..=last` among the last
/// `last_n` (each `i64::MAX` where the range does not bound it).
fn turn_bounds(range: MessageRange) -> (i64, i64, i64) {
    let at_most = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    match range {
        MessageRange::All => (1, i64::MAX, i64::MAX),
        MessageRange::After(turn) => (at_most(turn.saturating_add(1)), i64::MAX, i64::MAX),
        MessageRange::Last(n) => (1, i64::MAX, at_most(n)),
        MessageRange::Turns { first, last } => (at_most(first), at_most(last), i64::MAX),
    }
}

fn modules_json(modules: &[ModuleInfo]) -> Result<Value, StoreError> {
    serde_json::to_value(modules).map_err(|e| StoreError::InvalidInput {
        reason: format!("module infos cannot be serialized: {e}"),
    })
}

fn millis(row: &tokio_postgres::Row, idx: usize) -> Result<Timestamp, tokio_postgres::Error> {
    let ms: i64 = row.try_get(idx)?;
    Ok(Timestamp::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[async_trait]
impl Members for PostgresStore {
    async fn join(
        &self,
        name: &str,
        address: Option<&str>,
        modules: &[ModuleInfo],
    ) -> Result<Member, StoreError> {
        self.refuse_if_closed()?;
        let modules = modules_json(modules)?;
        let client = self.client().await?;
        let row = self
            .query_one_named(
                &client,
                &JOIN,
                &[
                    ("name", &name),
                    ("modules", &modules),
                    ("address", &address),
                ],
            )
            .await?;
        Ok(Member {
            id: row.try_get(0).map_err(self.err())?,
            epoch: row.try_get(1).map_err(self.err())?,
        })
    }

    async fn heartbeat(&self, member: Member, modules: &[ModuleInfo]) -> Result<bool, StoreError> {
        let modules = modules_json(modules)?;
        let client = self.client().await?;
        let updated = self
            .execute_named(
                &client,
                &HEARTBEAT,
                &[
                    ("member_id", &member.id),
                    ("member_epoch", &member.epoch),
                    ("modules", &modules),
                ],
            )
            .await?;
        Ok(updated == 1)
    }

    fn write_as(&self, member: Option<Member>) {
        *self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = member;
    }

    async fn shared(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) > 1 FROM hubs WHERE NOT fenced", &[])
            .await
            .map_err(self.err())?;
        row.try_get(0).map_err(self.err())
    }

    async fn leave(&self, member: Member) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.execute_named(
            &client,
            &LEAVE,
            &[("member_id", &member.id), ("member_epoch", &member.epoch)],
        )
        .await?;
        Ok(())
    }

    async fn fence_silent(&self, timeout: Duration) -> Result<Vec<Member>, StoreError> {
        let client = self.client().await?;
        // One statement, one round trip per heartbeat.
        let timeout_secs = timeout.as_secs_f64();
        let rows = self
            .query_named(
                &client,
                &FENCE_SILENT,
                &[
                    ("timeout_secs", &timeout_secs),
                    ("forget_after_secs", &FORGET_AFTER_SECS),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    id: row.try_get(0)?,
                    epoch: row.try_get(1)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.err())
    }

    async fn members(
        &self,
        timeout: Duration,
        recent: Duration,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let client = self.client().await?;
        let (timeout_secs, recent_secs) = (timeout.as_secs_f64(), recent.as_secs_f64());
        let rows = self
            .query_named(
                &client,
                &MEMBERS,
                &[
                    ("timeout_secs", &timeout_secs),
                    ("recent_secs", &recent_secs),
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let modules: Value = row.try_get(7).map_err(self.err())?;
            out.push(MemberRecord {
                member: Member {
                    id: row.try_get(0).map_err(self.err())?,
                    epoch: row.try_get(1).map_err(self.err())?,
                },
                name: row.try_get(2).map_err(self.err())?,
                joined_at: millis(row, 3).map_err(self.err())?,
                heartbeat_at: millis(row, 4).map_err(self.err())?,
                alive: row.try_get(5).map_err(self.err())?,
                fenced: row.try_get(6).map_err(self.err())?,
                left: row.try_get(8).map_err(self.err())?,
                address: row.try_get(9).map_err(self.err())?,
                modules: serde_json::from_value(modules).map_err(|e| StoreError::Corrupt {
                    location: "a hub's modules".into(),
                    detail: e.to_string(),
                })?,
            });
        }
        Ok(out)
    }

    async fn turn_writers(
        &self,
        conversation: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<TurnWriter>, StoreError> {
        self.refuse_if_closed()?;
        let (first, last, last_n) = turn_bounds(range);
        let client = self.client().await?;
        let rows = self
            .query_named(
                &client,
                &TURN_WRITERS,
                &[
                    ("id", &conversation.as_uuid()),
                    ("first", &first),
                    ("last", &last),
                    ("last_n", &last_n),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let turn: i64 = row.try_get(0)?;
                Ok(TurnWriter {
                    turn: u64::try_from(turn).unwrap_or(0),
                    member: Member {
                        id: row.try_get(1)?,
                        epoch: row.try_get(2)?,
                    },
                    name: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.err())
    }
}

#[async_trait]
impl Claims for PostgresStore {
    async fn held_by_other(&self, conversation: ConversationId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let conversation_id = conversation.as_uuid();
        let row = self
            .query_opt_named(&client, &HELD_BY, &[("conversation_id", &conversation_id)])
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let id: Option<uuid::Uuid> = row.try_get(0).map_err(self.err())?;
        let epoch: Option<i64> = row.try_get(1).map_err(self.err())?;
        let fenced: Option<bool> = row.try_get(2).map_err(self.err())?;
        match (id, epoch) {
            (Some(id), Some(epoch)) => {
                // A member row forgotten long ago (fenced, then deleted) is not alive.
                Ok((Some(id), Some(epoch)) != self.writer() && fenced == Some(false))
            }
            _ => self.shared().await,
        }
    }

    async fn claim_orphans(
        &self,
        member: Member,
        limit: usize,
    ) -> Result<Vec<ConversationId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = self
            .query_named(
                &client,
                &CLAIM_ORPHANS,
                &[
                    ("member_id", &member.id),
                    ("member_epoch", &member.epoch),
                    ("limit", &limit),
                ],
            )
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: uuid::Uuid = row.try_get(0).map_err(self.err())?;
            claimed.push(
                ConversationId::from_uuid(id).map_err(|e| StoreError::Corrupt {
                    location: format!("conversation {id}"),
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(claimed)
    }
}

#[async_trait]
impl TurnQueue for PostgresStore {
    fn signal(
        &self,
        signal: Signal,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // Subscribed now, before the caller checks the table: a notification that arrives
        // in between is not missed.
        self.listener.wait(signal)
    }

    async fn send_delivery(&self, delivery: &QueuedTurn) -> Result<bool, StoreError> {
        self.refuse_if_closed()?;
        let deadline = i64::try_from(delivery.deadline_ms).unwrap_or(i64::MAX);
        let client = self.relaxed_client().await?;
        let row = self
            .query_one_named(
                &client,
                &SEND_DELIVERY,
                &[
                    ("message_id", &delivery.message_id),
                    ("module", &delivery.module),
                    ("turn", &delivery.turn),
                    ("deadline_ms", &deadline),
                    ("channel", &self.listener.channel),
                ],
            )
            .await?;
        let queued: i64 = row.try_get(0).map_err(self.err())?;
        Ok(queued == 1)
    }

    async fn claim_deliveries(
        &self,
        member: Member,
        modules: &[String],
        limit: usize,
    ) -> Result<Vec<QueuedTurn>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.relaxed_client().await?;
        let rows = self
            .query_named(
                &client,
                &CLAIM_DELIVERIES,
                &[
                    ("member_id", &member.id),
                    ("member_epoch", &member.epoch),
                    ("modules", &modules),
                    ("limit", &limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let deadline: i64 = row.try_get(3)?;
                Ok(QueuedTurn {
                    message_id: row.try_get(0)?,
                    module: row.try_get(1)?,
                    turn: row.try_get(2)?,
                    deadline_ms: u64::try_from(deadline).unwrap_or(0),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.err())
    }

    async fn answer_delivery(
        &self,
        member: Member,
        message_id: uuid::Uuid,
        answer: &Value,
    ) -> Result<bool, StoreError> {
        let client = self.relaxed_client().await?;
        let row = self
            .query_one_named(
                &client,
                &ANSWER_DELIVERY,
                &[
                    ("message_id", &message_id),
                    ("member_id", &member.id),
                    ("member_epoch", &member.epoch),
                    ("answer", answer as Param<'_>),
                    ("channel", &self.listener.channel),
                ],
            )
            .await?;
        let updated: i64 = row.try_get(0).map_err(self.err())?;
        Ok(updated == 1)
    }

    async fn take_answer(&self, message_id: uuid::Uuid) -> Result<Option<Value>, StoreError> {
        let client = self.relaxed_client().await?;
        let row = self
            .query_opt_named(&client, &TAKE_ANSWER, &[("message_id", &message_id)])
            .await?;
        row.map(|row| row.try_get(0))
            .transpose()
            .map_err(self.err())
    }
}
