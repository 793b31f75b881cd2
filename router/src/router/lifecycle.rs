//! The router's lifecycle: open, draining, aborting; and the count of operations in
//! flight that shutdown waits for.

use std::{
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use super::Router;
use crate::{RouteError, ShutdownReport};

/// Where the router stands. Forward only: Open -> Draining -> Aborting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Lifecycle {
    /// Takes new work.
    Open = 0,
    /// Takes no new work; in-flight operations may finish.
    Draining = 1,
    /// In-flight handlers are aborted.
    Aborting = 2,
}

impl Lifecycle {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Open,
            1 => Self::Draining,
            _ => Self::Aborting,
        }
    }

    /// Reads the lifecycle from its atomic mirror (a plain load on every turn).
    pub(super) fn load(cell: &AtomicU8, order: Ordering) -> Self {
        Self::from_u8(cell.load(order))
    }
}

/// Counts an operation as in flight until dropped.
pub(super) struct Flight<'a>(&'a Router);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Router {
    pub(super) fn enter(&self) -> Result<Flight<'_>, RouteError> {
        // SeqCst here and in `set_lifecycle`: either shutdown sees this flight, or this sees
        // the shutdown.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let flight = Flight(self);
        if Lifecycle::load(&self.lifecycle, Ordering::SeqCst) != Lifecycle::Open {
            return Err(RouteError::ShuttingDown);
        }
        Ok(flight)
    }

    /// Stops taking new work, lets in-flight operations finish for up to `drain`, then
    /// aborts the handlers still running (their callers get
    /// [`RouteError::ShuttingDown`]) and waits for them to unwind. Nobody is left hanging.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.set_lifecycle(Lifecycle::Draining);
        let drained = self.wait_idle(drain).await;
        let aborted = if drained {
            0
        } else {
            let still = self.in_flight.load(Ordering::SeqCst);
            self.set_lifecycle(Lifecycle::Aborting);
            // Aborted handlers return at once; what remains is at most a store write.
            self.wait_idle(Duration::from_secs(30)).await;
            still
        };
        ShutdownReport { drained, aborted }
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// True once [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        Lifecycle::load(&self.lifecycle, Ordering::Acquire) != Lifecycle::Open
    }

    fn set_lifecycle(&self, lifecycle: Lifecycle) {
        self.lifecycle.store(lifecycle as u8, Ordering::SeqCst);
        self.state.send_replace(lifecycle);
    }
}
