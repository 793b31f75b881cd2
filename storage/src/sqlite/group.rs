//! The group transaction: the write connection runs a group of writes in one transaction,
//! commits once, and answers each write only after the commit.
//!
//! Each write checks everything it can (with reads) before its first write statement, so a
//! refused write (conflict, not found, ...) leaves the transaction as it was and needs no
//! savepoint. If a write statement itself fails, the whole transaction is rolled back: that
//! write gets its error and the writes before it run again in a fresh transaction, so
//! nobody's write is lost or half-applied.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{
    write::{Failure, Write},
    Site,
};
use crate::StoreError;

/// A write waiting in a group, with the channel its caller waits on.
pub(crate) trait Job: Send {
    /// Runs the write inside the open transaction, keeping its output until the commit.
    fn apply(&mut self, conn: &Connection, site: &Site) -> Result<(), Failure>;

    /// Answers the caller once the group's commit is known: its own error if it had one,
    /// else the commit's.
    fn answer(self: Box<Self>, commit: &Result<(), StoreError>);

    /// Answers the caller with `error` (the write never ran, or ran in a rolled-back
    /// transaction and failed there).
    fn fail(self: Box<Self>, error: StoreError);
}

/// A typed write and its caller's channel.
pub(crate) struct Pending<W: Write> {
    write: W,
    output: Option<Result<W::Output, StoreError>>,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
}

impl<W: Write> Pending<W> {
    /// A job for `write`, and the receiver of its answer.
    pub(crate) fn new(write: W) -> (Self, oneshot::Receiver<Result<W::Output, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (
            Self {
                write,
                output: None,
                reply,
            },
            answer,
        )
    }
}

impl<W: Write> Job for Pending<W> {
    fn apply(&mut self, conn: &Connection, site: &Site) -> Result<(), Failure> {
        match self.write.apply(conn, site) {
            Ok(output) => {
                self.output = Some(Ok(output));
                Ok(())
            }
            Err(Failure {
                error,
                wrote: false,
            }) => {
                self.output = Some(Err(error));
                Ok(())
            }
            Err(failure) => Err(failure),
        }
    }

    fn answer(self: Box<Self>, commit: &Result<(), StoreError>) {
        let answer = match (commit, self.output) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(output))) => Ok(output),
            (Err(group), Some(Ok(_))) => Err(group.clone()),
            (_, None) => Err(StoreError::Backend {
                backend: "sqlite",
                message: "a write was answered before it ran (a colloquy bug)".into(),
            }),
        };
        // The caller may have given up waiting (a cancelled call); nothing to tell then.
        let _ = self.reply.send(answer);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The write connection and what a group commit needs around it. Whoever holds it (behind
/// the writer's mutex) is the one writer.
pub(crate) struct Worker {
    conn: Connection,
    /// Taken on the way to the write lock, so that other processes get their turn.
    turnstile: super::turnstile::Turnstile,
    site: Arc<Site>,
    lock_wait: std::time::Duration,
    checkpoints: super::checkpointer::Signal,
    /// Set once the store is closed: inline writes are refused from then on.
    pub(crate) closed: bool,
}

impl Worker {
    pub(crate) fn new(
        conn: Connection,
        turnstile: super::turnstile::Turnstile,
        site: Arc<Site>,
        lock_wait: std::time::Duration,
        checkpoints: super::checkpointer::Signal,
    ) -> Self {
        Self {
            conn,
            turnstile,
            site,
            lock_wait,
            checkpoints,
            closed: false,
        }
    }

    /// Leaves the writers' turnstile for good (the store is closing): its file is removed.
    pub(crate) fn leave_turnstile(&mut self) {
        self.turnstile.leave();
    }

    /// Commits one write in its own transaction and returns its outcome.
    pub(crate) fn commit_one<W: Write>(&mut self, write: W) -> Result<W::Output, StoreError> {
        let (job, mut answer) = Pending::new(write);
        self.commit_group(vec![Box::new(job)]);
        // commit_group answers every job before returning.
        answer.try_recv().unwrap_or_else(|_| {
            Err(StoreError::Backend {
                backend: "sqlite",
                message: "a write was left unanswered (a colloquy bug)".into(),
            })
        })
    }

    /// Commits one write on the caller's thread if it can start without waiting: the
    /// turnstile and SQLite's write lock are both free right now. When either is taken
    /// (another process writes, or waits to), the write comes back untouched (`Err`) for
    /// the caller to wait the usual way; otherwise its outcome.
    pub(crate) fn commit_one_now<W: Write>(
        &mut self,
        write: W,
    ) -> Result<Result<W::Output, StoreError>, W> {
        match self.begin_now() {
            Ok(true) => {}
            Ok(false) => return Err(write),
            Err(e) => return Ok(Err(e)),
        }
        let (job, mut answer) = Pending::new(write);
        self.run_group(vec![Box::new(job)], true);
        // run_group answers every job before returning.
        Ok(answer.try_recv().unwrap_or_else(|_| {
            Err(StoreError::Backend {
                backend: "sqlite",
                message: "a write was left unanswered (a colloquy bug)".into(),
            })
        }))
    }

    /// Applies `jobs` in one transaction and commits once, then answers every job.
    pub(crate) fn commit_group(&mut self, jobs: Vec<Box<dyn Job>>) {
        self.run_group(jobs, false);
    }

    /// [`commit_group`](Self::commit_group), its first transaction already begun when
    /// `begun`.
    fn run_group(&mut self, jobs: Vec<Box<dyn Job>>, mut begun: bool) {
        let mut pending: VecDeque<Box<dyn Job>> = jobs.into();
        while !pending.is_empty() {
            if !std::mem::take(&mut begun) {
                if let Err(e) = self.begin() {
                    for job in pending {
                        job.fail(e.clone());
                    }
                    return;
                }
            }
            let mut done: Vec<Box<dyn Job>> = Vec::new();
            let mut aborted = false;
            while let Some(mut job) = pending.pop_front() {
                match job.apply(&self.conn, &self.site) {
                    Ok(()) => done.push(job),
                    Err(Failure { error, .. }) => {
                        tracing::debug!(target: "colloquy_storage", %error, "write failed, rolling the group back");
                        if !self.conn.is_autocommit() {
                            let _ = self.exec("ROLLBACK");
                        }
                        job.fail(error);
                        // Everything before it was undone with the transaction: run it again.
                        for job in done.drain(..).rev() {
                            pending.push_front(job);
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
            for job in done {
                job.answer(&outcome);
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

    /// Begins a write transaction only if nothing has to be waited for: `Ok(false)` when
    /// another writer is in the turnstile or holds SQLite's write lock.
    fn begin_now(&mut self) -> Result<bool, StoreError> {
        if !self.conn.is_autocommit() {
            let _ = self.exec("ROLLBACK");
        }
        let _passing = match self.turnstile.enter(Instant::now(), Duration::ZERO) {
            Ok(passing) => passing,
            Err(StoreError::Busy { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        // No waiting inside SQLite either, for this one try.
        let site = Arc::clone(&self.site);
        self.conn
            .busy_timeout(Duration::ZERO)
            .map_err(|e| site.err(e))?;
        let began = self.exec("BEGIN IMMEDIATE");
        self.conn
            .busy_timeout(site.busy_timeout)
            .map_err(|e| site.err(e))?;
        match began {
            Ok(()) => Ok(true),
            Err(e) => match site.err(e) {
                StoreError::Busy { .. } => Ok(false),
                other => Err(other),
            },
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
