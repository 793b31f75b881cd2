//! The reads, each run once (the trait's methods retry them on a fresh connection): the
//! range queries and the listing (their SQL shared with SQLite, `crate::queries`),
//! analytics, module records.

use colloquy_core::{Conversation, ConversationId, Message, ModuleName};
use tokio_postgres::types::ToSql;

use super::rows::{
    decode_conversation, decode_message, decode_module, CONVERSATION_COLUMNS, MODULE_COLUMNS,
};
use crate::{
    queries::{self, Dialect, Query, QueryValue},
    Analytics, ConversationPage, ListFilter, MessageRange, ModuleRecord, StatusCounts, StoreError,
    TimeRange,
};

use super::PostgresStore;

/// The reads, each run once; the trait's methods (in `mod.rs`) retry them.
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
        let query = queries::messages::<Postgres>(id, range);
        let rows = self.query_shared(&client, &query).await?;
        let out = rows
            .iter()
            .map(decode_message)
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM conversations WHERE id = $1",
                    &[&id.as_uuid()],
                )
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
        let client = self.client().await?;
        let rows = self
            .query_shared(&client, &queries::list::<Postgres>(filter))
            .await?;
        ConversationPage::from_candidates(
            filter.effective_limit(),
            rows.iter().map(decode_conversation),
        )
    }

    /// Runs a shared query ([`queries`]), its values bound as PostgreSQL's types.
    async fn query_shared(
        &self,
        client: &deadpool_postgres::Object,
        query: &Query,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = client
            .prepare_cached(&query.sql)
            .await
            .map_err(self.err())?;
        let values = values(&query.values);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
        client.query(&statement, &params).await.map_err(self.err())
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
        let mut range_sql = Query {
            sql: " WHERE true".to_owned(),
            values: Vec::new(),
        };
        range_sql.time_range::<Postgres>("started_at", range);
        let where_sql = range_sql.sql;
        let values = values(&range_sql.values);
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as _).collect();
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
        let mut counts = [0i64; 8];
        for (i, count) in counts.iter_mut().enumerate() {
            *count = totals.try_get(i).map_err(self.err())?;
        }
        let mut out = queries::analytics_totals(counts);
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
            out.modules.push(queries::module_activity(
                &name,
                row.try_get(1).map_err(self.err())?,
                row.try_get(2).map_err(self.err())?,
            )?);
        }
        tx.commit().await.map_err(self.err())?;
        Ok(out)
    }

    pub(super) async fn exchanges_once(
        &self,
        range: TimeRange,
    ) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
        let client = self.client().await?;
        let mut query = Query {
            sql: crate::exchanges::exchanges_sql(),
            values: Vec::new(),
        };
        query.time_range::<Postgres>("q.sent_at", range);
        query.sql.push_str(crate::exchanges::EXCHANGES_GROUP);
        let rows = self.query_shared(&client, &query).await?;
        crate::exchanges::fold_rows(rows.iter().map(|row| {
            Ok((
                row.try_get(0).map_err(self.err())?,
                row.try_get(1).map_err(self.err())?,
                row.try_get(2).map_err(self.err())?,
            ))
        }))
    }

    pub(super) async fn search_once(
        &self,
        search: &crate::TextSearch,
    ) -> Result<Vec<crate::SearchHit>, StoreError> {
        let Some(needle) = search.needle() else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let mut query = Query {
            sql: "SELECT conversation_id, turn, sent_at FROM messages \
                  WHERE strpos(lower(content::text), $1) > 0"
                .to_owned(),
            values: vec![QueryValue::Text(needle)],
        };
        if let Some(participant) = &search.participant {
            let has = Postgres::has_participant(&mut query, participant);
            query.sql.push_str(&format!(
                " AND conversation_id IN (SELECT id FROM conversations WHERE {has})"
            ));
        }
        let limit = query.bind::<Postgres>(QueryValue::Int(
            i64::try_from(search.effective_limit()).unwrap_or(500),
        ));
        query.sql.push_str(&format!(
            " ORDER BY sent_at DESC, conversation_id DESC, turn DESC LIMIT {limit}"
        ));
        let rows = self.query_shared(&client, &query).await?;
        rows.iter()
            .map(|row| {
                let id: uuid::Uuid = row.try_get(0).map_err(self.err())?;
                let turn: i64 = row.try_get(1).map_err(self.err())?;
                let sent_at: i64 = row.try_get(2).map_err(self.err())?;
                let corrupt = |detail: String| StoreError::Corrupt {
                    location: format!("message {id} turn {turn}"),
                    detail,
                };
                Ok(crate::SearchHit {
                    conversation: colloquy_core::ConversationId::from_uuid(id)
                        .map_err(|e| corrupt(e.to_string()))?,
                    turn: u64::try_from(turn).map_err(|_| corrupt("negative turn".into()))?,
                    sent_at: colloquy_core::Timestamp::from_millis(
                        u64::try_from(sent_at).map_err(|_| corrupt("negative time".into()))?,
                    ),
                })
            })
            .collect()
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

/// PostgreSQL's side of the shared queries: `$n` placeholders, participants as a `text[]`
/// column, keyset order as a row comparison (which its planner starts the index scan at).
struct Postgres;

impl Dialect for Postgres {
    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn has_participant(query: &mut Query, module: &ModuleName) -> String {
        let names = query.bind::<Self>(QueryValue::Names(vec![module.as_str().to_owned()]));
        format!("participants @> {names}")
    }

    fn before_cursor(started_at: &str, id: &str) -> String {
        format!("(started_at, id) < ({started_at}, {id})")
    }
}

/// The shared queries' values as PostgreSQL's types.
fn values(values: &[QueryValue]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    values
        .iter()
        .map(|value| -> Box<dyn ToSql + Sync + Send> {
            match value {
                QueryValue::Int(n) => Box::new(*n),
                QueryValue::Text(text) => Box::new(text.clone()),
                QueryValue::Id(id) => Box::new(*id),
                QueryValue::Names(names) => Box::new(names.clone()),
            }
        })
        .collect()
}
