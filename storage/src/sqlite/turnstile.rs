//! A turnstile in front of SQLite's write lock, so that writers in several processes take
//! turns instead of the busiest one starving the others.
//!
//! SQLite's busy handler is not fair: a process waiting for the write lock sleeps and
//! retries (1 ms, 2 ms, 5 ms, ... up to 100 ms between tries), and a process that commits
//! thousands of times per second almost always holds the lock when the waiter looks. Here
//! every colloquy writer passes a turnstile (an exclusive `flock` on a small file beside
//! the database, `<database>-turnstile`) on its way to the write lock and leaves it as soon
//! as it holds the lock. A waiter stands in the turnstile while it waits, so the busy
//! process cannot start its next transaction: when the current one commits, the waiter is
//! the only one asking for the lock and gets it. With two processes, each waits at most
//! one of the other's transactions.
//!
//! The turnstile is only ever held while taking the write lock, never across a
//! transaction, and the operating system releases it when a process dies. Writers that do
//! not know it (the `sqlite3` shell) still wait through `busy_timeout` as before.
//!
//! The file is created by the first write, never by opening or reading, and the writer
//! that closes removes it: a user sees it only beside a database that is being written
//! (or after a crash). Removing it is safe while others use it, because whoever holds the
//! lock checks that the file it locked has not been removed (one `fstat`: its link count),
//! and opens the file the path names now when it has; only a holder of the lock removes
//! the file, so a file that has not been removed is the one the path names.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::StoreError;

/// The turnstile of one database, held by its writer. The file is opened at the first
/// entry.
#[derive(Debug)]
pub(crate) struct Turnstile {
    path: PathBuf,
    file: Option<Arc<File>>,
}

/// Held while taking the write lock; leaves the turnstile when dropped.
#[derive(Debug)]
pub(crate) struct Passing(Arc<File>);

impl Drop for Passing {
    fn drop(&mut self) {
        // Unlocking a lock this handle holds cannot fail in a way worth reporting; the
        // lock also goes with the file handle.
        let _ = self.0.unlock();
    }
}

impl Turnstile {
    /// The turnstile of the database at `database`: `<database>-turnstile`. Touches no file.
    pub(crate) fn new(database: &Path) -> Self {
        let mut name = database.as_os_str().to_owned();
        name.push("-turnstile");
        Self {
            path: PathBuf::from(name),
            file: None,
        }
    }

    fn open(&self) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!(
                    "cannot create {}, which writers of the database take turns through: {e}; the database's directory must be writable",
                    self.path.display()
                ),
            })
    }

    /// Enters the turnstile, waiting until `lock_wait` after `started` at most. Polls with
    /// a short backoff (never longer than 1 ms between tries): whoever holds it is only
    /// taking the write lock, so it is released soon.
    pub(crate) fn enter(
        &mut self,
        started: Instant,
        lock_wait: Duration,
    ) -> Result<Passing, StoreError> {
        let mut pause = Duration::from_micros(20);
        loop {
            let file = match self.file.take() {
                Some(file) => file,
                None => Arc::new(self.open()?),
            };
            match file.try_lock() {
                Ok(()) if !removed(&file) => {
                    self.file = Some(Arc::clone(&file));
                    return Ok(Passing(file));
                }
                // A closing writer removed the file after this one opened it: take the
                // file that the path names now (creating it if nobody has yet).
                Ok(()) => drop(file),
                Err(TryLockError::WouldBlock) => {
                    self.file = Some(file);
                    if started.elapsed() >= lock_wait {
                        return Err(StoreError::Busy {
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                Err(TryLockError::Error(e)) => return Err(self.failed("lock", &e)),
            }
        }
    }

    fn failed(&self, what: &str, e: &std::io::Error) -> StoreError {
        StoreError::Backend {
            backend: "sqlite",
            message: format!(
                "cannot {what} the writers' turnstile {}: {e}",
                self.path.display()
            ),
        }
    }
}

impl Drop for Turnstile {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Turnstile {
    /// This writer is done: removes the file, if it ever made or used it and can take the
    /// lock within a few milliseconds (otherwise another writer is busy with it and
    /// removes it later). Called when the store closes, so that the file is gone when
    /// `close` returns (a process may end right after, before anything is dropped), and
    /// again on drop, where it finds nothing left to do.
    pub(crate) fn leave(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(20) {
            match file.try_lock() {
                Ok(()) => {
                    if cfg!(unix) && !removed(&file) {
                        let _ = std::fs::remove_file(&self.path);
                    }
                    let _ = file.unlock();
                    return;
                }
                Err(TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(TryLockError::Error(_)) => return,
            }
        }
    }
}

/// Whether the open `file` was removed (no name links to it any more): then the path
/// names a newer file, or none yet.
#[cfg(unix)]
fn removed(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().map_or(true, |m| m.nlink() == 0)
}

/// Elsewhere the file is never removed (see the `Drop` of [`Turnstile`]).
#[cfg(not(unix))]
fn removed(_file: &File) -> bool {
    false
}
