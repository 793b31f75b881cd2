//! The SQL of each write, mirroring `read.rs`: one type per operation, each with its own
//! typed output, run by the group transaction (`group.rs`) on the write connection.
//!
//! Every write checks everything it can (with reads) before its first write statement, so
//! a refused write (conflict, not found, ...) leaves the transaction as it was; a failure
//! after a write statement says so (`Failure::wrote`), and the group is rolled back.
//! Parameters are written by name in the SQL (`:turn`) and listed by name where they are
//! bound ([`bind!`]); every test build checks each name against the statement, so a
//! column-order slip fails a test instead of writing a value into the wrong column.

use colloquy_core::{ConversationId, MessageId};
use rusqlite::{Connection, OptionalExtension};

use super::{
    rows::{ConvRow, ModuleRow, MsgRow},
    Site,
};
use crate::{
    batch::{check_update, check_write, plan_append, Existing, StoredState},
    AppendOutcome, StoreError,
};

/// The values of a statement written with named parameters (`:turn`), listed by name in the
/// order the names first appear in its SQL (SQLite numbers named parameters that way).
/// Debug builds, and so every test, check each name against the statement: a value bound
/// to the wrong column fails loudly. Release builds bind by position and skip the by-name
/// lookups, which cost about 10% of a turn's instructions (rusqlite searches a map of names
/// for every parameter of every execution).
macro_rules! bind {
    ($stmt:expr, $($name:literal => $value:expr),+ $(,)?) => {{
        if cfg!(debug_assertions) {
            check_names(&$stmt, &[$($name),+]);
        }
        rusqlite::params![$($value),+]
    }};
}

/// Panics if `stmt`'s parameters are not exactly `names`, in order: a programming error in
/// this file that every test build catches (see [`bind!`]).
#[allow(clippy::panic)] // A wrong binding must stop the test run, never reach a row.
fn check_names(stmt: &rusqlite::Statement<'_>, names: &[&str]) {
    let found: Vec<Option<&str>> = (1..=stmt.parameter_count())
        .map(|i| stmt.parameter_name(i))
        .collect();
    let expected: Vec<Option<&str>> = names.iter().map(|n| Some(*n)).collect();
    if found != expected {
        panic!("SQL parameters {found:?} are bound as {expected:?} (a colloquy bug)");
    }
}

/// A write the group transaction can run: its SQL, and what it answers once committed.
pub(crate) trait Write: Send + 'static {
    /// What the caller gets back after the commit.
    type Output: Send + 'static;

    /// Runs the write's statements inside the open transaction.
    fn apply(&self, conn: &Connection, site: &Site) -> Result<Self::Output, Failure>;
}

/// A write that failed: `wrote` tells whether any write statement had run (and so whether
/// the transaction must be rolled back).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: StoreError,
    pub(crate) wrote: bool,
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            wrote: false,
        }
    }
}

/// `err` for reads and checks (nothing written yet), `dirty` once a write statement ran.
fn clean(site: &Site) -> impl Fn(rusqlite::Error) -> Failure + '_ {
    |e| Failure {
        error: site.err(e),
        wrote: false,
    }
}

fn dirty(site: &Site) -> impl Fn(rusqlite::Error) -> Failure + '_ {
    |e| Failure {
        error: site.err(e),
        wrote: true,
    }
}

/// A new conversation.
#[derive(Debug)]
pub(crate) struct Create(pub(crate) ConvRow);

impl Write for Create {
    type Output = ();

    fn apply(&self, conn: &Connection, site: &Site) -> Result<(), Failure> {
        let row = &self.0;
        let exists = conn
            .prepare_cached("SELECT 1 FROM conversations WHERE id = :id")
            .and_then(|mut s| {
                let values = bind!(s, ":id" => row.id);
                s.exists(values)
            })
            .map_err(clean(site))?;
        if exists {
            return Err(StoreError::AlreadyExists {
                conversation: row.id.parse().map_err(|_| invalid_id(&row.id))?,
            }
            .into());
        }
        insert_conversation(conn, row).map_err(dirty(site))?;
        write_participants(conn, row).map_err(dirty(site))?;
        record_change(conn, row).map_err(dirty(site))?;
        Ok(())
    }
}

/// Messages and the conversation's new state, atomically.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) conversation: ConversationId,
    pub(crate) row: ConvRow,
    pub(crate) messages: Vec<(MessageId, u64, MsgRow)>,
}

impl Write for Append {
    type Output = AppendOutcome;

    fn apply(&self, conn: &Connection, site: &Site) -> Result<AppendOutcome, Failure> {
        let Self {
            conversation,
            row,
            messages,
        } = self;
        let mut find_id = conn
            .prepare_cached("SELECT conversation_id, turn FROM messages WHERE id = :id")
            .map_err(clean(site))?;
        if let Some(outcome) = append_fast(conn, site, &mut find_id, row, messages)? {
            return Ok(outcome);
        }
        let (stored_state, stored_participants) = stored(conn, site, *conversation)?;
        let stored_turns = stored_state.turns;
        let mut find_turn = conn
            .prepare_cached(
                "SELECT 1 FROM messages WHERE conversation_id = :conversation AND turn = :turn",
            )
            .map_err(clean(site))?;
        let first_new = plan_append(
            *conversation,
            messages,
            stored_turns,
            |(id, turn, _)| (*id, *turn),
            |(_, turn, m)| {
                let found: Option<(String, i64)> = {
                    let values = bind!(find_id, ":id" => m.id);
                    find_id.query_row(values, |r| Ok((r.get(0)?, r.get(1)?)))
                }
                .optional()
                .map_err(|e| site.err(e))?;
                if let Some((conv, stored_turn)) = found {
                    return Ok(Existing::SameId {
                        same_place: conv == row.id && stored_turn == m.turn,
                    });
                }
                // Turns beyond the stored count cannot be taken; skip the lookup.
                if *turn > stored_turns {
                    return Ok(Existing::New);
                }
                let taken = {
                    let values = bind!(find_turn, ":conversation" => row.id, ":turn" => m.turn);
                    find_turn.exists(values)
                }
                .map_err(|e| site.err(e))?;
                Ok(if taken {
                    Existing::TurnTaken
                } else {
                    Existing::New
                })
            },
        )?;
        let new = &messages[first_new..];
        if !new.is_empty() {
            check_write(*conversation, version_of(row)?, stored_state)?;
            insert_messages(conn, &row.id, new).map_err(dirty(site))?;
            update_conversation(conn, row).map_err(dirty(site))?;
            if stored_participants != row.participants {
                write_participants(conn, row).map_err(dirty(site))?;
            }
            record_change(conn, row).map_err(dirty(site))?;
        }
        Ok(AppendOutcome {
            inserted: new.len(),
            duplicates: first_new,
        })
    }
}

/// A new state without new turns.
#[derive(Debug)]
pub(crate) struct Update {
    pub(crate) conversation: ConversationId,
    pub(crate) turn_count: u64,
    pub(crate) row: ConvRow,
}

impl Write for Update {
    type Output = ();

    fn apply(&self, conn: &Connection, site: &Site) -> Result<(), Failure> {
        let (stored_state, stored_participants) = stored(conn, site, self.conversation)?;
        check_update(self.conversation, self.turn_count, stored_state.turns)?;
        check_write(self.conversation, version_of(&self.row)?, stored_state)?;
        update_conversation(conn, &self.row).map_err(dirty(site))?;
        if stored_participants != self.row.participants {
            write_participants(conn, &self.row).map_err(dirty(site))?;
        }
        record_change(conn, &self.row).map_err(dirty(site))?;
        Ok(())
    }
}

/// Deletes ended conversations that ended before a time; answers how many.
#[derive(Debug)]
pub(crate) struct Prune {
    pub(crate) ended_before: i64,
}

impl Write for Prune {
    type Output = u64;

    fn apply(&self, conn: &Connection, site: &Site) -> Result<u64, Failure> {
        // Deleting a conversation cascades to its messages and participants.
        let n = conn
            .prepare_cached(
                "DELETE FROM conversations WHERE ended_at IS NOT NULL AND ended_at < :before \
                 AND status IN ('completed', 'timed_out', 'failed')",
            )
            .and_then(|mut s| {
                let values = bind!(s, ":before" => self.ended_before);
                s.execute(values)
            })
            .map_err(dirty(site))?;
        Ok(n as u64)
    }
}

/// Records (or replaces) a module registration.
#[derive(Debug)]
pub(crate) struct RecordModule(pub(crate) ModuleRow);

impl Write for RecordModule {
    type Output = ();

    fn apply(&self, conn: &Connection, site: &Site) -> Result<(), Failure> {
        let m = &self.0;
        conn.prepare_cached(
            "INSERT INTO modules (name, info, registered_at) VALUES (:name, :info, :registered_at) \
             ON CONFLICT (name) DO UPDATE SET info = excluded.info, registered_at = excluded.registered_at",
        )
        .and_then(|mut s| {
            let values = bind!(s,
                ":name" => m.name,
                ":info" => m.info,
                ":registered_at" => m.registered_at,
            );
            s.execute(values)
        })
        .map_err(dirty(site))?;
        Ok(())
    }
}

/// The append every routed turn makes: new message ids that continue the stored turns,
/// participants unchanged. Checks the ids (reads), then one conditional UPDATE proves the
/// stored turn count, version and participants; anything else returns `None` with nothing
/// written, and the caller's full checks find the precise answer (duplicate, conflict,
/// transfer).
fn append_fast(
    conn: &Connection,
    site: &Site,
    find_id: &mut rusqlite::CachedStatement<'_>,
    row: &ConvRow,
    messages: &[(MessageId, u64, MsgRow)],
) -> Result<Option<AppendOutcome>, Failure> {
    for (_, _, m) in messages {
        if {
            let values = bind!(find_id, ":id" => m.id);
            find_id.exists(values)
        }
        .map_err(clean(site))?
        {
            return Ok(None);
        }
    }
    let Some(previous) = messages
        .first()
        .and_then(|(_, turn, _)| turn.checked_sub(1))
    else {
        return Ok(None);
    };
    let previous = i64::try_from(previous).unwrap_or(i64::MAX);
    let advanced = conn
        .prepare_cached(
            // Only columns no index covers are set, so no index is touched; everything else
            // must be unchanged for the fast path to apply. `version = :version - 1` is the
            // compare-and-set (the state was computed from the stored one); `ended_at IS
            // NULL` keeps an ended conversation closed for good.
            "UPDATE conversations SET phase = :phase, turn_count = :turn_count, \
             last_activity = :last_activity, idle_timeout_ms = :idle_timeout_ms, \
             max_turns = :max_turns, version = :version, busy_until = :busy_until \
             WHERE id = :id AND turn_count = :previous AND version = :version - 1 \
             AND ended_at IS NULL AND participants = :participants AND status = :status \
             AND failure_reason IS :failure_reason AND intent = :intent \
             AND started_at = :started_at AND ended_at IS :ended_at AND metadata = :metadata",
        )
        .and_then(|mut s| {
            let values = bind!(s,
                ":phase" => row.phase,
                ":turn_count" => row.turn_count,
                ":last_activity" => row.last_activity,
                ":idle_timeout_ms" => row.idle_timeout_ms,
                ":max_turns" => row.max_turns,
                ":version" => row.version,
                ":busy_until" => row.busy_until,
                ":id" => row.id,
                ":previous" => previous,
                ":participants" => row.participants,
                ":status" => row.status,
                ":failure_reason" => row.failure_reason,
                ":intent" => row.intent,
                ":started_at" => row.started_at,
                ":ended_at" => row.ended_at,
                ":metadata" => row.metadata,
            );
            s.execute(values)
        })
        .map_err(dirty(site))?;
    if advanced == 0 {
        return Ok(None);
    }
    write_context(conn, row, false).map_err(dirty(site))?;
    insert_messages(conn, &row.id, messages).map_err(dirty(site))?;
    record_change(conn, row).map_err(dirty(site))?;
    Ok(Some(AppendOutcome {
        inserted: messages.len(),
        duplicates: 0,
    }))
}

/// Records what the write of `row` changed in the shared state, if anything (once per
/// version: a retried write finds it there).
fn record_change(conn: &Connection, row: &ConvRow) -> rusqlite::Result<()> {
    let Some(change) = &row.change else {
        return Ok(());
    };
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO state_changes (conversation_id, version, change) \
         VALUES (:conversation_id, :version, :change)",
    )?;
    let values = bind!(insert,
        ":conversation_id" => row.id,
        ":version" => row.version,
        ":change" => change,
    );
    insert.execute(values)?;
    Ok(())
}

fn insert_messages(
    conn: &Connection,
    conversation: &str,
    messages: &[(MessageId, u64, MsgRow)],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at) \
         VALUES (:id, :conversation_id, :turn, :source, :target, :kind, :content, :in_reply_to, :sent_at)",
    )?;
    for (_, _, m) in messages {
        {
            let values = bind!(insert,
                ":id" => m.id,
                ":conversation_id" => conversation,
                ":turn" => m.turn,
                ":source" => m.source,
                ":target" => m.target,
                ":kind" => m.kind,
                ":content" => m.content,
                ":in_reply_to" => m.in_reply_to,
                ":sent_at" => m.sent_at,
            );
            insert.execute(values)
        }?;
    }
    Ok(())
}

fn invalid_id(text: &str) -> StoreError {
    StoreError::InvalidInput {
        reason: format!("bad conversation id {text:?}"),
    }
}

/// The version a conversation row is written as.
fn version_of(row: &ConvRow) -> Result<u64, StoreError> {
    u64::try_from(row.version).map_err(|_| StoreError::InvalidInput {
        reason: format!("negative version {}", row.version),
    })
}

/// What the compare-and-set needs of a stored conversation, and its participants text.
fn stored(
    conn: &Connection,
    site: &Site,
    id: ConversationId,
) -> Result<(StoredState, String), StoreError> {
    let found: Option<(i64, String, i64, String)> = conn
        .prepare_cached(
            "SELECT turn_count, participants, version, status FROM conversations WHERE id = :id",
        )
        .and_then(|mut s| {
            {
                let values = bind!(s, ":id" => id.to_string());
                s.query_row(values, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            }
            .optional()
        })
        .map_err(|e| site.err(e))?;
    let (turns, participants, version, status) =
        found.ok_or(StoreError::NotFound { conversation: id })?;
    let corrupt = |detail: String| StoreError::Corrupt {
        location: format!("conversation {id}"),
        detail,
    };
    let turns =
        u64::try_from(turns).map_err(|_| corrupt(format!("negative turn count {turns}")))?;
    let version =
        u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?;
    let status = status
        .parse()
        .map_err(|e| corrupt(format!("bad status {status:?}: {e}")))?;
    Ok((
        StoredState {
            version,
            status,
            turns,
        },
        participants,
    ))
}

/// Every column of a conversation row, bound by name (see [`bind!`]) in the order of
/// `insert_conversation`'s SQL.
macro_rules! conversation_values {
    ($stmt:expr, $r:expr) => {
        bind!($stmt,
            ":id" => $r.id,
            ":status" => $r.status,
            ":failure_reason" => $r.failure_reason,
            ":phase" => $r.phase,
            ":intent" => $r.intent,
            ":participants" => $r.participants,
            ":turn_count" => $r.turn_count,
            ":started_at" => $r.started_at,
            ":last_activity" => $r.last_activity,
            ":ended_at" => $r.ended_at,
            ":idle_timeout_ms" => $r.idle_timeout_ms,
            ":max_turns" => $r.max_turns,
            ":metadata" => $r.metadata,
            ":version" => $r.version,
            ":busy_until" => $r.busy_until,
        )
    };
}

fn insert_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO conversations (id, status, failure_reason, phase, intent, participants, \
         turn_count, started_at, last_activity, ended_at, idle_timeout_ms, max_turns, \
         metadata, version, busy_until) \
         VALUES (:id, :status, :failure_reason, :phase, :intent, :participants, :turn_count, \
         :started_at, :last_activity, :ended_at, :idle_timeout_ms, :max_turns, \
         :metadata, :version, :busy_until)",
    )?;
    {
        let values = conversation_values!(insert, r);
        insert.execute(values)
    }?;
    write_context(conn, r, true)
}

/// Writes the shared context when the write carries one (`None`: the stored one is already
/// the conversation's and stays as it is). It lives in a table of its own so that a turn
/// that leaves it rewrites none of it (SQLite rewrites a whole row, overflow pages and all,
/// on any update); an empty context has no row.
fn write_context(conn: &Connection, r: &ConvRow, created: bool) -> rusqlite::Result<()> {
    let Some(context) = &r.context else {
        return Ok(());
    };
    if context == "{}" {
        if created {
            return Ok(());
        }
        let mut delete = conn.prepare_cached("DELETE FROM contexts WHERE conversation_id = :id")?;
        let values = bind!(delete, ":id" => r.id);
        return delete.execute(values).map(drop);
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO contexts (conversation_id, context) VALUES (:id, :context) \
         ON CONFLICT (conversation_id) DO UPDATE SET context = excluded.context",
    )?;
    let values = bind!(upsert, ":id" => r.id, ":context" => context);
    upsert.execute(values).map(drop)
}

fn update_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    // `:id` first (in a comparison that always holds for the row updated) so that the
    // names appear in the order of `conversation_values!`.
    let mut update = conn.prepare_cached(
        "UPDATE conversations SET id = :id, status = :status, failure_reason = :failure_reason, \
         phase = :phase, intent = :intent, participants = :participants, \
         turn_count = :turn_count, started_at = :started_at, last_activity = :last_activity, \
         ended_at = :ended_at, idle_timeout_ms = :idle_timeout_ms, max_turns = :max_turns, \
         metadata = :metadata, version = :version, \
         busy_until = :busy_until WHERE id = :id",
    )?;
    let updated = {
        let values = conversation_values!(update, r);
        update.execute(values)
    }?;
    if updated > 0 {
        write_context(conn, r, false)?;
    }
    Ok(())
}

/// Rewrites the participants index rows (only when they changed: on create and transfer).
fn write_participants(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    let mut delete = conn.prepare_cached("DELETE FROM participants WHERE conversation_id = :id")?;
    {
        let values = bind!(delete, ":id" => r.id);
        delete.execute(values)
    }?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO participants (conversation_id, position, module) \
         VALUES (:conversation_id, :position, :module)",
    )?;
    for (position, module) in r.modules.iter().enumerate() {
        {
            let values = bind!(insert,
                ":conversation_id" => r.id,
                ":position" => position as i64,
                ":module" => module,
            );
            insert.execute(values)
        }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::check_names;

    fn statement_names(sql: &str, names: &[&str]) -> Result<(), String> {
        let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
        conn.execute_batch("CREATE TABLE t (a INTEGER, b INTEGER)")
            .map_err(|e| e.to_string())?;
        let stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_names(&stmt, names)))
            .map_err(|_| "mismatch".to_owned())
    }

    /// A value listed under the wrong name (here: the two columns swapped) is caught.
    #[test]
    fn a_slipped_parameter_is_caught() {
        let sql = "INSERT INTO t (a, b) VALUES (:a, :b)";
        assert_eq!(statement_names(sql, &[":a", ":b"]), Ok(()));
        assert!(statement_names(sql, &[":b", ":a"]).is_err());
        assert!(
            statement_names(sql, &[":a"]).is_err(),
            "a missing value is caught too"
        );
    }
}
