//! [`Membership`] on PostgreSQL: the `hubs` table, judged on the server's clock.

use std::time::Duration;

use async_trait::async_trait;
use colloquy_core::{ConversationId, ModuleInfo, Timestamp};
use serde_json::Value;

use super::PostgresStore;
use crate::{Claims, Member, MemberRecord, Members, QueuedTurn, Signal, StoreError, TurnQueue};

/// Fenced rows older than this are deleted (the table keeps recent history only).
const FORGET_AFTER_SECS: f64 = 86_400.0;

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
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "INSERT INTO hubs (id, epoch, name, modules, address) \
                 VALUES (gen_random_uuid(), nextval('hub_epochs'), $1, $2, $3) RETURNING id, epoch",
                    )
                    .await
                    .map_err(self.err())?,
                &[&name, &modules, &address],
            )
            .await
            .map_err(self.err())?;
        Ok(Member {
            id: row.try_get(0).map_err(self.err())?,
            epoch: row.try_get(1).map_err(self.err())?,
        })
    }

    async fn heartbeat(&self, member: Member, modules: &[ModuleInfo]) -> Result<bool, StoreError> {
        let modules = modules_json(modules)?;
        let client = self.client().await?;
        let updated = client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE hubs SET heartbeat_at = now(), modules = $3 \
                 WHERE id = $1 AND epoch = $2 AND NOT fenced",
                    )
                    .await
                    .map_err(self.err())?,
                &[&member.id, &member.epoch, &modules],
            )
            .await
            .map_err(self.err())?;
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
        client
            .execute(
                &client
                    .prepare_cached(
                        // A member the others fenced already was lost, whatever it says later.
                        "UPDATE hubs SET fenced = true, left_at = now() \
                         WHERE id = $1 AND epoch = $2 AND NOT fenced",
                    )
                    .await
                    .map_err(self.err())?,
                &[&member.id, &member.epoch],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn fence_silent(&self, timeout: Duration) -> Result<Vec<Member>, StoreError> {
        let client = self.client().await?;
        // One statement, one round trip per heartbeat: the fencing, and the housekeeping of
        // long-fenced members and of answers nobody took (the sender died and no takeover
        // asked again; kept for as long as a takeover may still ask). The three touch
        // disjoint rows (the fenced rows deleted were fenced long before this statement).
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "WITH fenced AS (UPDATE hubs SET fenced = true \
                 WHERE NOT fenced AND heartbeat_at < now() - make_interval(secs => $1) \
                 RETURNING id, epoch), \
                 forgotten AS (DELETE FROM hubs \
                 WHERE fenced AND heartbeat_at < now() - make_interval(secs => $2)), \
                 expired AS (DELETE FROM deliveries \
                 WHERE deadline_ms < (extract(epoch FROM now()) * 1000)::bigint - ($2 * 1000)::bigint) \
                 SELECT id, epoch FROM fenced",
                    )
                    .await
                    .map_err(self.err())?,
                &[&timeout.as_secs_f64(), &FORGET_AFTER_SECS],
            )
            .await
            .map_err(self.err())?;
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
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id, epoch, name, \
                   (extract(epoch FROM joined_at) * 1000)::bigint, \
                   (extract(epoch FROM heartbeat_at) * 1000)::bigint, \
                   NOT fenced AND heartbeat_at >= now() - make_interval(secs => $1), \
                   fenced, modules, left_at IS NOT NULL, address \
                 FROM hubs WHERE NOT fenced OR heartbeat_at >= now() - make_interval(secs => $2) \
                 ORDER BY joined_at, id",
                    )
                    .await
                    .map_err(self.err())?,
                &[&timeout.as_secs_f64(), &recent.as_secs_f64()],
            )
            .await
            .map_err(self.err())?;
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
}

#[async_trait]
impl Claims for PostgresStore {
    async fn held_by_other(&self, conversation: ConversationId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT c.written_by_id, c.written_by_epoch, h.fenced FROM conversations c \
                 LEFT JOIN hubs h ON h.id = c.written_by_id AND h.epoch = c.written_by_epoch \
                 WHERE c.id = $1",
                    )
                    .await
                    .map_err(self.err())?,
                &[&conversation.as_uuid()],
            )
            .await
            .map_err(self.err())?;
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
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "WITH orphans AS ( \
                   SELECT c.id FROM conversations c \
                   LEFT JOIN hubs h ON h.id = c.written_by_id AND h.epoch = c.written_by_epoch \
                   WHERE c.busy_until IS NOT NULL AND c.ended_at IS NULL \
                     AND c.written_by_id IS NOT NULL AND h.fenced IS NOT FALSE \
                   LIMIT $3 FOR UPDATE OF c SKIP LOCKED) \
                 UPDATE conversations SET written_by_id = $1, written_by_epoch = $2 \
                 FROM orphans WHERE conversations.id = orphans.id \
                   AND EXISTS (SELECT 1 FROM hubs WHERE id = $1 AND epoch = $2 AND NOT fenced) \
                 RETURNING conversations.id",
                    )
                    .await
                    .map_err(self.err())?,
                &[&member.id, &member.epoch, &limit],
            )
            .await
            .map_err(self.err())?;
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
        // A request delivered again (after a takeover) keeps its row: its answer, if any,
        // stands. Queued and announced in one statement (the notification is sent at
        // commit), so the hosting hub need not wait for its next poll.
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "WITH queued AS (INSERT INTO deliveries (message_id, module, turn, deadline_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING RETURNING 1) \
                 SELECT (SELECT count(*) FROM queued), pg_notify($5, 'd:' || $2)",
                    )
                    .await
                    .map_err(self.err())?,
                &[
                    &delivery.message_id,
                    &delivery.module,
                    &delivery.turn,
                    &deadline,
                    &self.listener.channel,
                ],
            )
            .await
            .map_err(self.err())?;
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
        let rows = client
            .query(
                &client.prepare_cached("WITH claimable AS ( \
                   SELECT d.message_id FROM deliveries d \
                   LEFT JOIN hubs h ON h.id = d.claimed_id AND h.epoch = d.claimed_epoch \
                   WHERE d.answer IS NULL AND d.module = ANY($3) \
                     AND (d.claimed_id IS NULL OR h.fenced IS NOT FALSE) \
                   ORDER BY d.created_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE deliveries SET claimed_id = $1, claimed_epoch = $2 \
                 FROM claimable WHERE deliveries.message_id = claimable.message_id \
                 RETURNING deliveries.message_id, deliveries.module, deliveries.turn, deliveries.deadline_ms").await.map_err(self.err())?,
                &[&member.id, &member.epoch, &modules, &limit],
            )
            .await
            .map_err(self.err())?;
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
        // Recorded and announced in one statement.
        let row = client
            .query_one(
                &client.prepare_cached("WITH answered AS (UPDATE deliveries SET answer = $4 \
                 WHERE message_id = $1 AND claimed_id = $2 AND claimed_epoch = $3 AND answer IS NULL \
                 AND EXISTS (SELECT 1 FROM hubs WHERE id = $2 AND epoch = $3 AND NOT fenced) \
                 RETURNING 1) \
                 SELECT (SELECT count(*) FROM answered), pg_notify($5, 'a:' || $1::text)").await.map_err(self.err())?,
                &[&message_id, &member.id, &member.epoch, answer, &self.listener.channel],
            )
            .await
            .map_err(self.err())?;
        let updated: i64 = row.try_get(0).map_err(self.err())?;
        Ok(updated == 1)
    }

    async fn take_answer(&self, message_id: uuid::Uuid) -> Result<Option<Value>, StoreError> {
        let client = self.relaxed_client().await?;
        let row = client
            .query_opt(
                &client.prepare_cached("DELETE FROM deliveries WHERE message_id = $1 AND answer IS NOT NULL RETURNING answer").await.map_err(self.err())?,
                &[&message_id],
            )
            .await
            .map_err(self.err())?;
        row.map(|row| row.try_get(0))
            .transpose()
            .map_err(self.err())
    }
}
