//! `colloquy load --via sqlite-raw`: the limits a hub on SQLite is measured against, with
//! no hub. Message-shaped rows (uuid text ids, a JSON payload of `--payload-bytes`) go
//! straight into a table of a new file in a temporary directory, with the pragmas the store
//! sets (WAL, `--synchronous`), as many rows as the same `load` writes (four a round trip:
//! the request and the reply, each with its conversation's row): once in transactions of
//! 1,000 rows (what the hub's group commit is compared with) and once as single-row commits
//! (the limit of a sequential conversation, at most 20,000 of them).

use std::time::Instant;

use anyhow::{Context, Result};
use rusqlite::{named_params, Connection};
use serde_json::json;

use crate::{args::SyncLevel, load::Plan, Out};

/// Rows a round trip writes.
const ROWS_PER_ROUND_TRIP: usize = 4;
/// Rows per transaction of the batched limit.
const BATCH: usize = 1_000;
/// The most single-row commits measured (each waits for the log's write).
const MAX_SINGLE: usize = 20_000;

/// Runs both raw limits and reports them.
pub(crate) fn run(out: &mut Out, plan: &Plan) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let conn = Connection::open(dir.path().join("raw.db")).context("cannot open SQLite")?;
    // The store's own settings (storage/src/sqlite/schema.rs), so that only the hub differs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match plan.synchronous {
        SyncLevel::Normal => "NORMAL",
        SyncLevel::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.execute_batch(
        "CREATE TABLE raw_messages (id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, \
         turn INTEGER NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, \
         kind TEXT NOT NULL, content TEXT NOT NULL, sent_at INTEGER NOT NULL, \
         UNIQUE (conversation_id, turn))",
    )?;
    let content = serde_json::to_string(&"x".repeat(plan.payload_bytes))?;
    let rows = plan.conversations * plan.turns * ROWS_PER_ROUND_TRIP;
    let mut next = 0u64;
    let mut insert = |conn: &Connection| -> Result<()> {
        next += 1;
        let mut statement = conn.prepare_cached(
            "INSERT INTO raw_messages (id, conversation_id, turn, source, target, kind, \
             content, sent_at) VALUES (:id, :conversation, :turn, 'client', 'server', \
             'request', :content, :sent_at)",
        )?;
        statement.execute(named_params! {
            ":id": uuid::Uuid::now_v7().to_string(),
            ":conversation": uuid::Uuid::now_v7().to_string(),
            ":turn": 1,
            ":content": content,
            ":sent_at": i64::try_from(next).unwrap_or(i64::MAX),
        })?;
        Ok(())
    };

    let started = Instant::now();
    let mut written = 0;
    while written < rows {
        let tx = conn.unchecked_transaction()?;
        for _ in 0..BATCH.min(rows - written) {
            insert(&tx)?;
            written += 1;
        }
        tx.commit()?;
    }
    let batched = written as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);

    let single_rows = rows.min(MAX_SINGLE);
    let started = Instant::now();
    for _ in 0..single_rows {
        insert(&conn)?;
    }
    let single = single_rows as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
    // Read back: what was measured was really stored.
    let stored: i64 = conn.query_row("SELECT count(*) FROM raw_messages", [], |r| r.get(0))?;

    let report = json!({
        "via": "sqlite-raw",
        "store": "sqlite",
        "synchronous": sync,
        "payload_bytes": plan.payload_bytes,
        "rows": rows,
        "rows_per_sec_in_1000_row_transactions": batched.round(),
        "single_row_commits": single_rows,
        "single_row_commits_per_sec": single.round(),
        "rows_stored": stored,
    });
    if out.json {
        return out.json_value(&report);
    }
    out.text(&format!(
        "the limit, no hub: message-shaped rows straight into SQLite (WAL, synchronous {sync}), {}-byte payloads\n\
         {rows} rows in 1,000-row transactions   {batched:.0} rows/s\n\
         {single_rows} single-row commits         {single:.0} commits/s\n\
         (a round trip writes {ROWS_PER_ROUND_TRIP} rows in two commits)\n",
        plan.payload_bytes,
    ))
}
