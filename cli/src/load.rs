//! `colloquy load`: throughput and latency of the full hub under a synthetic workload.

use std::{
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use colloquy_core::ModuleInfo;
use colloquy_registry::{Module, ModuleError, Registration, Response, Turn};
use colloquy_runtime::{ConversationSpec, Hub};
use colloquy_storage::{SqliteOptions, Synchronous};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::{
    args::{StoreKind, SyncLevel},
    demo_modules::module_name,
    Out,
};

/// What to run.
pub(crate) struct Plan {
    pub(crate) store: StoreKind,
    pub(crate) db: Option<crate::db::Db>,
    pub(crate) conversations: usize,
    pub(crate) turns: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) context_bytes: usize,
    pub(crate) synchronous: SyncLevel,
    pub(crate) parallel: usize,
    pub(crate) ack_log: Option<PathBuf>,
    pub(crate) inline: bool,
    /// Hubs on the one database (PostgreSQL), conversations spread over them.
    pub(crate) hubs: usize,
    /// The server module lives on the first hub only and every conversation is driven from
    /// the others: each exchange crosses hubs.
    pub(crate) cross_hub: bool,
}

/// Replies with a payload of the same size as the request's.
struct Server;

#[async_trait::async_trait]
impl Module for Server {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(module_name("server")).with_description("echoes load")
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::reply(turn.message.content.clone()))
    }
}

/// Opens conversations; never addressed.
struct Client;

#[async_trait::async_trait]
impl Module for Client {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(module_name("client")).with_description("drives load")
    }
    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::NoReply)
    }
}

/// The acknowledgement log of crash tests: one line per acknowledged message.
struct AckLog(Mutex<std::fs::File>);

impl AckLog {
    fn record(&self, exchange: &colloquy_runtime::Exchange) -> Result<()> {
        let mut lines = String::new();
        for m in std::iter::once(&exchange.request).chain(exchange.reply.iter()) {
            lines.push_str(&format!("{} {} {}\n", m.conversation_id, m.turn, m.id));
        }
        // One write call per round trip: the lines reach the OS before the next turn starts.
        let mut file = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(lines.as_bytes())
            .context("cannot write the ack log")
    }
}

/// The hub the plan asks for, with the load's `client` and `server` modules registered;
/// and the temporary directory its SQLite file lives in, when `--db` was not given (kept
/// until the caller drops it).
pub(crate) async fn build_hub(
    plan: &Plan,
) -> Result<(Hub, Option<tempfile::TempDir>, Option<String>)> {
    // Without --db, SQLite runs in a temporary directory that is removed afterwards.
    let mut temp = None;
    let (builder, db_path) = match (plan.store, &plan.db) {
        (StoreKind::Memory, _) => (Hub::builder().memory(), None),
        (StoreKind::Postgres, Some(db @ crate::db::Db::Postgres { .. })) => {
            (db.hub()?, Some(db.describe()))
        }
        (StoreKind::Postgres, _) => anyhow::bail!("--store postgres needs --db postgres://..."),
        (StoreKind::Sqlite, db) => {
            let path = match db {
                Some(crate::db::Db::Sqlite(path)) => path.clone(),
                Some(other) => {
                    anyhow::bail!("--store sqlite needs a file, not {}", other.describe())
                }
                None => temp
                    .insert(tempfile::tempdir().context("cannot create a temporary directory")?)
                    .path()
                    .join("load.db"),
            };
            let sync = match plan.synchronous {
                SyncLevel::Normal => Synchronous::Normal,
                SyncLevel::Full => Synchronous::Full,
            };
            let described = path.display().to_string();
            (
                Hub::builder().sqlite_with(&path, SqliteOptions::new().synchronous(sync)),
                Some(described),
            )
        }
    };
    let builder = builder.handler_deadline(Duration::from_secs(60));
    let hub = builder.build().await?;
    let registration = if plan.inline {
        Registration::new().inline()
    } else {
        Registration::new()
    };
    hub.register_with(Arc::new(Client), registration).await?;
    hub.register_with(Arc::new(Server), registration).await?;
    Ok((hub, temp, db_path))
}

/// The hubs that drive conversations: `first` alone, or with `plan.hubs - 1` more hubs on
/// the same database (each its own store handle, as separate processes would have); with
/// `cross_hub`, only the others, which must reach the server module on `first`.
async fn senders(plan: &Plan, first: &Hub) -> Result<Vec<Hub>> {
    anyhow::ensure!(
        !plan.cross_hub || plan.hubs >= 2,
        "--cross-hub needs at least two hubs (--hubs 2)"
    );
    if plan.hubs <= 1 {
        return Ok(vec![first.clone()]);
    }
    let Some(db @ crate::db::Db::Postgres { .. }) = &plan.db else {
        anyhow::bail!("--hubs needs a database the hubs share: --db postgres://...");
    };
    let mut hubs = if plan.cross_hub {
        Vec::new()
    } else {
        vec![first.clone()]
    };
    for n in 1..plan.hubs {
        let hub = db
            .hub()?
            .handler_deadline(Duration::from_secs(60))
            .member_name(format!("load-{n}"))
            .build()
            .await?;
        hub.register(Client).await?;
        if !plan.cross_hub {
            hub.register(Server).await?;
        }
        hubs.push(hub);
    }
    // Each learns from the first hub's heartbeats where the server lives.
    let limit = Instant::now() + Duration::from_secs(30);
    while !hubs.iter().all(|hub| {
        hub.reachable_modules()
            .iter()
            .any(|m| m.name.as_str() == "server")
    }) {
        anyhow::ensure!(
            Instant::now() < limit,
            "the hubs did not learn of each other within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(hubs)
}

/// Runs the load and reports it; returns whether it was interrupted (Ctrl-C or SIGTERM).
pub(crate) async fn run(out: &mut Out, plan: Plan) -> Result<bool> {
    let (hub, temp, db_path) = build_hub(&plan).await?;
    let hubs = senders(&plan, &hub).await?;
    let ack_log = match &plan.ack_log {
        Some(path) => Some(Arc::new(AckLog(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the ack log {}", path.display()))?,
        )))),
        None => None,
    };
    let bar = if out.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(plan.conversations as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} conversations {elapsed} ({per_sec})")
        {
            bar.set_style(style);
        }
        bar
    };
    let payload = Value::String("x".repeat(plan.payload_bytes));
    let mut context = serde_json::Map::new();
    if plan.context_bytes > 0 {
        context.insert(
            "notes".into(),
            Value::String("c".repeat(plan.context_bytes)),
        );
    }
    let next = Arc::new(AtomicUsize::new(0));
    // Ctrl-C or SIGTERM ends the load early: each worker finishes its exchange in flight,
    // the hubs shut down, and what was measured is reported.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, interrupted) = (Arc::clone(&stop), crate::serve::interruption()?);
        tokio::spawn(async move {
            interrupted.await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..plan.parallel {
        let (hub, next, stop, bar, payload, ack_log, context) = (
            hubs[worker % hubs.len()].clone(),
            Arc::clone(&next),
            Arc::clone(&stop),
            bar.clone(),
            payload.clone(),
            ack_log.clone(),
            context.clone(),
        );
        let (conversations, turns) = (plan.conversations, plan.turns);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(turns * conversations.div_ceil(plan.parallel));
            let mut opened = Vec::new();
            while !stop.load(Ordering::Relaxed)
                && next.fetch_add(1, Ordering::Relaxed) < conversations
            {
                let conv = hub
                    .start_conversation(
                        ConversationSpec::between("client", "server")?.context(context.clone()),
                    )
                    .await?;
                for _ in 0..turns {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = Instant::now();
                    let exchange = conv.send(payload.clone()).await?;
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    if let Some(log) = &ack_log {
                        log.record(&exchange)?;
                    }
                }
                opened.push(conv);
                bar.inc(1);
            }
            anyhow::Ok((latencies, opened))
        });
    }
    let mut latencies = Vec::with_capacity(plan.conversations * plan.turns);
    let mut opened = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (measured, conversations) = joined??;
        latencies.extend(measured);
        opened.extend(conversations);
    }
    let elapsed = started.elapsed();
    watcher.abort();
    let interrupted = stop.load(Ordering::Relaxed);
    bar.finish_and_clear();
    // The load's conversations end once the clock has stopped (so ending is not measured),
    // leaving nothing active in the database; an interrupted load leaves them as they are,
    // to stop at once, and says how many.
    let left_active = if interrupted {
        opened.len()
    } else {
        end_all(opened, plan.parallel).await?;
        0
    };
    for other in &hubs {
        other.shutdown().await;
    }
    hub.shutdown().await;
    let round_trips = latencies.len();
    let latency = Latency::of(&mut latencies);
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let report = json!({
        "store": plan.store.name(),
        "hubs": plan.hubs.max(1),
        "interrupted": interrupted,
        "left_active": left_active,
        "cross_hub": plan.cross_hub,
        "synchronous": match (plan.store, plan.synchronous) {
            (StoreKind::Memory, _) => "none",
            (StoreKind::Postgres, _) => "server",
            (_, SyncLevel::Normal) => "normal",
            (_, SyncLevel::Full) => "full",
        },
        "conversations": plan.conversations,
        "turns": plan.turns,
        "payload_bytes": plan.payload_bytes,
        "context_bytes": plan.context_bytes,
        "parallel": plan.parallel,
        "delivery": if plan.inline { "inline" } else { "task" },
        "elapsed_ms": elapsed.as_millis() as u64,
        "round_trips": round_trips,
        "round_trips_per_sec": (round_trips as f64 / secs).round(),
        "messages_per_sec": ((2 * round_trips) as f64 / secs).round(),
        "p50_us": latency.p50_us,
        "p99_us": latency.p99_us,
        "max_us": latency.max_us,
        "peak_rss_bytes": peak_rss_bytes(),
        "database": db_path.as_ref().filter(|_| temp.is_none()),
    });
    if out.json {
        out.json_value(&report)?;
        return Ok(interrupted);
    }
    let rss = report["peak_rss_bytes"].as_u64().map_or_else(
        || "unknown".to_owned(),
        |b| format!("{:.1} MB", b as f64 / 1e6),
    );
    if interrupted {
        out.text(&format!(
            "interrupted (Ctrl-C or SIGTERM): the figures cover the load until then; {left_active} conversation(s) left active{}\n",
            match (&report["database"], left_active) {
                (Value::String(db), 1..) => format!(" in {db} (they time out when idle past their timeout, or now with `colloquy reap --db {db}`)"),
                _ => String::new(),
            }
        ))?;
    }
    out.text(&format!(
        "{} conversations x {} round trips, {}-byte payloads{}, {} store{}, handlers {}\n\
         round trips/s       {}\nmessages stored/s   {}\nlatency p50         {} µs\nlatency p99         {} µs\nlatency max         {} µs\npeak RSS            {rss}\nelapsed             {:.2} s\n",
        plan.conversations,
        plan.turns,
        plan.payload_bytes,
        if plan.context_bytes > 0 { format!(", {}-byte contexts", plan.context_bytes) } else { String::new() },
        report["store"].as_str().unwrap_or_default(),
        if plan.store == StoreKind::Sqlite { format!(" (synchronous={})", report["synchronous"].as_str().unwrap_or_default()) } else { String::new() },
        if plan.inline { "inline" } else { "as tasks" },
        report["round_trips_per_sec"],
        report["messages_per_sec"],
        report["p50_us"],
        report["p99_us"],
        report["max_us"],
        secs,
    ))?;
    Ok(interrupted)
}

/// The latency figures of a load, in microseconds.
pub(crate) struct Latency {
    pub(crate) p50_us: u32,
    pub(crate) p99_us: u32,
    pub(crate) max_us: u32,
}

impl Latency {
    /// The median, the 99th percentile and the largest of `latencies` (sorted in place).
    pub(crate) fn of(latencies: &mut [u32]) -> Self {
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        Self {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            max_us: latencies.last().copied().unwrap_or(0),
        }
    }
}

/// Ends `conversations`, `parallel` at a time.
async fn end_all(
    conversations: Vec<colloquy_runtime::ConversationHandle>,
    parallel: usize,
) -> Result<()> {
    let mut ending = tokio::task::JoinSet::new();
    for conversation in conversations {
        if ending.len() >= parallel.max(1) {
            if let Some(done) = ending.join_next().await {
                done??;
            }
        }
        ending.spawn(async move { conversation.end().await.map(drop) });
    }
    while let Some(done) = ending.join_next().await {
        done??;
    }
    Ok(())
}

/// The process's peak resident set size (Linux: `VmHWM` in /proc/self/status).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
