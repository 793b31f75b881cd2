//! The last 20 messages of a 10,000-turn conversation (what a handler's history window and
//! `ConversationHandle::history(20)` read), on memory, SQLite, and PostgreSQL where
//! `COLLOQUY_TEST_POSTGRES` names a server (a fresh schema, dropped afterwards).
#![allow(missing_docs, clippy::expect_used)]

use colloquy_benches::{runtime, scale, Ids};
use colloquy_core::Timestamp;
use colloquy_storage::{ConversationStore, MemoryStore, MessageRange, SqliteOptions, SqliteStore};
use colloquy_testkit::conformance::{PostgresFactory, StoreFactory};
use criterion::{criterion_group, criterion_main, Criterion};

fn last_20(c: &mut Criterion) {
    let rt = runtime().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = rt
        .block_on(SqliteStore::open(
            dir.path().join("bench.db"),
            SqliteOptions::new(),
        ))
        .expect("store");
    let memory = MemoryStore::new();
    let postgres = std::env::var("COLLOQUY_TEST_POSTGRES").ok().map(|url| {
        let factory = PostgresFactory::new(&url).expect("a schema name");
        let store = rt.block_on(factory.open()).expect("postgres store");
        (factory, store)
    });
    let mut ids = Ids::default();
    let mut conversation = ids.conversation(Timestamp::from_millis(1_700_000_000_000));
    let turns = scale(10_000, 200);
    rt.block_on(async {
        sqlite.create(&conversation).await.expect("create");
        memory.create(&conversation).await.expect("create");
        if let Some((_, store)) = &postgres {
            store.create(&conversation).await.expect("create");
        }
        for _ in 0..turns / 100 {
            let messages = ids.talk(&mut conversation, 100, 200);
            sqlite
                .append(&conversation, &messages)
                .await
                .expect("append");
            memory
                .append(&conversation, &messages)
                .await
                .expect("append");
            if let Some((_, store)) = &postgres {
                store
                    .append(&conversation, &messages)
                    .await
                    .expect("append");
            }
        }
    });
    let id = conversation.id();
    c.bench_function("history/last_20_of_10000/sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            sqlite
                .messages(id, MessageRange::Last(20))
                .await
                .expect("read")
                .len()
        })
    });
    c.bench_function("history/last_20_of_10000/memory", |b| {
        b.to_async(&rt).iter(|| async {
            memory
                .messages(id, MessageRange::Last(20))
                .await
                .expect("read")
                .len()
        })
    });
    if let Some((factory, store)) = postgres {
        c.bench_function("history/last_20_of_10000/postgres", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .messages(id, MessageRange::Last(20))
                    .await
                    .expect("read")
                    .len()
            })
        });
        drop(store);
        drop(factory);
    }
}

criterion_group!(benches, last_20);
criterion_main!(benches);
