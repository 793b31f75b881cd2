//! The single writer: one write connection, used by one writer at a time, that commits
//! every queued write as one transaction (group commit, `group.rs`) and acknowledges each
//! write only after its commit. This file is the way in: the queue, the writer thread, and
//! the choice between them.
//!
//! Two ways in, one connection:
//! - **inline**: when no other write to this store is in progress, the caller commits its
//!   own write on its thread (through `block_in_place`, so the tokio worker hands its other
//!   tasks away first). A strictly sequential writer pays no thread hand-off at all. At
//!   synchronous NORMAL, where a commit appends to the log without a flush, a lone write
//!   whose locks are free at once skips `block_in_place` too (`Worker::commit_one_now`):
//!   it never waits on the worker's thread, and it costs less than the hand-off.
//! - **queued**: otherwise the write joins a bounded queue and the writer thread commits
//!   everything queued in one transaction. Under load this is group commit.
//!
//! The connection's mutex is what makes them one writer: a write runs only while holding
//! it, so writes never interleave and a transaction always belongs to one commit group.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard, PoisonError, TryLockError,
};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{
    group::{Job, Pending, Worker},
    write::Write,
    Site, SqliteOptions,
};
use crate::StoreError;

/// What the writer thread's queue carries.
enum Message {
    Write(Box<dyn Job>),
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
    queue: Mutex<Option<mpsc::Sender<Message>>>,
    shared: Arc<Shared>,
    /// A lone write may commit on the caller's thread without `block_in_place`: true at
    /// synchronous NORMAL, where a commit waits for no disk flush.
    commit_in_place: bool,
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
            worker: Mutex::new(Worker::new(
                conn,
                turnstile,
                site,
                options.lock_wait,
                checkpoints,
            )),
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
            commit_in_place: options.synchronous == super::Synchronous::Normal,
        })
    }

    fn sender(&self) -> Option<mpsc::Sender<Message>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Commits `write` and returns its output once committed: inline when it is the only
    /// write in progress, else through the queue. Waits for room when the queue is full,
    /// which is the backpressure that keeps memory bounded under overload.
    pub(crate) async fn submit<W: Write>(&self, write: W) -> Result<W::Output, StoreError> {
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
                // At synchronous NORMAL a commit only appends to the log (no fsync): when
                // nothing has to be waited for, it is made right here, which costs less than
                // `block_in_place` handing the worker's other tasks to another thread (a
                // sequential writer ran 36% faster; benches/README, session 10).
                let write = if self.commit_in_place {
                    match worker.commit_one_now(write) {
                        Ok(outcome) => return outcome,
                        Err(write) => write,
                    }
                } else {
                    write
                };
                return tokio::task::block_in_place(move || worker.commit_one(write));
            }
        }
        let sender = self.sender().ok_or(StoreError::Closed)?;
        let (job, done) = Pending::new(write);
        let job = Message::Write(Box::new(job));
        if multi_thread {
            sender.send(job).await.map_err(|_| StoreError::Closed)?;
            return done.await.map_err(|_| StoreError::Closed)?;
        }
        // Elsewhere (a current-thread runtime) the write is queued and awaited from a
        // blocking task. An idle current-thread runtime whose clock is paused jumps to its
        // next timer; a blocking task in progress keeps it from doing so (tokio inhibits
        // auto-advance while one runs), so waiting for the writer never moves a paused
        // clock, and tests on paused time stay exact.
        super::blocking(move || {
            sender.blocking_send(job).map_err(|_| StoreError::Closed)?;
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
        super::blocking(move || {
            if sender.blocking_send(Message::Close(reply)).is_ok() {
                let _ = done.blocking_recv();
            }
            Ok(())
        })
        .await
    }
}

/// The writer thread: takes whatever is queued (up to `max_batch`) and commits it as one
/// group, until the store closes or is dropped.
fn run(shared: &Shared, mut rx: mpsc::Receiver<Message>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(job) = rx.blocking_recv() {
        // Take the connection first (an inline writer may hold it): whatever queues up
        // meanwhile joins this group.
        let mut worker = shared.worker();
        let mut closing = None;
        match job {
            Message::Write(job) => batch.push(job),
            Message::Close(reply) => closing = Some(reply),
        }
        while closing.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Message::Write(job)) => batch.push(job),
                Ok(Message::Close(reply)) => closing = Some(reply),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            tracing::trace!(target: "colloquy_storage", writes = batch.len(), "group commit");
            worker.commit_group(std::mem::take(&mut batch));
        }
        if let Some(reply) = closing {
            rx.close();
            while let Ok(Message::Write(job)) = rx.try_recv() {
                batch.push(job);
            }
            if !batch.is_empty() {
                worker.commit_group(std::mem::take(&mut batch));
            }
            worker.closed = true;
            worker.leave_turnstile();
            let _ = reply.send(());
            return;
        }
    }
}
