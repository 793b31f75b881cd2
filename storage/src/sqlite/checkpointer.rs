//! A background thread that copies the write-ahead log back into the database
//! (checkpoints), so the writer never stops for it.
//!
//! The writer signals after each group commit; the checkpointer runs a PASSIVE checkpoint,
//! which never blocks the writer or readers. The writer keeps SQLite's own auto-checkpoint
//! at a high threshold as a safety net, so the log stays bounded even if this thread
//! cannot keep up.

use std::{
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

use super::{schema, Site, SqliteOptions};
use crate::StoreError;

#[derive(Default)]
struct State {
    commits: u64,
    stop: bool,
    /// The checkpointer sleeps on the condition variable: only then is a wake-up needed
    /// (a notification is a system call; most commits land while it is busy anyway).
    waiting: bool,
}

/// Shared between the writer (which signals commits) and the checkpointer thread.
#[derive(Clone, Default)]
pub(crate) struct Signal(Arc<(Mutex<State>, Condvar)>);

impl Signal {
    /// Tells the checkpointer that the log grew.
    pub(crate) fn committed(&self) {
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.commits += 1;
        if state.waiting {
            state.waiting = false;
            cvar.notify_one();
        }
    }

    fn stop(&self) {
        let (lock, cvar) = &*self.0;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cvar.notify_one();
    }

    /// Waits for commits after `seen`; returns the new count, or `None` once stopped.
    fn wait(&self, seen: u64) -> Option<u64> {
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.stop && state.commits == seen {
            state.waiting = true;
            state = cvar.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting = false;
        (!state.stop).then_some(state.commits)
    }
}

/// Owns the checkpointer thread; stops and joins it when dropped.
pub(crate) struct Checkpointer {
    signal: Signal,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn spawn(
        site: &Site,
        options: &SqliteOptions,
        signal: Signal,
    ) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            &site.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| site.err(e))?;
        schema::configure_common(&conn, options).map_err(|e| site.err(e))?;
        let waiting = signal.clone();
        let thread = std::thread::Builder::new()
            .name("colloquy-sqlite-checkpoint".into())
            .spawn(move || run(conn, waiting))
            .map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!("cannot start the checkpoint thread: {e}"),
            })?;
        Ok(Self {
            signal,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, signal: Signal) {
    let mut seen = 0;
    while let Some(commits) = signal.wait(seen) {
        seen = commits;
        // Let a few more commits land so one checkpoint covers them.
        std::thread::sleep(Duration::from_millis(5));
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(target: "colloquy_storage", error = %e, "background checkpoint failed; the writer's auto-checkpoint remains");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal.stop();
        if let Some(thread) = self.thread.take() {
            // The thread exits as soon as it sees the stop flag (at most one checkpoint).
            let _ = thread.join();
        }
    }
}
