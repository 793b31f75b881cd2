//! The single writer: a dedicated thread that owns the write connection and commits every
//! queued write as one transaction (group commit), acknowledging each only after its
//! commit.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use colloquy_core::{ConversationId, MessageId};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{
    rows::{ConvRow, ModuleRow, MsgRow},
    Site, SqliteOptions,
};
use crate::{
    batch::{check_update, plan_append, Existing},
    AppendOutcome, StoreError,
};

/// One write, already encoded into rows by the caller.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create(ConvRow),
    Append {
        conversation: ConversationId,
        row: ConvRow,
        messages: Vec<(MessageId, u64, MsgRow)>,
    },
    Update {
        conversation: ConversationId,
        turn_count: u64,
        row: ConvRow,
    },
    Prune {
        ended_before: i64,
    },
    RecordModule(ModuleRow),
}

/// What a write returns once committed.
#[derive(Debug)]
pub(crate) enum WriteOutput {
    Done,
    Appended(AppendOutcome),
    Pruned(u64),
}

pub(crate) fn unexpected(output: WriteOutput) -> StoreError {
    StoreError::Backend {
        backend: "sqlite",
        message: format!("writer returned {output:?} for another kind of write (a colloquy bug)"),
    }
}

type Reply = oneshot::Sender<Result<WriteOutput, StoreError>>;

// Almost every job is a write; boxing it would add an allocation per write to save a few
// hundred bytes on the rare close message.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write(WriteOp, Reply),
    Close(oneshot::Sender<()>),
}

/// The async side's handle on the writer thread.
pub(crate) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Writer {
    pub(crate) fn spawn(
        conn: Connection,
        site: Arc<Site>,
        options: &SqliteOptions,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let worker = Worker {
            conn,
            site,
            max_batch: options.max_batch.max(1),
            lock_wait: options.lock_wait,
        };
        std::thread::Builder::new()
            .name("colloquy-sqlite-writer".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
        })
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Queues `op` and waits for its commit. Waits for room when the queue is full, which
    /// is the backpressure that keeps memory bounded under overload.
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<WriteOutput, StoreError> {
        let sender = self.sender().ok_or(StoreError::Closed)?;
        let (reply, done) = oneshot::channel();
        sender
            .send(Job::Write(op, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(sender) = sender else { return Ok(()) };
        let (reply, done) = oneshot::channel();
        if sender.send(Job::Close(reply)).await.is_ok() {
            // The writer answers after committing everything queued before the close.
            let _ = done.await;
        }
        Ok(())
    }
}

struct Worker {
    conn: Connection,
    site: Arc<Site>,
    max_batch: usize,
    lock_wait: std::time::Duration,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(job) = rx.blocking_recv() {
            let mut closing = None;
            match job {
                Job::Write(op, reply) => batch.push((op, reply)),
                Job::Close(reply) => closing = Some(reply),
            }
            while closing.is_none() && batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(Job::Write(op, reply)) => batch.push((op, reply)),
                    Ok(Job::Close(reply)) => closing = Some(reply),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                tracing::trace!(target: "colloquy_storage", writes = batch.len(), "group commit");
                self.commit_group(std::mem::take(&mut batch));
            }
            if let Some(reply) = closing {
                rx.close();
                while let Ok(Job::Write(op, reply)) = rx.try_recv() {
                    batch.push((op, reply));
                }
                if !batch.is_empty() {
                    self.commit_group(std::mem::take(&mut batch));
                }
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Applies `jobs` in one transaction, each inside its own savepoint so that one failing
    /// write does not undo the others, then commits and answers every job.
    fn commit_group(&mut self, jobs: Vec<(WriteOp, Reply)>) {
        let mut pending = jobs.into_iter();
        loop {
            if pending.len() == 0 {
                return;
            }
            if let Err(e) = self.begin() {
                for (_, reply) in pending {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            let mut done: Vec<(Reply, Result<WriteOutput, StoreError>)> = Vec::new();
            let mut aborted = None;
            for (op, reply) in pending.by_ref() {
                let result = self.apply_in_savepoint(&op);
                let lost_transaction = result.is_err() && self.conn.is_autocommit();
                if lost_transaction {
                    // SQLite rolls the whole transaction back on some errors (disk full,
                    // I/O errors): every earlier write of this group is undone too.
                    aborted = result.as_ref().err().cloned();
                }
                done.push((reply, result));
                if aborted.is_some() {
                    break;
                }
            }
            let outcome = match aborted {
                Some(e) => Err(e),
                None => self.commit(),
            };
            for (reply, result) in done {
                let answer = match (&outcome, result) {
                    (Ok(()), result) => result,
                    (Err(_), Err(own)) => Err(own),
                    (Err(group), Ok(_)) => Err(group.clone()),
                };
                let _ = reply.send(answer);
            }
            // Writes after an aborted one get a fresh transaction.
        }
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            // IMMEDIATE takes the write lock now, so no later statement of the group can
            // fail with SQLITE_BUSY halfway; busy_timeout already waits inside SQLite.
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(e) => match self.site.err(e) {
                    StoreError::Busy { .. } if started.elapsed() < self.lock_wait => {
                        tracing::debug!(target: "colloquy_storage", "write lock busy, waiting");
                    }
                    StoreError::Busy { .. } => {
                        return Err(StoreError::Busy {
                            waited: started.elapsed(),
                        })
                    }
                    other => return Err(other),
                },
            }
        }
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = self.site.err(e);
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(error)
            }
        }
    }

    fn apply_in_savepoint(&mut self, op: &WriteOp) -> Result<WriteOutput, StoreError> {
        self.conn
            .execute_batch("SAVEPOINT write")
            .map_err(|e| self.site.err(e))?;
        let result = apply(&self.conn, &self.site, op);
        if self.conn.is_autocommit() {
            return result;
        }
        let end = if result.is_ok() {
            "RELEASE write"
        } else {
            "ROLLBACK TO write; RELEASE write"
        };
        match self.conn.execute_batch(end) {
            Ok(()) => result,
            Err(e) => result.and(Err(self.site.err(e))),
        }
    }
}

fn apply(conn: &Connection, site: &Site, op: &WriteOp) -> Result<WriteOutput, StoreError> {
    let err = |e| site.err(e);
    match op {
        WriteOp::Create(row) => {
            let exists = conn
                .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
                .and_then(|mut s| s.exists([&row.id]))
                .map_err(err)?;
            if exists {
                return Err(StoreError::AlreadyExists {
                    conversation: row.id.parse().map_err(|_| invalid_id(&row.id))?,
                });
            }
            insert_conversation(conn, row).map_err(err)?;
            write_participants(conn, row).map_err(err)?;
            Ok(WriteOutput::Done)
        }
        WriteOp::Append {
            conversation,
            row,
            messages,
        } => {
            let (stored_turns, stored_participants) = stored(conn, site, *conversation)?;
            let mut find_id = conn
                .prepare_cached("SELECT conversation_id, turn FROM messages WHERE id = ?1")
                .map_err(err)?;
            let mut find_turn = conn
                .prepare_cached("SELECT 1 FROM messages WHERE conversation_id = ?1 AND turn = ?2")
                .map_err(err)?;
            let first_new = plan_append(
                *conversation,
                messages,
                stored_turns,
                |(id, turn, _)| (*id, *turn),
                |(_, turn, m)| {
                    let found: Option<(String, i64)> = find_id
                        .query_row([&m.id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(err)?;
                    if let Some((conv, stored_turn)) = found {
                        return Ok(Existing::SameId {
                            same_place: conv == row.id && stored_turn == m.turn,
                        });
                    }
                    // Turns beyond the stored count cannot be taken; skip the lookup.
                    if *turn > stored_turns {
                        return Ok(Existing::New);
                    }
                    let taken = find_turn.exists(params![row.id, m.turn]).map_err(err)?;
                    Ok(if taken {
                        Existing::TurnTaken
                    } else {
                        Existing::New
                    })
                },
            )?;
            let new = &messages[first_new..];
            if !new.is_empty() {
                let mut insert = conn
                    .prepare_cached(
                        "INSERT INTO messages (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(err)?;
                for (_, _, m) in new {
                    insert
                        .execute(params![
                            m.id,
                            row.id,
                            m.turn,
                            m.source,
                            m.target,
                            m.kind,
                            m.content,
                            m.in_reply_to,
                            m.sent_at
                        ])
                        .map_err(err)?;
                }
                update_conversation(conn, row).map_err(err)?;
                if stored_participants != row.participants {
                    write_participants(conn, row).map_err(err)?;
                }
            }
            Ok(WriteOutput::Appended(AppendOutcome {
                inserted: new.len(),
                duplicates: first_new,
            }))
        }
        WriteOp::Update {
            conversation,
            turn_count,
            row,
        } => {
            let (stored_turns, stored_participants) = stored(conn, site, *conversation)?;
            check_update(*conversation, *turn_count, stored_turns)?;
            update_conversation(conn, row).map_err(err)?;
            if stored_participants != row.participants {
                write_participants(conn, row).map_err(err)?;
            }
            Ok(WriteOutput::Done)
        }
        WriteOp::Prune { ended_before } => {
            // Deleting a conversation cascades to its messages and participants.
            let n = conn
                .prepare_cached(
                    "DELETE FROM conversations WHERE ended_at IS NOT NULL AND ended_at < ?1 \
                     AND status IN ('completed', 'timed_out', 'failed')",
                )
                .and_then(|mut s| s.execute([ended_before]))
                .map_err(err)?;
            Ok(WriteOutput::Pruned(n as u64))
        }
        WriteOp::RecordModule(m) => {
            conn.prepare_cached(
                "INSERT INTO modules (name, info, registered_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET info = excluded.info, registered_at = excluded.registered_at",
            )
            .and_then(|mut s| s.execute(params![m.name, m.info, m.registered_at]))
            .map_err(err)?;
            Ok(WriteOutput::Done)
        }
    }
}

fn invalid_id(text: &str) -> StoreError {
    StoreError::InvalidInput {
        reason: format!("bad conversation id {text:?}"),
    }
}

/// The stored turn count and participants text of a conversation.
fn stored(conn: &Connection, site: &Site, id: ConversationId) -> Result<(u64, String), StoreError> {
    let found: Option<(i64, String)> = conn
        .prepare_cached("SELECT turn_count, participants FROM conversations WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(|e| site.err(e))?;
    let (turns, participants) = found.ok_or(StoreError::NotFound { conversation: id })?;
    let turns = u64::try_from(turns).map_err(|_| StoreError::Corrupt {
        location: format!("conversation {id}"),
        detail: format!("negative turn count {turns}"),
    })?;
    Ok((turns, participants))
}

fn insert_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, status, failure_reason, phase, intent, participants, turn_count, \
         started_at, last_activity, ended_at, idle_timeout_ms, max_turns, context, metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        r.id, r.status, r.failure_reason, r.phase, r.intent, r.participants, r.turn_count,
        r.started_at, r.last_activity, r.ended_at, r.idle_timeout_ms, r.max_turns, r.context, r.metadata
    ])
    .map(drop)
}

fn update_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE conversations SET status = ?2, failure_reason = ?3, phase = ?4, intent = ?5, participants = ?6, \
         turn_count = ?7, started_at = ?8, last_activity = ?9, ended_at = ?10, idle_timeout_ms = ?11, \
         max_turns = ?12, context = ?13, metadata = ?14 WHERE id = ?1",
    )?
    .execute(params![
        r.id, r.status, r.failure_reason, r.phase, r.intent, r.participants, r.turn_count,
        r.started_at, r.last_activity, r.ended_at, r.idle_timeout_ms, r.max_turns, r.context, r.metadata
    ])
    .map(drop)
}

/// Rewrites the participants index rows (only when they changed: on create and transfer).
fn write_participants(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM participants WHERE conversation_id = ?1")?
        .execute([&r.id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO participants (conversation_id, position, module) VALUES (?1, ?2, ?3)",
    )?;
    for (position, module) in r.modules.iter().enumerate() {
        insert.execute(params![r.id, position as i64, module])?;
    }
    Ok(())
}
