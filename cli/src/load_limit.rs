//! `colloquy load --via tokio`: the limit an in-process hub is measured against, with the
//! same driver shape and payloads but no hub: each conversation is an echo task reached
//! through a tokio `mpsc` channel, and each reply comes back on a `oneshot`. Nothing is
//! stored, checked or ordered: it is what a round trip between two tasks costs on this
//! machine, in the same run as the hub's figures.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::Result;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::{
    load::{Latency, Plan},
    Out,
};

/// Runs the bare round trips and reports them as `load` does.
pub(crate) async fn run(out: &mut Out, plan: Plan) -> Result<()> {
    let payload = Value::String("x".repeat(plan.payload_bytes));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.parallel {
        let (next, payload) = (Arc::clone(&next), payload.clone());
        let (conversations, turns) = (plan.conversations, plan.turns);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(turns * conversations.div_ceil(plan.parallel));
            while next.fetch_add(1, Ordering::Relaxed) < conversations {
                // The conversation: an echo task with its channel, as a module behind a hub.
                let (to_echo, mut inbox) = mpsc::channel::<(Value, oneshot::Sender<Value>)>(1);
                let echo = tokio::spawn(async move {
                    while let Some((content, reply)) = inbox.recv().await {
                        let _ = reply.send(content);
                    }
                });
                for _ in 0..turns {
                    let sent = Instant::now();
                    let (reply, replied) = oneshot::channel();
                    to_echo.send((payload.clone(), reply)).await?;
                    let echoed = replied.await?;
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    drop(echoed);
                }
                drop(to_echo);
                echo.await?;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(plan.conversations * plan.turns);
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined??);
    }
    let elapsed = started.elapsed();
    let round_trips = latencies.len();
    let latency = Latency::of(&mut latencies);
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let report = json!({
        "via": "tokio",
        "store": "none",
        "conversations": plan.conversations,
        "turns": plan.turns,
        "payload_bytes": plan.payload_bytes,
        "parallel": plan.parallel,
        "elapsed_ms": elapsed.as_millis() as u64,
        "round_trips": round_trips,
        "round_trips_per_sec": (round_trips as f64 / secs).round(),
        "p50_us": latency.p50_us,
        "p99_us": latency.p99_us,
        "max_us": latency.max_us,
    });
    if out.json {
        return out.json_value(&report);
    }
    out.text(&format!(
        "the limit, no hub: {} conversations x {} round trips between tokio tasks (mpsc and oneshot), {}-byte payloads\nround trips/s       {}\nlatency p50         {} µs\nlatency p99         {} µs\nlatency max         {} µs\nelapsed             {:.2} s\n",
        plan.conversations,
        plan.turns,
        plan.payload_bytes,
        report["round_trips_per_sec"],
        report["p50_us"],
        report["p99_us"],
        report["max_us"],
        secs,
    ))
}
