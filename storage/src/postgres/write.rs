//! The write path: creating, appending (the one-statement fast path and the locked
//! fallback), updating, pruning and recording modules, with the SQL each one runs (its
//! parameters bound by name, `named.rs`) and the fencing condition, written once.

use colloquy_core::{Conversation, ConversationId, Message, ModuleInfo, StatusKind, Timestamp};
use tokio_postgres::error::SqlState;

use super::rows::{encode_conversation, encode_messages, encode_state, CONVERSATION_COLUMNS};
use crate::{
    batch::{check_append, check_create, check_state, check_update, check_write, plan_append},
    batch::{Existing, StoredState},
    AppendOutcome, StoreError,
};

use super::{
    named::{Named, Param},
    rows, PostgresStore, Server,
};

/// The messages' insert; `:id` is the conversation and `:writer_id`, `:writer_epoch` the
/// member writing them (in the fast path the insert reads `FROM updated`, so nothing is
/// inserted when the update matched no row).
const INSERT_MESSAGES: &str = "INSERT INTO messages \
     (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at, \
     written_by_id, written_by_epoch) \
     SELECT m.id, :id, m.turn, m.source, m.target, m.kind, m.content, m.in_reply_to, m.sent_at, \
     :writer_id::uuid, :writer_epoch::bigint";

/// The fencing condition, written once: the writer (`:writer_id`, `:writer_epoch`) is a
/// member the others fenced. `NULL`s (a store outside a cluster) never match. Every write
/// is refused under it (`AND NOT` / `WHERE NOT`), and a refused write asks it alone to say
/// why (`refuse_if_fenced`).
pub(super) const WRITER_FENCED: &str = "EXISTS (SELECT 1 FROM hubs \
     WHERE id = :writer_id::uuid AND epoch = :writer_epoch::bigint AND fenced)";

/// The fast append: the conversation's conditional, fenced update at the stored turn
/// count `:previous_turns`, feeding the messages' insert, with the state change recorded,
/// in one statement.
pub(super) static FAST_APPEND: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new(&format!(
        "WITH updated AS ({}), {RECORD_CHANGE} {INSERT_MESSAGES} FROM updated, {UNNEST_MESSAGES}",
        update_sql(&format!(
            "AND turn_count = :previous_turns AND NOT {WRITER_FENCED}"
        )),
    ))
});

/// A CTE that records the write's state change (`:change`, `NULL` for none) for the row
/// `updated` returned: part of the write's own statement.
const RECORD_CHANGE: &str =
    "recorded AS (INSERT INTO state_changes (conversation_id, version, change) \
     SELECT updated.id, :version, :change::jsonb FROM updated WHERE :change::jsonb IS NOT NULL \
     ON CONFLICT DO NOTHING)";

/// A create, fenced like every write: a member the others fenced creates nothing (the
/// values are cast to the columns' types, which a `SELECT` does not infer as `VALUES`
/// does).
pub(super) static CREATE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    let values = CONVERSATION_TYPES
        .iter()
        .map(|(column, kind)| format!(":{column}::{kind}"))
        .collect::<Vec<_>>()
        .join(", ");
    Named::new(&format!(
        "WITH updated AS (INSERT INTO conversations ({CONVERSATION_COLUMNS}) \
         SELECT {values} WHERE NOT {WRITER_FENCED} \
         ON CONFLICT (id) DO NOTHING RETURNING id), {RECORD_CHANGE} SELECT count(*) FROM updated"
    ))
});

/// The conversation columns with their types, in [`CONVERSATION_COLUMNS`] order; each
/// column's parameter has the column's name.
const CONVERSATION_TYPES: [(&str, &str); 16] = [
    ("id", "uuid"),
    ("status", "text"),
    ("failure_reason", "text"),
    ("phase", "text"),
    ("intent", "text"),
    ("participants", "text[]"),
    ("turn_count", "bigint"),
    ("started_at", "bigint"),
    ("last_activity", "bigint"),
    ("ended_at", "bigint"),
    ("idle_timeout_ms", "bigint"),
    ("max_turns", "bigint"),
    ("context", "jsonb"),
    ("metadata", "jsonb"),
    ("version", "bigint"),
    ("busy_until", "bigint"),
];

/// The locked append's update (its conditions were checked under the row lock).
pub(super) static LOCKED_UPDATE: std::sync::LazyLock<Named> =
    std::sync::LazyLock::new(|| Named::new(&update_sql("")));

/// The locked append's insert of the new messages.
pub(super) static LOCKED_INSERT: std::sync::LazyLock<Named> =
    std::sync::LazyLock::new(|| Named::new(&format!("{INSERT_MESSAGES} FROM {UNNEST_MESSAGES}")));

/// A state change without new turns: conditional and fenced, at the stored turn count
/// (the state's own, `:turn_count`); answers how many rows it updated.
pub(super) static UPDATE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new(&format!(
        "WITH updated AS ({}), {RECORD_CHANGE} SELECT count(*) FROM updated",
        update_sql(&format!(
            "AND turn_count = :turn_count AND NOT {WRITER_FENCED}"
        )),
    ))
});

/// The locked append's record of the state change (its row is locked and updated).
pub(super) static LOCKED_CHANGE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new(
        "INSERT INTO state_changes (conversation_id, version, change) \
         VALUES (:id, :version, :change) ON CONFLICT DO NOTHING",
    )
});

/// The messages as rows, from the eight column arrays ([`MessageColumns::named`]).
///
/// [`MessageColumns::named`]: super::rows::MessageColumns::named
const UNNEST_MESSAGES: &str = "unnest(:message_ids::uuid[], :message_turns::bigint[], \
     :message_sources::text[], :message_targets::text[], :message_kinds::text[], \
     :message_contents::json[], :message_replies_to::uuid[], :message_sent_at::bigint[]) \
     AS m (id, turn, source, target, kind, content, in_reply_to, sent_at)";

/// Deletes one bounded batch of conversations ended before `:ended_before` (their
/// messages and state changes go with them); rows another session holds are left for the
/// next batch.
static PRUNE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new(
        "WITH doomed AS (SELECT id FROM conversations \
         WHERE ended_at IS NOT NULL AND ended_at < :ended_before \
         ORDER BY ended_at LIMIT 500 FOR UPDATE SKIP LOCKED) \
         DELETE FROM conversations c USING doomed WHERE c.id = doomed.id",
    )
});

/// Records a module's latest registration (not a conversation write: not fenced).
static RECORD_MODULE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new(
        "INSERT INTO modules (name, info, registered_at) VALUES (:name, :info, :registered_at) \
         ON CONFLICT (name) DO UPDATE SET info = excluded.info, \
         registered_at = excluded.registered_at",
    )
});

/// The conditional update of a conversation row from its named columns, recording the
/// writer (`:writer_id`, `:writer_epoch`): only from the stored version (the given one
/// minus one), never once ended; `extra` adds conditions. A `NULL` context keeps the stored
/// one (an append whose context is the one committed: the stored value, out of line when
/// large, is kept as it is instead of being parsed and written again).
fn update_sql(extra: &str) -> String {
    format!(
        "UPDATE conversations SET status = :status, failure_reason = :failure_reason, \
         phase = :phase, intent = :intent, participants = :participants, \
         turn_count = :turn_count, started_at = :started_at, last_activity = :last_activity, \
         ended_at = :ended_at, idle_timeout_ms = :idle_timeout_ms, max_turns = :max_turns, \
         context = COALESCE(:context::jsonb, context), metadata = :metadata, version = :version, \
         busy_until = :busy_until, written_by_id = :writer_id, written_by_epoch = :writer_epoch \
         WHERE id = :id AND version = :version::bigint - 1 \
         AND status NOT IN ('completed', 'timed_out', 'failed') {extra} RETURNING id"
    )
}

/// What a refused write reads to say why: the stored version, status and turn count.
static STORED_STATE: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new("SELECT version, status, turn_count FROM conversations WHERE id = :id")
});

/// The same, locking the row for the rest of the transaction (the locked append).
static STORED_STATE_LOCKED: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new("SELECT version, status, turn_count FROM conversations WHERE id = :id FOR UPDATE")
});

/// The locked append's lookups: which of the messages' ids are stored (and where), and
/// which of their turns are taken.
static STORED_IDS: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new("SELECT id, conversation_id, turn FROM messages WHERE id = ANY(:ids)")
});
static TAKEN_TURNS: std::sync::LazyLock<Named> = std::sync::LazyLock::new(|| {
    Named::new("SELECT turn FROM messages WHERE conversation_id = :id AND turn = ANY(:turns)")
});

/// Whether [`stored_state`] locks the row.
#[derive(Clone, Copy)]
pub(super) enum Lock {
    /// Inside the locked append's transaction: `FOR UPDATE`.
    Row,
    /// A plain read.
    None,
}

/// The stored version, status and turn count of `id`; `NotFound` if there is no such
/// conversation.
pub(super) async fn stored_state<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    server: &Server,
    id: ConversationId,
    lock: Lock,
) -> Result<StoredState, StoreError> {
    let statement = match lock {
        Lock::Row => &*STORED_STATE_LOCKED,
        Lock::None => &*STORED_STATE,
    };
    let uuid = id.as_uuid();
    let row = client
        .query_opt(statement.sql(), &statement.bind(&[("id", &uuid)])?)
        .await
        .map_err(|e| server.err(e))?
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
    /// Runs a create or an update of one conversation row (its columns, its state change and
    /// the writer, bound by name) and returns how many rows it wrote, with the connection
    /// for the reads that explain a refusal.
    async fn write_state(
        &self,
        statement: &Named,
        state: &rows::ConvParams,
    ) -> Result<(i64, deadpool_postgres::Object), StoreError> {
        let client = self.client().await?;
        let (writer_id, writer_epoch) = self.writer();
        let mut values = state.named().to_vec();
        values.extend([
            ("change", &state.change as Param<'_>),
            ("writer_id", &writer_id),
            ("writer_epoch", &writer_epoch),
        ]);
        let written: i64 = self
            .query_one_named(&client, statement, &values)
            .await?
            .try_get(0)
            .map_err(self.err())?;
        Ok((written, client))
    }

    /// Creates `conversation` (see [`ConversationStore::create`]).
    pub(super) async fn create_once(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        check_create(conversation)?;
        let state = encode_conversation(conversation)?;
        let (inserted, client) = self.write_state(&CREATE, &state).await?;
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
        let (updated, client) = self.write_state(&UPDATE, &state).await?;
        if updated == 1 {
            return Ok(());
        }
        // Refused: say exactly why, with the rules every backend shares.
        self.refuse_if_fenced(&**client).await?;
        let stored = stored_state(&**client, &self.server, id, Lock::None).await?;
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
        let stored = stored_state(&*tx, &self.server, id, Lock::Row).await?;
        self.refuse_if_fenced(&*tx).await?;
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| m.borrow().id.as_uuid()).collect();
        let turns: Vec<i64> = messages
            .iter()
            .map(|m| i64::try_from(m.borrow().turn).unwrap_or(i64::MAX))
            .collect();
        // The two lookups go out together: tokio-postgres pipelines statements polled at
        // once on one connection, so they cost one round trip.
        let conversation_uuid = id.as_uuid();
        let by_id_params = STORED_IDS.bind(&[("ids", &ids)])?;
        let taken_params = TAKEN_TURNS.bind(&[("id", &conversation_uuid), ("turns", &turns)])?;
        let (found, taken) = tokio::try_join!(
            tx.query(STORED_IDS.sql(), &by_id_params),
            tx.query(TAKEN_TURNS.sql(), &taken_params),
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
            let mut update = state.named().to_vec();
            update.extend([
                ("writer_id", &writer_id as Param<'_>),
                ("writer_epoch", &writer_epoch),
            ]);
            let written = tx
                .execute(LOCKED_UPDATE.sql(), &LOCKED_UPDATE.bind(&update)?)
                .await
                .map_err(self.err())?;
            if written != 1 {
                return Err(StoreError::NotFound { conversation: id });
            }
            let named = state.named();
            let of_state = |name: &str| named.iter().copied().find(|(n, _)| *n == name);
            if let Some(change) = &state.change {
                let values: Vec<(&str, Param<'_>)> = of_state("id")
                    .into_iter()
                    .chain(of_state("version"))
                    .chain([("change", change as Param<'_>)])
                    .collect();
                tx.execute(LOCKED_CHANGE.sql(), &LOCKED_CHANGE.bind(&values)?)
                    .await
                    .map_err(self.err())?;
            }
            let mut values: Vec<(&str, Param<'_>)> = of_state("id").into_iter().collect();
            values.extend(columns.named());
            values.extend([
                ("writer_id", &writer_id as Param<'_>),
                ("writer_epoch", &writer_epoch),
            ]);
            tx.execute(LOCKED_INSERT.sql(), &LOCKED_INSERT.bind(&values)?)
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
        let written = self.append_checked(conversation, messages).await;
        // A duplicate-only append (nothing inserted) wrote no state, so it proves nothing.
        match &written {
            Ok(outcome) if outcome.inserted == 0 => {}
            _ => self.contexts.note(conversation, &written),
        }
        written
    }

    /// The fast append, or the locked one when the fast one cannot decide.
    async fn append_checked<M: std::borrow::Borrow<Message> + Sync>(
        &self,
        conversation: &Conversation,
        messages: &[M],
    ) -> Result<AppendOutcome, StoreError> {
        let state = encode_state(conversation, !self.contexts.holds(conversation))?;
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
            let mut values = state.named().to_vec();
            values.extend(columns.named());
            values.extend([
                ("previous_turns", &previous_turns as Param<'_>),
                ("writer_id", &writer_id),
                ("writer_epoch", &writer_epoch),
                ("change", &state.change),
            ]);
            let values = FAST_APPEND.bind(&values)?;
            let statement = client
                .prepare_cached(FAST_APPEND.sql())
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
            Err(e) => Err(self.server.err(e)),
        }
    }

    pub(super) async fn prune_batches(&self, ended_before: Timestamp) -> Result<u64, StoreError> {
        self.refuse_if_closed()?;
        let client = self.client().await?;
        // In bounded batches, each its own short transaction, so a large prune never holds
        // many locks or one long transaction; rows another session holds are left for the
        // next batch (or the next prune).
        let before = ended_before.as_millis_i64();
        let (statement, params) = self
            .prepare_named(&client, &PRUNE, &[("ended_before", &before)])
            .await?;
        let mut total = 0;
        loop {
            let deleted = client
                .execute(&statement, &params)
                .await
                .map_err(self.err())?;
            total += deleted;
            if deleted == 0 {
                return Ok(total);
            }
        }
    }

    pub(super) async fn record_module_once(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.refuse_if_closed()?;
        let info = serde_json::to_value(module).map_err(|e| StoreError::InvalidInput {
            reason: format!("module info cannot be serialized: {e}"),
        })?;
        let client = self.client().await?;
        let (name, at) = (module.name.as_str(), registered_at.as_millis_i64());
        self.execute_named(
            &client,
            &RECORD_MODULE,
            &[("name", &name), ("info", &info), ("registered_at", &at)],
        )
        .await?;
        Ok(())
    }
}
