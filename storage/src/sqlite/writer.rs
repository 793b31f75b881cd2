//! The single writer: one write connection, used by one writer at a time, that commits
//! every queued write as one transaction (group commit) and acknowledges each write only
//! after its commit.
//!
//! Two ways in, one connection:
//! - **inline**: when no other write to this store is in progress, the caller commits its
//!   own write on its thread (through `block_in_place`, so the tokio worker hands its other
//!   tasks away first). A strictly sequential writer pays no thread hand-off at all.
//! - **queued**: otherwise the write joins a bounded queue and the writer thread commits
//!   everything queued in one transaction. Under load this is group commit.
//!
//! The connection's mutex is what makes them one writer: a write runs only while holding
//! it, so writes never interleave and a transaction always belongs to one commit group.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, TryLockError,
    },
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
    batch::{check_update, check_write, plan_append, Existing, StoredState},
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

/// What the async side and the writer thread share.
struct Shared {
    /// The write connection. Whoever holds this lock is the writer.
    worker: Mutex<Worker>,
    /// Writes submitted and not yet answered. Only a write that is alone commits inline:
    /// concurrent writes queue, so they share a group commit and none overtakes another.
    active: AtomicUsize,
}

impl Shared {
    fn worker(&self) -> MutexGuard<'_, Worker> {
        // A panic while writing can only come from a bug; the connection is still usable
        // (`begin` rolls back a transaction such a panic left open), so poisoning is
        // ignored instead of spreading the panic.
        self.worker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a write as active until it is answered, or dropped (a cancelled submit).
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The async side's handle on the writer.
pub(crate) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
}

impl Writer {
    pub(crate) fn spawn(
        conn: Connection,
        turnstile: super::turnstile::Turnstile,
        site: Arc<Site>,
        options: &SqliteOptions,
        checkpoints: super::checkpointer::Signal,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            worker: Mutex::new(Worker {
                conn,
                turnstile,
                site,
                lock_wait: options.lock_wait,
                checkpoints,
                closed: false,
            }),
            active: AtomicUsize::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("colloquy-sqlite-writer".into())
            .spawn(move || run(&thread_shared, rx, max_batch))
            .map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
            shared,
        })
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Commits `op` and returns its outcome once committed: inline when it is the only
    /// write in progress, else through the queue. Waits for room when the queue is full,
    /// which is the backpressure that keeps memory bounded under overload.
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<WriteOutput, StoreError> {
        let _active = Active::new(&self.shared.active);
        // Only on a multi-threaded runtime, where `block_in_place` keeps the runtime going
        // while the caller writes.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        // (A `yield_now` here, to let simultaneous writes find each other, was measured:
        // it cost a sequential writer 40% and bought nothing under load.)
        if multi_thread {
            if let Some(mut worker) = self.lone_writer() {
                if worker.closed {
                    return Err(StoreError::Closed);
                }
                return tokio::task::block_in_place(move || worker.commit_one(op));
            }
        }
        let sender = self.sender().ok_or(StoreError::Closed)?;
        let (reply, done) = oneshot::channel();
        if multi_thread {
            sender
                .send(Job::Write(op, reply))
                .await
                .map_err(|_| StoreError::Closed)?;
            return done.await.map_err(|_| StoreError::Closed)?;
        }
        // Elsewhere (a current-thread runtime) the write is queued and awaited from a
        // blocking task. An idle current-thread runtime whose clock is paused jumps to its
        // next timer; a blocking task in progress keeps it from doing so (tokio inhibits
        // auto-advance while one runs), so waiting for the writer never moves a paused
        // clock, and tests on paused time stay exact.
        wait_blocking(move || {
            sender
                .blocking_send(Job::Write(op, reply))
                .map_err(|_| StoreError::Closed)?;
            done.blocking_recv().map_err(|_| StoreError::Closed)?
        })
        .await
    }

    /// The write connection, if this is the only write in progress and nobody holds the
    /// connection, so that the caller can commit inline.
    fn lone_writer(&self) -> Option<MutexGuard<'_, Worker>> {
        if self.shared.active.load(Ordering::Acquire) != 1 {
            return None;
        }
        match self.shared.worker.try_lock() {
            Ok(worker) => Some(worker),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(sender) = sender else { return Ok(()) };
        let (reply, done) = oneshot::channel();
        // The writer answers after committing everything queued before the close. Waited
        // for from a blocking task, like every write, so a paused clock stays put.
        wait_blocking(move || {
            if sender.blocking_send(Job::Close(reply)).is_ok() {
                let _ = done.blocking_recv();
            }
            Ok(())
        })
        .await
    }
}

/// Runs `wait` (a blocking wait for the writer thread) on tokio's blocking pool.
async fn wait_blocking<T: Send + 'static>(
    wait: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(wait)
        .await
        .map_err(|e| StoreError::Backend {
            backend: "sqlite",
            message: format!("a blocking write task failed: {e}"),
        })?
}

/// The writer thread: takes whatever is queued (up to `max_batch`) and commits it as one
/// group, until the store closes or is dropped.
fn run(shared: &Shared, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(job) = rx.blocking_recv() {
        // Take the connection first (an inline writer may hold it): whatever queues up
        // meanwhile joins this group.
        let mut worker = shared.worker();
        let mut closing = None;
        match job {
            Job::Write(op, reply) => batch.push((op, reply)),
            Job::Close(reply) => closing = Some(reply),
        }
        while closing.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Job::Write(op, reply)) => batch.push((op, reply)),
                Ok(Job::Close(reply)) => closing = Some(reply),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            tracing::trace!(target: "colloquy_storage", writes = batch.len(), "group commit");
            worker.commit_group(std::mem::take(&mut batch));
        }
        if let Some(reply) = closing {
            rx.close();
            while let Ok(Job::Write(op, reply)) = rx.try_recv() {
                batch.push((op, reply));
            }
            if !batch.is_empty() {
                worker.commit_group(std::mem::take(&mut batch));
            }
            worker.closed = true;
            let _ = reply.send(());
            return;
        }
    }
}

struct Worker {
    conn: Connection,
    /// Taken on the way to the write lock, so that other processes get their turn.
    turnstile: super::turnstile::Turnstile,
    site: Arc<Site>,
    lock_wait: std::time::Duration,
    checkpoints: super::checkpointer::Signal,
    /// Set once the store is closed: inline writes are refused from then on.
    closed: bool,
}

impl Worker {
    /// Commits one write in its own transaction and returns its outcome.
    fn commit_one(&mut self, op: WriteOp) -> Result<WriteOutput, StoreError> {
        let (reply, mut done) = oneshot::channel();
        self.commit_group(vec![(op, reply)]);
        // commit_group answers every job before returning.
        done.try_recv().unwrap_or_else(|_| {
            Err(StoreError::Backend {
                backend: "sqlite",
                message: "a write was left unanswered (a colloquy bug)".into(),
            })
        })
    }

    /// Applies `jobs` in one transaction and commits once, then answers every job.
    ///
    /// Each write checks everything it can (with reads) before its first write statement,
    /// so a refused write (conflict, not found, ...) leaves the transaction as it was and
    /// needs no savepoint. If a write statement itself fails, the whole transaction is
    /// rolled back: that job gets its error and the jobs before it run again in a fresh
    /// transaction, so nobody's write is lost or half-applied.
    fn commit_group(&mut self, jobs: Vec<(WriteOp, Reply)>) {
        let mut pending: std::collections::VecDeque<(WriteOp, Reply)> = jobs.into();
        while !pending.is_empty() {
            if let Err(e) = self.begin() {
                for (_, reply) in pending {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            let mut done: Vec<(WriteOp, Reply, Result<WriteOutput, StoreError>)> = Vec::new();
            let mut aborted = false;
            while let Some((op, reply)) = pending.pop_front() {
                match apply(&self.conn, &self.site, &op) {
                    Ok(output) => done.push((op, reply, Ok(output))),
                    Err(Failure {
                        error,
                        wrote: false,
                    }) => done.push((op, reply, Err(error))),
                    Err(Failure { error, wrote: true }) => {
                        tracing::debug!(target: "colloquy_storage", %error, "write failed, rolling the group back");
                        if !self.conn.is_autocommit() {
                            let _ = self.exec("ROLLBACK");
                        }
                        let _ = reply.send(Err(error));
                        // Everything before it was undone with the transaction: run it again.
                        for (op, reply, _) in done.drain(..).rev() {
                            pending.push_front((op, reply));
                        }
                        aborted = true;
                        break;
                    }
                }
            }
            if aborted {
                continue;
            }
            let outcome = self.commit();
            if outcome.is_ok() {
                self.checkpoints.committed();
            }
            for (_, reply, result) in done {
                let answer = match (&outcome, result) {
                    (Ok(()), result) => result,
                    (Err(_), Err(own)) => Err(own),
                    (Err(group), Ok(_)) => Err(group.clone()),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Runs a fixed statement through the statement cache (no re-parsing per group).
    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            // Only a panic halfway through an earlier group leaves a transaction open;
            // none of its writes was acknowledged, so it is undone.
            let _ = self.exec("ROLLBACK");
        }
        let started = Instant::now();
        // Held until the write lock is ours: another process waiting for it stands in the
        // turnstile and gets the lock before this one can take it again.
        let _passing = self.turnstile.enter(started, self.lock_wait)?;
        loop {
            // IMMEDIATE takes the write lock now, so no later statement of the group can
            // fail with SQLITE_BUSY halfway; busy_timeout already waits inside SQLite.
            match self.exec("BEGIN IMMEDIATE") {
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
        match self.exec("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = self.site.err(e);
                if !self.conn.is_autocommit() {
                    let _ = self.exec("ROLLBACK");
                }
                Err(error)
            }
        }
    }
}

/// A write that failed: `wrote` tells whether any write statement had run (and so whether
/// the transaction must be rolled back).
struct Failure {
    error: StoreError,
    wrote: bool,
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            wrote: false,
        }
    }
}

fn apply(conn: &Connection, site: &Site, op: &WriteOp) -> Result<WriteOutput, Failure> {
    // `err` for reads and checks (nothing written yet), `dirty` once a write statement ran.
    let err = |e| site.err(e);
    let dirty = |e| Failure {
        error: site.err(e),
        wrote: true,
    };
    match op {
        WriteOp::Create(row) => {
            let exists = conn
                .prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
                .and_then(|mut s| s.exists([&row.id]))
                .map_err(err)?;
            if exists {
                return Err(StoreError::AlreadyExists {
                    conversation: row.id.parse().map_err(|_| invalid_id(&row.id))?,
                }
                .into());
            }
            insert_conversation(conn, row).map_err(dirty)?;
            write_participants(conn, row).map_err(dirty)?;
            Ok(WriteOutput::Done)
        }
        WriteOp::Append {
            conversation,
            row,
            messages,
        } => {
            let mut find_id = conn
                .prepare_cached("SELECT conversation_id, turn FROM messages WHERE id = ?1")
                .map_err(err)?;
            if let Some(outcome) = append_fast(conn, &mut find_id, row, messages, &dirty)? {
                return Ok(outcome);
            }
            let (stored_state, stored_participants) = stored(conn, site, *conversation)?;
            let stored_turns = stored_state.turns;
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
                check_write(*conversation, version_of(row)?, stored_state)?;
                insert_messages(conn, &row.id, new).map_err(dirty)?;
                update_conversation(conn, row).map_err(dirty)?;
                if stored_participants != row.participants {
                    write_participants(conn, row).map_err(dirty)?;
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
            let (stored_state, stored_participants) = stored(conn, site, *conversation)?;
            check_update(*conversation, *turn_count, stored_state.turns)?;
            check_write(*conversation, version_of(row)?, stored_state)?;
            update_conversation(conn, row).map_err(dirty)?;
            if stored_participants != row.participants {
                write_participants(conn, row).map_err(dirty)?;
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
                .map_err(dirty)?;
            Ok(WriteOutput::Pruned(n as u64))
        }
        WriteOp::RecordModule(m) => {
            conn.prepare_cached(
                "INSERT INTO modules (name, info, registered_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET info = excluded.info, registered_at = excluded.registered_at",
            )
            .and_then(|mut s| s.execute(params![m.name, m.info, m.registered_at]))
            .map_err(dirty)?;
            Ok(WriteOutput::Done)
        }
    }
}

/// The append every routed turn makes: new message ids that continue the stored turns,
/// participants unchanged. Checks the ids (reads), then one conditional UPDATE proves the
/// stored turn count and participants; anything else returns `None` with nothing written,
/// and the caller's full checks find the precise answer (duplicate, conflict, transfer).
fn append_fast(
    conn: &Connection,
    find_id: &mut rusqlite::CachedStatement<'_>,
    row: &ConvRow,
    messages: &[(MessageId, u64, MsgRow)],
    dirty: &dyn Fn(rusqlite::Error) -> Failure,
) -> Result<Option<WriteOutput>, Failure> {
    let clean = |e| Failure {
        error: dirty(e).error,
        wrote: false,
    };
    for (_, _, m) in messages {
        if find_id.exists([&m.id]).map_err(clean)? {
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
            // must be unchanged for the fast path to apply.
            // `version = ?16 - 1` is the compare-and-set: the state was computed from the
            // stored one; `ended_at IS NULL` keeps an ended conversation closed for good.
            "UPDATE conversations SET phase = ?4, turn_count = ?7, last_activity = ?9, \
             idle_timeout_ms = ?11, max_turns = ?12, context = COALESCE(?13, context), \
             version = ?16, busy_until = ?17 \
             WHERE id = ?1 AND turn_count = ?15 AND version = ?16 - 1 AND ended_at IS NULL \
             AND participants = ?6 AND status = ?2 \
             AND failure_reason IS ?3 AND intent = ?5 AND started_at = ?8 AND ended_at IS ?10 \
             AND metadata = ?14",
        )
        .and_then(|mut s| {
            s.execute(params![
                row.id,
                row.status,
                row.failure_reason,
                row.phase,
                row.intent,
                row.participants,
                row.turn_count,
                row.started_at,
                row.last_activity,
                row.ended_at,
                row.idle_timeout_ms,
                row.max_turns,
                row.context,
                row.metadata,
                previous,
                row.version,
                row.busy_until
            ])
        })
        .map_err(dirty)?;
    if advanced == 0 {
        return Ok(None);
    }
    insert_messages(conn, &row.id, messages).map_err(dirty)?;
    Ok(Some(WriteOutput::Appended(AppendOutcome {
        inserted: messages.len(),
        duplicates: 0,
    })))
}

fn insert_messages(
    conn: &Connection,
    conversation: &str,
    messages: &[(MessageId, u64, MsgRow)],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (_, _, m) in messages {
        insert.execute(params![
            m.id,
            conversation,
            m.turn,
            m.source,
            m.target,
            m.kind,
            m.content,
            m.in_reply_to,
            m.sent_at
        ])?;
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
            "SELECT turn_count, participants, version, status FROM conversations WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
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

fn insert_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO conversations (id, status, failure_reason, phase, intent, participants, turn_count, \
         started_at, last_activity, ended_at, idle_timeout_ms, max_turns, context, metadata, version, busy_until) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        r.id, r.status, r.failure_reason, r.phase, r.intent, r.participants, r.turn_count,
        r.started_at, r.last_activity, r.ended_at, r.idle_timeout_ms, r.max_turns, r.context, r.metadata,
        r.version, r.busy_until
    ])
    .map(drop)
}

fn update_conversation(conn: &Connection, r: &ConvRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE conversations SET status = ?2, failure_reason = ?3, phase = ?4, intent = ?5, participants = ?6, \
         turn_count = ?7, started_at = ?8, last_activity = ?9, ended_at = ?10, idle_timeout_ms = ?11, \
         max_turns = ?12, context = COALESCE(?13, context), metadata = ?14, version = ?15, \
         busy_until = ?16 WHERE id = ?1",
    )?
    .execute(params![
        r.id, r.status, r.failure_reason, r.phase, r.intent, r.participants, r.turn_count,
        r.started_at, r.last_activity, r.ended_at, r.idle_timeout_ms, r.max_turns, r.context, r.metadata,
        r.version, r.busy_until
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
