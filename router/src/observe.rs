//! [`RouterObserver`]: what the router reports as it works (each exchange's outcome and
//! time, each handler's time, each store error), for an operator's metrics. The router
//! keeps no counters of its own: an observer (the A2A front's Prometheus registry, a log)
//! decides what to keep.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, PoisonError, RwLock,
    },
    time::Duration,
};

use colloquy_core::ModuleName;
use colloquy_storage::StoreError;

use crate::{Exchange, RouteError};

/// How an exchange ended, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExchangeOutcome {
    /// The handler answered (with a reply or without one) and the answer is stored.
    Answered,
    /// The handler failed or panicked.
    Failed,
    /// The handler did not answer by its deadline.
    TimedOut,
    /// The request was refused before delivery (not active, not a participant, unknown
    /// target, too large, sent before).
    Refused,
    /// The caller canceled it, or the hub shut down under it.
    Canceled,
    /// The store failed.
    StoreFailed,
}

impl ExchangeOutcome {
    /// The outcome of a routed exchange.
    pub fn of(result: &Result<Exchange, RouteError>) -> Self {
        match result {
            Ok(_) => Self::Answered,
            Err(RouteError::HandlerFailed { .. } | RouteError::HandlerPanicked { .. })
            | Err(RouteError::InvalidResponse { .. }) => Self::Failed,
            Err(RouteError::HandlerTimedOut { .. }) => Self::TimedOut,
            Err(RouteError::Canceled { .. } | RouteError::ShuttingDown) => Self::Canceled,
            Err(RouteError::Storage(_)) => Self::StoreFailed,
            Err(_) => Self::Refused,
        }
    }

    /// Its name in metrics: `answered`, `failed`, `timed_out`, `refused`, `canceled`,
    /// `store_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Refused => "refused",
            Self::Canceled => "canceled",
            Self::StoreFailed => "store_failed",
        }
    }
}

/// Receives what the router reports. Calls come from the routing task itself, so an
/// implementation must be quick and must not block (count, record, return).
pub trait RouterObserver: Send + Sync + 'static {
    /// An exchange addressed to `module` ended with `outcome`, `elapsed` after it was
    /// routed (waiting for the turn, storing the request, the handler, storing the reply).
    fn exchange(&self, module: &ModuleName, outcome: ExchangeOutcome, elapsed: Duration);

    /// `module`'s handler ran for `elapsed` (until it answered, failed, or its deadline).
    fn handled(&self, module: &ModuleName, elapsed: Duration);

    /// A store call failed with `error` (a conflict the router then resolved included).
    fn store_error(&self, error: &StoreError);
}

/// The observers a router reports to. Without any, reporting costs one relaxed load.
#[derive(Default)]
pub(crate) struct Observers {
    any: AtomicBool,
    list: RwLock<Vec<Arc<dyn RouterObserver>>>,
}

impl Observers {
    pub(crate) fn add(&self, observer: Arc<dyn RouterObserver>) {
        self.list
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
        self.any.store(true, Ordering::Release);
    }

    /// True when someone listens (so that the caller need not measure otherwise).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub(crate) fn each(&self, report: impl Fn(&dyn RouterObserver)) {
        if !self.any() {
            return;
        }
        for observer in self
            .list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            report(observer.as_ref());
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.any())
    }
}
