//! The reads and the maintenance: each run once (the trait's methods retry the reads on a
//! fresh connection), the range queries, the listing, analytics, pruning, module records.

use colloquy_core::{Conversation, ConversationId, Message, StatusKind};
use tokio_postgres::types::ToSql;

use super::rows::{
    decode_conversation, decode_message, decode_module, CONVERSATION_COLUMNS, MESSAGE_COLUMNS,
    MODULE_COLUMNS,
};
use crate::{
    Analytics, ConversationPage, ListFilter, MessageRange, ModuleActivity, ModuleRecord,
    StatusCounts, StoreError, TimeRange,
};

use super::{int, PostgresStore};

/// The reads and the maintenance writes, each run once; the trait's methods (in `mod.rs`)
/// retry the reads.
impl PostgresStore {
    /// Runs a read, and once more on a fresh connection if the first one died under it
    /// (a read has no effect, so repeating it is always safe).
    pub(super) async fn reading<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match read().await {
            Err(StoreError::Unavailable { .. }) => read().await,
            outcome => outcome,
        }
    }

    pub(super) async fn conversation_once(
        &self,
        id: ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
            ))
            .await
            .map_err(self.err())?;
        client
            .query_opt(&statement, &[&id.as_uuid()])
            .await
            .map_err(self.err())?
            .map(|row| decode_conversation(&row))
            .transpose()
    }

    pub(super) async fn state_changes_once(
        &self,
        id: ConversationId,
    ) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
        let client = self.client().await?;
        let uuid = id.as_uuid();
        // The conversation's row comes along, so that none is told from "no changes".
        let rows = client
            .query(
                "SELECT s.change FROM conversations c \
                 LEFT JOIN state_changes s ON s.conversation_id = c.id \
                 WHERE c.id = $1 ORDER BY s.version",
                &[&uuid],
            )
            .await
            .map_err(self.err())?;
        if rows.is_empty() {
            return Err(StoreError::NotFound { conversation: id });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let change: Option<serde_json::Value> = row.try_get(0).map_err(self.err())?;
            if let Some(change) = change {
                out.push(
                    serde_json::from_value(change).map_err(|e| StoreError::Corrupt {
                        location: format!("a state change of conversation {id}"),
                        detail: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }

    pub(super) async fn messages_once(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError> {
        let client = self.client().await?;
        let base = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1");
        let uuid = id.as_uuid();
        let (sql, bounds): (String, Vec<i64>) = match range {
            MessageRange::All => (format!("{base} ORDER BY turn"), vec![]),
            MessageRange::After(turn) => (
                format!("{base} AND turn > $2 ORDER BY turn"),
                vec![int(turn)],
            ),
            MessageRange::Last(n) => (
                format!("SELECT * FROM ({base} ORDER BY turn DESC LIMIT $2) AS last ORDER BY turn"),
                vec![int(n)],
            ),
            MessageRange::Turns { first, last } => (
                format!("{base} AND turn BETWEEN $2 AND $3 ORDER BY turn"),
                vec![int(first), int(last)],
            ),
        };
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&uuid];
        values.extend(bounds.iter().map(|b| b as &(dyn ToSql + Sync)));
        let statement = client.prepare_cached(&sql).await.map_err(self.err())?;
        let rows = client
            .query(&statement, &values)
            .await
            .map_err(self.err())?;
        let out = rows
            .iter()
            .map(decode_message)
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            let exists = client
                .query_opt("SELECT 1 FROM conversations WHERE id = $1", &[&uuid])
                .await
                .map_err(self.err())?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound { conversation: id });
            }
        }
        Ok(out)
    }

    pub(super) async fn list_once(
        &self,
        filter: &ListFilter,
    ) -> Result<ConversationPage, StoreError> {
        let limit = filter.effective_limit();
        let mut sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE true");
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(status) = filter.status {
            values.push(Box::new(status.as_str()));
            sql.push_str(&format!(" AND status = ${}", values.len()));
        }
        if let Some(module) = &filter.participant {
            values.push(Box::new(vec![module.as_str().to_owned()]));
            sql.push_str(&format!(" AND participants @> ${}", values.len()));
        }
        push_range(&mut sql, &mut values, "started_at", filter.started);
        if let Some(cursor) = filter.after {
            values.push(Box::new(cursor.started_at.as_millis_i64()));
            let t = values.len();
            values.push(Box::new(cursor.id.as_uuid()));
            sql.push_str(&format!(
                " AND (started_at, id) < (${t}, ${})",
                values.len()
            ));
        }
        values.push(Box::new(int(limit as u64 + 1)));
        sql.push_str(&format!(
            " ORDER BY started_at DESC, id DESC LIMIT ${}",
            values.len()
        ));
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(self.err())?;
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&statement, &params)
            .await
            .map_err(self.err())?;
        ConversationPage::from_candidates(limit, rows.iter().map(decode_conversation))
    }

    pub(super) async fn count_by_status_once(&self) -> Result<StatusCounts, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT status, count(*) FROM conversations GROUP BY status")
            .await
            .map_err(self.err())?;
        let mut out = StatusCounts::default();
        for row in client.query(&statement, &[]).await.map_err(self.err())? {
            let status: &str = row.try_get(0).map_err(self.err())?;
            out.add_stored(status, row.try_get(1).map_err(self.err())?)?;
        }
        Ok(out)
    }

    pub(super) async fn analytics_once(&self, range: TimeRange) -> Result<Analytics, StoreError> {
        let mut client = self.client().await?;
        // One snapshot for both statements, so the totals and the per-module counts agree.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err())?;
        let mut where_sql = String::from(" WHERE true");
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        push_range(&mut where_sql, &mut values, "started_at", range);
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let totals = tx
            .query_one(
                &format!(
                    "SELECT count(*), \
                     count(*) FILTER (WHERE status = 'active'), \
                     count(*) FILTER (WHERE status = 'paused'), \
                     count(*) FILTER (WHERE status = 'completed'), \
                     count(*) FILTER (WHERE status = 'timed_out'), \
                     count(*) FILTER (WHERE status = 'failed'), \
                     coalesce(sum(turn_count), 0)::bigint, \
                     coalesce(sum(greatest(coalesce(ended_at, last_activity) - started_at, 0)), 0)::bigint \
                     FROM conversations{where_sql}"
                ),
                &params,
            )
            .await
            .map_err(self.err())?;
        let get = |i: usize| -> Result<u64, StoreError> {
            let n: i64 = totals.try_get(i).map_err(self.err())?;
            Ok(n.max(0) as u64)
        };
        let mut out = Analytics {
            conversations: get(0)?,
            total_turns: get(6)?,
            total_duration_ms: get(7)?,
            ..Analytics::default()
        };
        for (i, status) in [
            StatusKind::Active,
            StatusKind::Paused,
            StatusKind::Completed,
            StatusKind::TimedOut,
            StatusKind::Failed,
        ]
        .into_iter()
        .enumerate()
        {
            out.by_status.add(status, get(i + 1)?);
        }
        let rows = tx
            .query(
                &format!(
                    // A module took part if it is a participant now or sent any turn
                    // (a transfer removes it from the participants, not from what it did);
                    // only conversations whose participants changed after they opened can
                    // have such a sender, so only their messages are read.
                    "SELECT module COLLATE \"C\" AS module, \
                     count(*) FILTER (WHERE initiated), count(*) FROM ( \
                       SELECT module, conversation_id, bool_or(initiated) AS initiated FROM ( \
                         SELECT p.module, id AS conversation_id, p.position = 1 AS initiated \
                         FROM conversations, unnest(participants) WITH ORDINALITY AS p (module, position)\
                         {where_sql} \
                         UNION ALL SELECT m.source, m.conversation_id, false \
                         FROM (SELECT DISTINCT conversation_id FROM state_changes \
                               WHERE version > 0 AND change ? 'participants') AS moved \
                         JOIN messages m ON m.conversation_id = moved.conversation_id \
                         JOIN conversations ON conversations.id = m.conversation_id\
                         {where_sql}) AS took_part GROUP BY 1, 2) AS per_conversation \
                     GROUP BY 1 ORDER BY 1"
                ),
                &params,
            )
            .await
            .map_err(self.err())?;
        for row in rows {
            let name: String = row.try_get(0).map_err(self.err())?;
            let module =
                name.parse()
                    .map_err(|e: colloquy_core::CoreError| StoreError::Corrupt {
                        location: format!("participants of module {name:?}"),
                        detail: e.to_string(),
                    })?;
            let initiated: i64 = row.try_get(1).map_err(self.err())?;
            let participated: i64 = row.try_get(2).map_err(self.err())?;
            out.modules.push(ModuleActivity {
                module,
                initiated: initiated.max(0) as u64,
                participated: participated.max(0) as u64,
            });
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    pub(super) async fn modules_once(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {MODULE_COLUMNS} FROM modules ORDER BY name"),
                &[],
            )
            .await
            .map_err(self.err())?;
        rows.iter().map(decode_module).collect()
    }
}

pub(super) fn push_range(
    sql: &mut String,
    values: &mut Vec<Box<dyn ToSql + Sync + Send>>,
    column: &str,
    range: TimeRange,
) {
    if let Some(from) = range.from {
        values.push(Box::new(from.as_millis_i64()));
        sql.push_str(&format!(" AND {column} >= ${}", values.len()));
    }
    if let Some(until) = range.until {
        values.push(Box::new(until.as_millis_i64()));
        sql.push_str(&format!(" AND {column} < ${}", values.len()));
    }
}
