//! Module calls: a handler (or an invitation hook) run with its deadline, as its own task
//! or polled in place, with panics contained and shutdown's abort obeyed.

use std::{future::Future, time::Duration};

use colloquy_core::{ConversationId, ModuleName};
use tracing::debug;

use super::{lifecycle::Lifecycle, Router};
use crate::RouteError;

impl Router {
    /// Runs a module call with its deadline, containing a panic (it becomes
    /// [`RouteError::HandlerPanicked`]) and giving up when shutdown aborts.
    ///
    /// [`Work::Task`] runs the call as its own task, so a handler that blocks its thread
    /// cannot hold the caller past the deadline (on a multi-threaded runtime) by more than
    /// [`DROP_GRACE`]; a task given up on (deadline, cancel, shutdown) is aborted and the
    /// caller answered once it is gone, so nothing the handler held outlives the answer
    /// (except for a handler blocking its thread). Whatever the mode, a result that arrives
    /// after the deadline is refused as a timeout: a late result is never stored.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        conversation: ConversationId,
        module: &ModuleName,
        deadline: Duration,
        cancel: Option<&tokio_util::sync::CancellationToken>,
        work: Work<'_, T>,
    ) -> Result<T, RouteError> {
        let started = tokio::time::Instant::now();
        let due = started
            .checked_add(deadline)
            .unwrap_or_else(|| started + Duration::from_secs(86_400 * 365 * 30));
        let timed_out = || RouteError::HandlerTimedOut {
            conversation,
            module: module.clone(),
            deadline,
        };
        let panicked = |payload| RouteError::HandlerPanicked {
            conversation,
            module: module.clone(),
            message: panic_message(payload),
        };
        let canceled = async {
            match cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        // Lazy: subscribes only if the handler did not answer at its first poll.
        let aborted = async {
            let mut state = self.state.subscribe();
            let _ = state.wait_for(|s| *s == Lifecycle::Aborting).await;
        };
        let outcome = match work {
            Work::Inline(future) => {
                tokio::select! {
                    // The handler first: most answer at once, and then the deadline's timer
                    // is never registered.
                    biased;
                    outcome = CatchUnwind(future) => outcome.map_err(panicked),
                    () = tokio::time::sleep_until(due) => Err(timed_out()),
                    () = aborted => Err(RouteError::ShuttingDown),
                    () = canceled => Err(RouteError::Canceled { conversation, module: module.clone() }),
                }
            }
            Work::Task(future) => {
                let mut task = AbortOnDrop(tokio::spawn(future));
                let outcome = tokio::select! {
                    biased;
                    joined = &mut task.0 => joined.map_err(|e| match e.try_into_panic() {
                        Ok(payload) => panicked(payload),
                        // Cancelled: only the runtime shutting down cancels it.
                        Err(_) => RouteError::ShuttingDown,
                    }),
                    () = tokio::time::sleep_until(due) => Err(timed_out()),
                    () = aborted => Err(RouteError::ShuttingDown),
                    () = canceled => Err(RouteError::Canceled { conversation, module: module.clone() }),
                };
                if !task.0.is_finished() {
                    // Given up on: the handler's future is dropped before the caller hears,
                    // so what it held (a permit, a connection) is free when it does. A
                    // handler blocking its thread cannot be dropped until it yields: then
                    // the deadline wins after a short grace, and the task goes later.
                    task.0.abort();
                    if tokio::time::timeout(DROP_GRACE, &mut task.0).await.is_err() {
                        debug!(module = %module, "handler still running after it was given up on (it blocks its thread)");
                    }
                }
                outcome
            }
        };
        if outcome.is_ok() && tokio::time::Instant::now() > due {
            // The handler held its thread past the deadline: its result is refused.
            debug!(module = %module, ?deadline, "handler answered after its deadline");
            return Err(timed_out());
        }
        if matches!(outcome, Err(RouteError::HandlerTimedOut { .. })) {
            debug!(module = %module, ?deadline, "handler timed out");
        }
        outcome
    }
}

/// The longest a caller waits, past the handler's deadline, for a given-up handler's task to
/// be dropped. Only a handler that blocks its thread takes it: any other is dropped as soon
/// as a worker runs its abort (microseconds; the bound is for a busy machine).
const DROP_GRACE: Duration = Duration::from_millis(50);

/// A module call, as [`Router::call`] runs it.
pub(super) enum Work<'a, T> {
    /// Polled in place on the caller's task ([`Delivery::Inline`]).
    Inline(std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>),
    /// Run as its own task ([`Delivery::Task`]).
    Task(std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>),
}

/// Aborts a handler's task when its caller stops waiting for it (deadline, shutdown, or
/// the caller's own future dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls a future, turning a panic inside it into an error instead of unwinding further.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // The future is dropped right after a panic and never polled again, so no broken
        // invariant of it can be observed: asserting unwind safety is sound.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(&mut self.0).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic without a message".into(),
        },
    }
}
