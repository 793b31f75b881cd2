//! Model-based test: random operation sequences go through `MemoryStore` and a durable
//! backend (`SqliteStore`; `PostgresStore` where `COLLOQUY_TEST_POSTGRES` names a server)
//! side by side, and every observable result must be identical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_core::*;
use colloquy_storage::*;
use proptest::prelude::*;
use serde_json::json;

const SLOTS: usize = 4;
const MODULES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        slot: usize,
        start_s: u64,
        pair: usize,
    },
    Append {
        slot: usize,
        turns: u64,
    },
    RetryLastAppend {
        slot: usize,
    },
    RivalAppend {
        slot: usize,
    },
    Change {
        slot: usize,
        change: usize,
    },
    StaleUpdate {
        slot: usize,
    },
    Get {
        slot: usize,
    },
    Messages {
        slot: usize,
        range: usize,
        n: u64,
    },
    List {
        status: Option<usize>,
        participant: Option<usize>,
        limit: usize,
    },
    Analytics {
        from_s: Option<u64>,
        until_s: Option<u64>,
    },
    Prune {
        before_s: u64,
    },
    RecordModule {
        module: usize,
        version: u8,
    },
    Modules,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        3 => (slot.clone(), 0..20u64, 0..4usize).prop_map(|(slot, start_s, pair)| Op::Create { slot, start_s, pair }),
        6 => (slot.clone(), 1..4u64).prop_map(|(slot, turns)| Op::Append { slot, turns }),
        1 => slot.clone().prop_map(|slot| Op::RetryLastAppend { slot }),
        1 => slot.clone().prop_map(|slot| Op::RivalAppend { slot }),
        2 => (slot.clone(), 0..7usize).prop_map(|(slot, change)| Op::Change { slot, change }),
        1 => slot.clone().prop_map(|slot| Op::StaleUpdate { slot }),
        2 => slot.clone().prop_map(|slot| Op::Get { slot }),
        2 => (slot.clone(), 0..4usize, 0..6u64).prop_map(|(slot, range, n)| Op::Messages { slot, range, n }),
        2 => (proptest::option::of(0..5usize), proptest::option::of(0..4usize), 1..6usize)
            .prop_map(|(status, participant, limit)| Op::List { status, participant, limit }),
        1 => (proptest::option::of(0..20u64), proptest::option::of(0..40u64)).prop_map(|(from_s, until_s)| Op::Analytics { from_s, until_s }),
        1 => (0..400u64).prop_map(|before_s| Op::Prune { before_s }),
        1 => (0..4usize, any::<u8>()).prop_map(|(module, version)| Op::RecordModule { module, version }),
        1 => Just(Op::Modules),
    ]
}

/// What the client side knows about one conversation slot.
#[derive(Default, Clone)]
struct Slot {
    /// The latest state the client holds (stored or not).
    state: Option<Conversation>,
    /// An older state, for stale writes.
    previous: Option<Conversation>,
    /// The last appended batch and the state it was appended with.
    last_batch: Option<(Conversation, Vec<Message>)>,
}

/// Errors compare by variant (and turn, for conflicts); messages may differ in wording.
fn observe<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(StoreError::Conflict { turn, .. }) => format!("conflict at {turn}"),
        Err(e) => {
            let text = format!("{e:?}");
            format!(
                "err {}",
                text.split([' ', '{', '(']).next().unwrap_or_default()
            )
        }
    }
}

struct Driver {
    now: u64,
    seq: u64,
    slots: Vec<Slot>,
}

impl Driver {
    fn tick(&mut self) -> Timestamp {
        self.now += 1_000;
        Timestamp::from_millis(self.now)
    }

    fn random(&mut self) -> [u8; 10] {
        self.seq += 1;
        let b = self.seq.to_be_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], 1, 2]
    }

    fn talk(&mut self, c: &mut Conversation, turns: u64) -> Vec<Message> {
        let mut out = Vec::new();
        for _ in 0..turns {
            let now = self.tick();
            let p = c.participants().to_vec();
            let (from, to) = if c.turn_count().is_multiple_of(2) {
                (&p[0], &p[1])
            } else {
                (&p[1], &p[0])
            };
            let draft = Draft::request(
                from.clone(),
                to.clone(),
                json!({"n": self.seq, "from": from.as_str()}),
            );
            let id = MessageId::from_parts(now, self.random());
            match c.accept(draft, id, now) {
                Ok(m) => out.push(m),
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            // One batch, one write.
            c.bump_version();
        }
        out
    }
}

async fn both<T: std::fmt::Debug, F, Fut1, Fut2>(
    a: Fut1,
    b: Fut2,
    what: F,
) -> Result<(String, bool), TestCaseError>
where
    F: Fn() -> String,
    Fut1: std::future::Future<Output = Result<T, StoreError>>,
    Fut2: std::future::Future<Output = Result<T, StoreError>>,
{
    let (x, y) = (observe(a.await), observe(b.await));
    prop_assert_eq!(
        &x,
        &y,
        "memory and the durable backend differ on {}",
        what()
    );
    let ok = x.starts_with("ok");
    Ok((x, ok))
}

fn name(i: usize) -> ModuleName {
    MODULES[i % MODULES.len()].parse().unwrap()
}

/// What one sequence achieved, so the generator can be shown to reach real work.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    appends: u64,
    updates: u64,
    longest: u64,
}

/// The durable backend compared with memory.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite,
    /// A fresh schema of the database at this URL.
    Postgres(String),
}

async fn run(ops: Vec<Op>) -> Result<Tally, TestCaseError> {
    run_on(Backend::Sqlite, ops).await
}

async fn run_on(backend: Backend, ops: Vec<Op>) -> Result<Tally, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let store = SqliteStore::open(dir.path().join("model.db"), SqliteOptions::new())
                .await
                .unwrap();
            compare(store, ops).await
        }
        Backend::Postgres(url) => {
            use colloquy_testkit::conformance::StoreFactory;
            let factory = colloquy_testkit::conformance::PostgresFactory::new(&url).unwrap();
            let store = factory.open().await.unwrap();
            let outcome = compare(store, ops).await;
            drop(factory);
            outcome
        }
    }
}

/// Runs `ops` on memory and on `sqlite` (the durable backend under test) side by side.
async fn compare(sqlite: impl ConversationStore, ops: Vec<Op>) -> Result<Tally, TestCaseError> {
    let mut tally = Tally::default();
    let memory = MemoryStore::new();
    let mut d = Driver {
        now: 1_700_000_000_000,
        seq: 0,
        slots: vec![Slot::default(); SLOTS],
    };
    for (step, op) in ops.into_iter().enumerate() {
        let what = || format!("step {step}: {op:?}");
        match op.clone() {
            Op::Create {
                slot,
                start_s,
                pair,
            } => {
                let start = Timestamp::from_millis(1_700_000_000_000 + start_s * 1_000);
                let c = match d.slots[slot].state.clone() {
                    Some(existing) => existing,
                    None => {
                        let mut c = Conversation::new(
                            ConversationId::from_parts(start, d.random()),
                            vec![name(pair), name(pair + 1)],
                            Intent::Query,
                            Duration::from_secs(60),
                            start,
                        )
                        .unwrap();
                        c.conclude_handshake(&name(pair + 1), &HandshakeOutcome::Accept, start)
                            .unwrap();
                        c
                    }
                };
                let (_, ok) = both(memory.create(&c), sqlite.create(&c), what).await?;
                if ok {
                    d.slots[slot] = Slot {
                        state: Some(c),
                        ..Slot::default()
                    };
                }
            }
            Op::Append { slot, turns } => {
                let Some(mut c) = d.slots[slot].state.clone() else {
                    continue;
                };
                let before = c.clone();
                let batch = d.talk(&mut c, turns);
                let (_, ok) = both(
                    memory.append(&c, &shared(&batch)),
                    sqlite.append(&c, &shared(&batch)),
                    what,
                )
                .await?;
                if ok && !batch.is_empty() {
                    tally.appends += 1;
                    tally.longest = tally.longest.max(c.turn_count());
                }
                if ok {
                    let s = &mut d.slots[slot];
                    s.previous = Some(before);
                    s.state = Some(c.clone());
                    s.last_batch = Some((c, batch));
                }
            }
            Op::RetryLastAppend { slot } => {
                let Some((c, batch)) = d.slots[slot].last_batch.clone() else {
                    continue;
                };
                both(
                    memory.append(&c, &shared(&batch)),
                    sqlite.append(&c, &shared(&batch)),
                    what,
                )
                .await?;
            }
            Op::RivalAppend { slot } => {
                let Some(mut rival) = d.slots[slot].previous.clone() else {
                    continue;
                };
                let batch = d.talk(&mut rival, 1);
                let (_, ok) = both(
                    memory.append(&rival, &shared(&batch)),
                    sqlite.append(&rival, &shared(&batch)),
                    what,
                )
                .await?;
                prop_assert!(
                    !ok || batch.is_empty(),
                    "{}: an append from a stale state was accepted",
                    what()
                );
            }
            Op::Change { slot, change } => {
                let Some(mut c) = d.slots[slot].state.clone() else {
                    continue;
                };
                let now = d.tick();
                let changed = match change {
                    0 => c.pause(now),
                    1 => c.resume(now),
                    2 => c.complete(now),
                    3 => c.fail("model says so", now),
                    4 => c.apply_context_patch(json!({"step": step}).as_object().unwrap(), now),
                    5 => {
                        let out = c.participants()[1].clone();
                        let newcomer = MODULES
                            .iter()
                            .map(|m| m.parse::<ModuleName>().unwrap())
                            .find(|m| !c.is_participant(m))
                            .unwrap();
                        c.transfer(&out, newcomer, now)
                    }
                    _ => c.time_out(Timestamp::from_millis(now.as_millis() + 120_000)),
                };
                if changed.is_err() {
                    continue;
                }
                c.bump_version();
                let (_, ok) = both(memory.update(&c), sqlite.update(&c), what).await?;
                if ok {
                    tally.updates += 1;
                    d.slots[slot].state = Some(c);
                }
            }
            Op::StaleUpdate { slot } => {
                let Some(mut stale) = d.slots[slot].previous.clone() else {
                    continue;
                };
                if stale.pause(d.tick()).is_ok() {
                    stale.bump_version();
                    let (_, ok) = both(memory.update(&stale), sqlite.update(&stale), what).await?;
                    prop_assert!(!ok, "{}: a stale update was accepted", what());
                }
            }
            Op::Get { slot } => {
                let Some(c) = d.slots[slot].state.clone() else {
                    continue;
                };
                let (seen, _) = both(
                    memory.conversation(c.id()),
                    sqlite.conversation(c.id()),
                    what,
                )
                .await?;
                // The slot holds only what both stores acknowledged and nothing pruned.
                prop_assert_eq!(
                    seen,
                    format!("ok {:?}", Some(&c)),
                    "{}: stored state differs from the client's",
                    what()
                );
            }
            Op::Messages { slot, range, n } => {
                let Some(c) = d.slots[slot].state.clone() else {
                    continue;
                };
                let range = match range {
                    0 => MessageRange::All,
                    1 => MessageRange::After(n),
                    2 => MessageRange::Last(n),
                    _ => MessageRange::Turns {
                        first: n,
                        last: n + 2,
                    },
                };
                both(
                    memory.messages(c.id(), range),
                    sqlite.messages(c.id(), range),
                    what,
                )
                .await?;
            }
            Op::List {
                status,
                participant,
                limit,
            } => {
                let mut filter = ListFilter::new().limit(limit);
                if let Some(s) = status {
                    filter = filter.status(StatusKind::ALL[s]);
                }
                if let Some(p) = participant {
                    filter = filter.participant(name(p));
                }
                // Walk every page, so cursors are compared too.
                for _ in 0..10 {
                    let (a, b) = (memory.list(&filter).await, sqlite.list(&filter).await);
                    let next = a.as_ref().ok().and_then(|p| p.next);
                    both(async { a }, async { b }, what).await?;
                    match next {
                        Some(cursor) => filter = filter.after(cursor),
                        None => break,
                    }
                }
            }
            Op::Analytics { from_s, until_s } => {
                let t = |s: u64| Timestamp::from_millis(1_700_000_000_000 + s * 1_000);
                let range = TimeRange {
                    from: from_s.map(t),
                    until: until_s.map(t),
                };
                both(memory.analytics(range), sqlite.analytics(range), what).await?;
            }
            Op::Prune { before_s } => {
                let cutoff = Timestamp::from_millis(1_700_000_000_000 + before_s * 1_000);
                let (_, _) = both(memory.prune(cutoff), sqlite.prune(cutoff), what).await?;
                for s in &mut d.slots {
                    if s.state
                        .as_ref()
                        .and_then(Conversation::ended_at)
                        .is_some_and(|t| t < cutoff)
                    {
                        *s = Slot::default();
                    }
                }
            }
            Op::RecordModule { module, version } => {
                let info = ModuleInfo::new(name(module)).with_version(format!("1.{version}.0"));
                let at = d.tick();
                both(
                    memory.record_module(&info, at),
                    sqlite.record_module(&info, at),
                    what,
                )
                .await?;
            }
            Op::Modules => {
                both(memory.modules(), sqlite.modules(), what).await?;
            }
        }
    }
    Ok(tally)
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Current-thread runtime: every SQLite write goes through a blocking task.
    #[test]
    fn sqlite_and_memory_stores_agree(ops in proptest::collection::vec(op(), 1..60)) {
        runtime(false).block_on(run(ops))?;
    }

    /// Multi-threaded runtime: lone SQLite writes commit inline on the caller's thread.
    #[test]
    fn sqlite_and_memory_stores_agree_on_a_multi_threaded_runtime(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        runtime(true).block_on(run(ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// PostgreSQL against memory, each case on a fresh schema.
    #[test]
    fn postgres_and_memory_stores_agree(ops in proptest::collection::vec(op(), 1..60)) {
        let Some(url) = colloquy_testkit::postgres_url() else {
            return Ok(());
        };
        runtime(true).block_on(run_on(Backend::Postgres(url), ops))?;
    }
}

/// The generator is not vacuous: over the cases the property runs, successful appends
/// and updates happen, and conversations grow long.
#[test]
fn the_generator_reaches_successful_writes_and_long_conversations() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(op(), 1..60);
    let rt = runtime(false);
    let mut total = Tally::default();
    for _ in 0..48 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let tally = rt.block_on(run(ops)).unwrap();
        total.appends += tally.appends;
        total.updates += tally.updates;
        total.longest = total.longest.max(tally.longest);
    }
    assert!(total.appends >= 60, "{total:?}");
    assert!(total.updates >= 20, "{total:?}");
    assert!(total.longest >= 6, "{total:?}");
}

/// `messages` behind `Arc`, as `ConversationStore::append` takes them.
fn shared(messages: &[colloquy_core::Message]) -> Vec<std::sync::Arc<colloquy_core::Message>> {
    messages.iter().cloned().map(std::sync::Arc::new).collect()
}
