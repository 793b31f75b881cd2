//! The hub's background reaper.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use super::HubInner;

/// The background reaper. It sleeps until the earliest moment a conversation in memory
/// needs it (an idle deadline, or turning cold) or the next catch-up scan of the store,
/// whichever comes first, and wakes early when a new deadline comes before that. Holds the
/// hub weakly, and stops at shutdown.
pub(super) async fn reaper(hub: Weak<HubInner>) {
    let mut next_scan = tokio::time::Instant::now();
    loop {
        // The hub is held only while deciding and acting, never while sleeping: a hub
        // dropped without shutdown is gone at once (its cluster membership with it), not at
        // the reaper's next wake.
        let (router, stop, wake) = {
            let Some(inner) = hub.upgrade() else {
                return;
            };
            let router = Arc::clone(&inner.router);
            let now = router.clock().now();
            let started = tokio::time::Instant::now();
            let scan_at = next_scan.max(started);
            // A deadline that has passed but could not be acted on (its conversation is in
            // a turn, or still leased) is looked at again after a short pause, never in a
            // spin.
            let wake = match router.next_reap(inner.cold_after) {
                Some(due) => (started + due.saturating_duration_since(now))
                    .min(scan_at)
                    .max(started + REAPER_PAUSE),
                None => scan_at,
            };
            router.plan_reap(Some(
                now.saturating_add(wake.saturating_duration_since(started)),
            ));
            (router, Arc::clone(&inner.reaper_stop), wake)
        };
        let woke = tokio::select! {
            () = tokio::time::sleep_until(wake) => Wake::Due,
            () = router.earlier_deadline() => Wake::Earlier,
            () = stop.notified() => Wake::Stop,
        };
        if woke == Wake::Stop || router.is_shutting_down() {
            return;
        }
        if woke == Wake::Earlier {
            continue;
        }
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let report = if tokio::time::Instant::now() >= next_scan {
            next_scan = tokio::time::Instant::now() + inner.reaper_interval;
            router.reap(inner.cold_after).await
        } else {
            router.reap_hot(inner.cold_after).await
        };
        inner.record_reap(router.clock().now(), report);
    }
}

/// The shortest the reaper sleeps when something is already due but could not be handled.
const REAPER_PAUSE: Duration = Duration::from_millis(50);

/// Why the reaper woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Due,
    Earlier,
    Stop,
}
