//! The write path: creating, appending (the one-statement fast path and the locked
//! fallback) and updating, with the SQL each one runs and the fencing condition.

use colloquy_core::{Conversation, ConversationId, Message, StatusKind};
use tokio_postgres::{error::SqlState, types::ToSql};

use super::rows::{encode_conversation, encode_messages, CONVERSATION_COLUMNS};
use crate::{
    batch::{check_append, check_create, check_state, check_update, check_write, plan_append},
    batch::{Existing, StoredState},
    AppendOutcome, StoreError,
};

use super::{int, rows, PostgresStore, Site};

/// The messages' insert; `$1` is the conversation (in the fast path, the updated row's id
/// stands in for it, so nothing is inserted when the update matched no row).
pub(super) const INSERT_MESSAGES: &str = "INSERT INTO messages \
     (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at) \
     SELECT m.id, $1, m.turn, m.source, m.target, m.kind, m.content, m.in_reply_to, m.sent_at";

/// The SQL of the writes, built once. The fast append: the conversation's conditional
/// update feeding the messages' insert, fenced, at the stored turn count `$25`.
pub(super) static FAST_APPEND: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH updated AS ({}), {} {INSERT_MESSAGES} FROM updated, {}",
        update_sql(26, &format!("AND turn_count = $25 {NOT_FENCED_26}")),
        record_change(28),
        unnest_messages(17),
    )
});

/// A CTE that records the write's state change (`$change`, `NULL` for none) for the row
/// `updated` returned: part of the write's own statement.
pub(super) fn record_change(change: usize) -> String {
    format!(
        "recorded AS (INSERT INTO state_changes (conversation_id, version, change) \
         SELECT updated.id, $15, ${change}::jsonb FROM updated WHERE ${change}::jsonb IS NOT NULL \
         ON CONFLICT DO NOTHING)"
    )
}

/// The fencing condition of a create: the writer is `$18` and `$19`.
pub(super) const FENCED_CREATE: &str =
    "WHERE NOT EXISTS (SELECT 1 FROM hubs WHERE id = $18::uuid AND epoch = $19::bigint AND fenced)";

/// The locked append's update (its conditions were checked under the row lock); the
/// writer is `$17` and `$18`.
pub(super) static LOCKED_UPDATE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| update_sql(17, ""));

/// The locked append's insert of the new messages.
pub(super) static LOCKED_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{INSERT_MESSAGES} FROM {}", unnest_messages(2)));

/// A state change without new turns: conditional and fenced, at the given turn count;
/// answers how many rows it updated.
pub(super) static UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH updated AS ({}), {} SELECT count(*) FROM updated",
        update_sql(17, &format!("AND turn_count = $7 {NOT_FENCED_17}")),
        record_change(19),
    )
});

/// The locked append's record of the state change (its row is locked and updated).
pub(super) const LOCKED_CHANGE: &str =
    "INSERT INTO state_changes (conversation_id, version, change) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// The messages as rows, from the eight column arrays numbered from `$first`.
pub(super) fn unnest_messages(first: usize) -> String {
    let n: Vec<String> = (first..first + 8).map(|i| format!("${i}")).collect();
    format!(
        "unnest({}::uuid[], {}::bigint[], {}::text[], {}::text[], {}::text[], {}::json[], \
         {}::uuid[], {}::bigint[]) AS m (id, turn, source, target, kind, content, in_reply_to, sent_at)",
        n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]
    )
}

/// The fencing condition of a write, on the writer's member id and epoch as `$26` and
/// `$27` (the fast append) or `$17` and `$18` (the update): `NULL`s (no member) never match.
pub(super) const NOT_FENCED_26: &str =
    "AND NOT EXISTS (SELECT 1 FROM hubs WHERE id = $26 AND epoch = $27 AND fenced)";
pub(super) const NOT_FENCED_17: &str =
    "AND NOT EXISTS (SELECT 1 FROM hubs WHERE id = $17 AND epoch = $18 AND fenced)";

/// The conditional update of a conversation row from `$1`..`$16` (in
/// [`CONVERSATION_COLUMNS`] order), recording the writer (member id and epoch, parameters
/// `$writer` and the next one): only from the stored version (the given one minus one),
/// never once ended; `extra` adds conditions.
pub(super) fn update_sql(writer: usize, extra: &str) -> String {
    let epoch = writer + 1;
    format!(
        "UPDATE conversations SET status = $2, failure_reason = $3, phase = $4, intent = $5, \
         participants = $6, turn_count = $7, started_at = $8, last_activity = $9, \
         ended_at = $10, idle_timeout_ms = $11, max_turns = $12, context = $13, \
         metadata = $14, version = $15, busy_until = $16, \
         written_by_id = ${writer}, written_by_epoch = ${epoch} \
         WHERE id = $1 AND version = $15::bigint - 1 \
         AND status NOT IN ('completed', 'timed_out', 'failed') {extra} RETURNING id"
    )
}

/// The stored version, status and turn count of `id` (`lock`: `"FOR UPDATE"` inside a
/// transaction, or `""`); `NotFound` if there is no such conversation.
pub(super) async fn stored_state<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    site: &Site,
    id: ConversationId,
    lock: &str,
) -> Result<StoredState, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT version, status, turn_count FROM conversations WHERE id = $1 {lock}"),
            &[&id.as_uuid()],
        )
        .await
        .map_err(|e| site.err(e))?
        .ok_or(StoreError::NotFound { conversation: id })?;
    let corrupt = |detail: String| StoreError::Corrupt {
        location: format!("conversation {id}"),
        detail,
    };
    let version: i64 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
    let status: &str = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
    let turns: i64 = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
    Ok(StoredState {
        version: u64::try_from(version)
            .map_err(|_| corrupt(format!("negative version {version}")))?,
        status: status
            .parse::<StatusKind>()
            .map_err(|e| corrupt(format!("bad status {status:?}: {e}")))?,
        turns: u64::try_from(turns).map_err(|_| corrupt(format!("negative turn count {turns}")))?,
    })
}

impl PostgresStore {
    /// Creates `conversation` (see [`ConversationStore::create`]).
    pub(super) async fn create_once(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        check_create(conversation)?;
        let state = encode_conversation(conversation)?;
        let client = self.client().await?;
        // Fenced like every write: a member the others fenced creates nothing (the values
        // are cast to the columns' types, which a SELECT does not infer as VALUES does).
        let statement = client
            .prepare_cached(&format!(
                "WITH updated AS (INSERT INTO conversations ({CONVERSATION_COLUMNS}) \
                 SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text[], \
                 $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint, $12::bigint, \
                 $13::jsonb, $14::jsonb, $15::bigint, $16::bigint {FENCED_CREATE} \
                 ON CONFLICT (id) DO NOTHING RETURNING id), {} SELECT count(*) FROM updated",
                record_change(17)
            ))
            .await
            .map_err(self.err())?;
        let (writer_id, writer_epoch) = self.writer();
        let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
        values.push(&state.change);
        values.push(&writer_id);
        values.push(&writer_epoch);
        let inserted: i64 = client
            .query_one(&statement, &values)
            .await
            .map_err(self.err())?
            .try_get(0)
            .map_err(self.err())?;
        if inserted == 0 {
            self.refuse_if_fenced(&**client).await?;
            return Err(StoreError::AlreadyExists {
                conversation: conversation.id(),
            });
        }
        Ok(())
    }

    /// Updates `conversation` (see [`ConversationStore::update`]).
    pub(super) async fn update_once(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        check_state(conversation)?;
        let id = conversation.id();
        let state = encode_conversation(conversation)?;
        let client = self.client().await?;
        let statement = client
            .prepare_cached(UPDATE.as_str())
            .await
            .map_err(self.err())?;
        let (writer_id, writer_epoch) = self.writer();
        let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
        values.push(&writer_id);
        values.push(&writer_epoch);
        values.push(&state.change);
        let updated: i64 = client
            .query_one(&statement, &values)
            .await
            .map_err(self.err())?
            .try_get(0)
            .map_err(self.err())?;
        if updated == 1 {
            return Ok(());
        }
        // Refused: say exactly why, with the rules every backend shares.
        self.refuse_if_fenced(&**client).await?;
        let stored = stored_state(&**client, &self.site, id, "").await?;
        check_update(id, conversation.turn_count(), stored.turns)?;
        check_write(id, conversation.version(), stored)?;
        Err(StoreError::Conflict {
            conversation: id,
            turn: stored.turns,
            reason: "another writer changed the conversation meanwhile; reload it and retry".into(),
        })
    }

    /// The slow path of an append: inside a transaction that locks the conversation row,
    /// decide with the shared rules which messages are new (a retry skips those already
    /// stored), then write them and the state.
    pub(super) async fn append_locked<M: std::borrow::Borrow<Message> + Sync>(
        &self,
        conversation: &Conversation,
        state: &rows::ConvParams,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        let id = conversation.id();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let stored = stored_state(&*tx, &self.site, id, "FOR UPDATE").await?;
        self.refuse_if_fenced(&*tx).await?;
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.borrow().id.as_uuid()).collect();
        let turns: Vec<i64> = messages
            .iter()
            .map(|m| i64::try_from(m.borrow().turn).unwrap_or(i64::MAX))
            .collect();
        // The two lookups go out together: tokio-postgres pipelines statements polled at
        // once on one connection, so they cost one round trip.
        let conversation_uuid = id.as_uuid();
        let by_id_params: [&(dyn ToSql + Sync); 1] = [&ids];
        let taken_params: [&(dyn ToSql + Sync); 2] = [&conversation_uuid, &turns];
        let (found, taken) = tokio::try_join!(
            tx.query(
                "SELECT id, conversation_id, turn FROM messages WHERE id = ANY($1)",
                &by_id_params,
            ),
            tx.query(
                "SELECT turn FROM messages WHERE conversation_id = $1 AND turn = ANY($2)",
                &taken_params,
            ),
        )
        .map_err(self.err())?;
        let by_id: std::collections::HashMap<uuid::Uuid, (uuid::Uuid, i64)> = found
            .iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(self.err())?;
        let taken: std::collections::HashSet<i64> = taken
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        let first_new = plan_append(
            id,
            messages,
            stored.turns,
            |m| (m.borrow().id, m.borrow().turn),
            |m| {
                let m = m.borrow();
                let turn = i64::try_from(m.turn).unwrap_or(i64::MAX);
                Ok(match by_id.get(&m.id.as_uuid()) {
                    Some((conv, stored_turn)) => Existing::SameId {
                        same_place: *conv == id.as_uuid() && *stored_turn == turn,
                    },
                    None if taken.contains(&turn) => Existing::TurnTaken,
                    None => Existing::New,
                })
            },
        )?;
        let new = &messages[first_new..];
        if !new.is_empty() {
            check_write(id, conversation.version(), stored)?;
            let columns = encode_messages(new)?;
            let (writer_id, writer_epoch) = self.writer();
            let mut update: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
            update.push(&writer_id);
            update.push(&writer_epoch);
            let written = tx
                .execute(LOCKED_UPDATE.as_str(), &update)
                .await
                .map_err(self.err())?;
            if written != 1 {
                return Err(StoreError::NotFound { conversation: id });
            }
            if let Some(change) = &state.change {
                let version = int(conversation.version());
                tx.execute(LOCKED_CHANGE, &[&state.id, &version, change])
                    .await
                    .map_err(self.err())?;
            }
            let mut values: Vec<&(dyn ToSql + Sync)> = vec![&state.id];
            values.extend_from_slice(&columns.values());
            tx.execute(LOCKED_INSERT.as_str(), &values)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(AppendOutcome {
            inserted: new.len(),
            duplicates: first_new,
        })
    }

    pub(super) async fn append_any<M: std::borrow::Borrow<Message> + Sync>(
        &self,
        conversation: &Conversation,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        self.refuse_if_closed()?;
        check_append(conversation, messages)?;
        let state = encode_conversation(conversation)?;
        let columns = encode_messages(messages)?;
        let first_turn = columns.turns.first().copied().unwrap_or(0);
        let previous_turns = first_turn.saturating_sub(1);
        let (writer_id, writer_epoch) = self.writer();
        // The common case in one statement: the state is the stored version plus one, the
        // messages continue the stored turns, and none of them is stored yet. Anything
        // else (no row updated, or a unique violation of a message id or turn) is decided
        // by the locked path, which reports exactly why.
        let fast = {
            let client = self.client().await?;
            let mut values: Vec<&(dyn ToSql + Sync)> = state.values().to_vec();
            values.extend_from_slice(&columns.values());
            values.push(&previous_turns);
            values.push(&writer_id);
            values.push(&writer_epoch);
            values.push(&state.change);
            let statement = client
                .prepare_cached(FAST_APPEND.as_str())
                .await
                .map_err(self.err())?;
            client.execute(&statement, &values).await
        };
        match fast {
            Ok(n) if n == messages.len() as u64 => Ok(AppendOutcome {
                inserted: messages.len(),
                duplicates: 0,
            }),
            Ok(_) => self.append_locked(conversation, &state, messages).await,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.append_locked(conversation, &state, messages).await
            }
            Err(e) => Err(self.site.err(e)),
        }
    }
}
