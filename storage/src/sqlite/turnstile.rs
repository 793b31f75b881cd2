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
//! lock checks that the path still names the file it locked, and takes the new file when
//! it does not; only a holder of the lock removes the file.

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::StoreError;

/// The turnstile of one database, held by its writer. The file is opened at the first
/// entry.
#[derive(Debug)]
pub(crate) struct Turnstile {
    path: PathBuf,
    file: Option<File>,
}

/// Held while taking the write lock; leaves the turnstile when dropped.
#[derive(Debug)]
pub(crate) struct Passing(File);

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
                None => self.open()?,
            };
            match file.try_lock() {
                Ok(()) if names(&self.path, &file) => {
                    // A second handle on the same open file: it holds the same lock, and
                    // unlocks it when the passing ends.
                    let passing = file.try_clone().map(Passing);
                    self.file = Some(file);
                    return passing.map_err(|e| self.failed("enter", &e));
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
    /// Removes the file, if this writer ever made or used it and can take the lock within
    /// a few milliseconds (otherwise another writer is busy with it and removes it later).
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(20) {
            match file.try_lock() {
                Ok(()) => {
                    if cfg!(unix) && names(&self.path, &file) {
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

/// Whether `path` still names the open `file` (it was not removed or replaced).
#[cfg(unix)]
fn names(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => named.dev() == open.dev() && named.ino() == open.ino(),
        _ => false,
    }
}

/// Elsewhere the file is never replaced: a writer removes it only where this can be told.
#[cfg(not(unix))]
fn names(path: &Path, _file: &File) -> bool {
    path.exists()
}
