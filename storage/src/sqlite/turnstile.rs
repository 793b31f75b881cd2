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

use std::{
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::StoreError;

/// The turnstile of one database, opened by its writer.
#[derive(Debug)]
pub(crate) struct Turnstile {
    file: File,
    path: PathBuf,
}

/// Held while taking the write lock; leaves the turnstile when dropped.
#[derive(Debug)]
pub(crate) struct Passing<'a>(&'a File);

impl Drop for Passing<'_> {
    fn drop(&mut self) {
        // Unlocking a lock this handle holds cannot fail in a way worth reporting; the
        // lock also goes with the file handle.
        let _ = self.0.unlock();
    }
}

impl Turnstile {
    /// Opens (creating if needed) the turnstile file of the database at `database`.
    pub(crate) fn open(database: &Path) -> Result<Self, StoreError> {
        let mut name = database.as_os_str().to_owned();
        name.push("-turnstile");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Backend {
                backend: "sqlite",
                message: format!(
                    "cannot open the writers' turnstile {}: {e}; the database's directory must be writable",
                    path.display()
                ),
            })?;
        Ok(Self { file, path })
    }

    /// Enters the turnstile, waiting until `deadline` at most. Polls with a short backoff
    /// (never longer than 1 ms between tries): whoever holds it is only taking the write
    /// lock, so it is released soon.
    pub(crate) fn enter(
        &self,
        started: Instant,
        lock_wait: Duration,
    ) -> Result<Passing<'_>, StoreError> {
        let mut pause = Duration::from_micros(20);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(Passing(&self.file)),
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= lock_wait {
                        return Err(StoreError::Busy {
                            waited: started.elapsed(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(StoreError::Backend {
                        backend: "sqlite",
                        message: format!(
                            "cannot lock the writers' turnstile {}: {e}",
                            self.path.display()
                        ),
                    })
                }
            }
        }
    }
}
