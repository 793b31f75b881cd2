//! Turns through the database, where the link does not serve: a hub without a link (an
//! older version during an upgrade), a link that cannot be reached, a host that went
//! silent mid-call. The sender queues the turn as a delivery row keyed by the request's
//! message id and waits for its answer; a hub hosting the module claims it, runs the
//! module through its router ([`colloquy_router::Router::host`]) and records the answer.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use colloquy_core::ModuleName;
use colloquy_registry::{ModuleDirectory, ModuleError, Response, Turn};
use colloquy_router::Clock;
use colloquy_storage::{ConversationStore, QueuedTurn, Signal, StoreError};
use tracing::{debug, warn};

use crate::{
    wire::{Answer, IncomingTurn, OutgoingTurn},
    Cluster,
};

/// The longest pause between two polls for a delivery's answer. A store's wake-up
/// ([`Signal`], `NOTIFY` on PostgreSQL) usually comes first; polling is the fallback for the
/// wake-ups lost while its listening connection is down.
const MAX_POLL: Duration = Duration::from_millis(50);

/// The longest pause between two looks for new deliveries. Longer than [`MAX_POLL`]: turns
/// between hubs go over the link, so the queue is the exception, and an idle hub should not
/// ask the database twenty times a second; a queued delivery's `NOTIFY` wakes it at once.
const MAX_QUEUE_POLL: Duration = Duration::from_millis(500);

/// Most deliveries one hub claims at once.
const CLAIM_BATCH: usize = 32;

/// Queues `turn` for a hub hosting `module` and waits for the answer. The router drops
/// this future at the turn's deadline.
pub(crate) async fn through_store(
    store: &Arc<dyn ConversationStore>,
    clock: Clock,
    module: &ModuleName,
    turn: &Turn,
) -> Result<Response, ModuleError> {
    let unreachable = |e: StoreError| {
        ModuleError::new(format!(
            "{module} lives in another hub and cannot be reached: {e}"
        ))
    };
    let table = store
        .membership()
        .ok_or_else(|| ModuleError::new("the store no longer offers a cluster"))?;
    let delivery = QueuedTurn {
        message_id: turn.message.id.as_uuid(),
        module: module.to_string(),
        turn: serde_json::to_value(OutgoingTurn::new(turn))
            .map_err(|e| ModuleError::new(format!("the turn cannot be sent: {e}")))?,
        deadline_ms: clock
            .now()
            .as_millis()
            .saturating_add(colloquy_core::duration_millis(turn.deadline)),
    };
    // Subscribed before queueing: the answer's notification cannot come first.
    let mut answered = table.signal(Signal::Answered(delivery.message_id));
    // A new delivery has no answer yet: the first look waits for the signal (or the first
    // poll). One queued before (a takeover delivers again) may have one already.
    let mut look = !table.send_delivery(&delivery).await.map_err(unreachable)?;
    let mut pause = Duration::from_millis(1);
    loop {
        if look {
            answered = table.signal(Signal::Answered(delivery.message_id));
            if let Some(answer) = table
                .take_answer(delivery.message_id)
                .await
                .map_err(unreachable)?
            {
                let answer: Answer = serde_json::from_value(answer).map_err(|e| {
                    ModuleError::new(format!("the hosting hub's answer cannot be read: {e}"))
                })?;
                return answer.into_result();
            }
        }
        look = true;
        tokio::select! {
            () = &mut answered => {}
            () = tokio::time::sleep(pause) => {}
        }
        pause = pause.saturating_mul(2).min(MAX_POLL);
    }
}

/// Answers the deliveries queued for this hub's modules while the cluster lives.
pub(crate) async fn answer_queued(cluster: Weak<Cluster>) {
    // The store is held for as long as the loop runs; the cluster only while it claims.
    let Some(store) = cluster.upgrade().map(|c| Arc::clone(&c.store)) else {
        return;
    };
    let Some(table) = store.membership() else {
        return;
    };
    let mut pause = Duration::from_millis(1);
    let mut queued = table.signal(Signal::Deliveries);
    loop {
        tokio::select! {
            () = &mut queued => {}
            () = tokio::time::sleep(pause) => {}
        }
        // Subscribed before claiming, so a delivery queued meanwhile wakes the next round.
        queued = table.signal(Signal::Deliveries);
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let Some(member) = cluster.member() else {
            continue;
        };
        // A hub shutting down claims nothing more: what it would claim, another hub that
        // hosts the module (or this one's next run) answers.
        if cluster
            .router()
            .is_none_or(|router| router.is_shutting_down())
        {
            continue;
        }
        let modules: Vec<String> = cluster
            .registry
            .names()
            .iter()
            .map(ToString::to_string)
            .collect();
        let claimed = match table.claim_deliveries(member, &modules, CLAIM_BATCH).await {
            Ok(claimed) => claimed,
            Err(e) => {
                debug!(error = %e, "could not claim deliveries");
                Vec::new()
            }
        };
        pause = if claimed.is_empty() {
            pause.saturating_mul(2).min(MAX_QUEUE_POLL)
        } else {
            Duration::from_millis(1)
        };
        for delivery in claimed {
            let cluster = Arc::clone(&cluster);
            tokio::spawn(async move {
                let answer = run(&cluster, &delivery).await;
                let answer = match serde_json::to_value(&answer) {
                    Ok(answer) => answer,
                    Err(e) => return warn!(error = %e, "a delivery's answer cannot be encoded"),
                };
                let Ok(table) = cluster.table() else {
                    return;
                };
                match table
                    .answer_delivery(member, delivery.message_id, &answer)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => warn!(message = %delivery.message_id,
                        "answer refused: this hub was fenced and the delivery passed to another"),
                    Err(e) => warn!(error = %e, "could not record a delivery's answer"),
                }
            });
        }
    }
}

/// Runs a queued turn on the module registered here, within what is left of its deadline,
/// through the router's call discipline.
async fn run(cluster: &Cluster, delivery: &QueuedTurn) -> Answer {
    let Some(registered) = delivery
        .module
        .parse()
        .ok()
        .and_then(|name| cluster.registry.get(&name))
    else {
        return Answer::Error(format!("{} is no longer hosted here", delivery.module));
    };
    let Some(router) = cluster.router() else {
        return Answer::Error("the hosting hub is shutting down".into());
    };
    let incoming: IncomingTurn = match serde_json::from_value(delivery.turn.clone()) {
        Ok(incoming) => incoming,
        Err(e) => return Answer::Error(format!("the delivered turn cannot be read: {e}")),
    };
    let left = delivery
        .deadline_ms
        .saturating_sub(cluster.clock.now().as_millis());
    // A queued turn carries its whole window.
    let Some(turn) = incoming.into_turn(Duration::from_millis(left), None) else {
        return Answer::Error(
            "the delivered turn builds on a history this hub does not hold".into(),
        );
    };
    match Answer::hosted(router.host(&registered, turn).await) {
        // In the database, an answer is final: the queue has no "try another way".
        Answer::Unavailable(reason) => Answer::Error(reason),
        answer => answer,
    }
}
