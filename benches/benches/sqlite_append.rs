//! SQLite appends at several batch sizes: messages per append, and appends from many
//! conversations at once (which group commit folds into one transaction).
#![allow(missing_docs, clippy::expect_used)]

use std::sync::Arc;

use colloquy_benches::{runtime, Ids};
use colloquy_core::Timestamp;
use colloquy_storage::{ConversationStore, SqliteOptions, SqliteStore};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn appends(c: &mut Criterion) {
    let rt = runtime().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        rt.block_on(SqliteStore::open(
            dir.path().join("bench.db"),
            SqliteOptions::new(),
        ))
        .expect("store"),
    );
    let t = Timestamp::from_millis(1_700_000_000_000);
    let mut ids = Ids::default();
    let mut group = c.benchmark_group("sqlite_append/messages_per_append");
    for batch in [1usize, 10, 100] {
        let mut conversation = ids.conversation(t);
        rt.block_on(store.create(&conversation)).expect("create");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let messages = ids.talk(&mut conversation, batch, 200);
                rt.block_on(store.append(&conversation, &messages))
                    .expect("append")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("sqlite_append/concurrent_conversations");
    for writers in [1usize, 16, 128] {
        let mut conversations: Vec<_> = (0..writers).map(|_| ids.conversation(t)).collect();
        for conversation in &conversations {
            rt.block_on(store.create(conversation)).expect("create");
        }
        group.throughput(Throughput::Elements(writers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, _| {
            b.iter(|| {
                let batches: Vec<_> = conversations
                    .iter_mut()
                    .map(|c| {
                        let messages = ids.talk(c, 1, 200);
                        (c.clone(), messages)
                    })
                    .collect();
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for (conversation, messages) in batches {
                        let store = Arc::clone(&store);
                        tasks.spawn(async move { store.append(&conversation, &messages).await });
                    }
                    while let Some(done) = tasks.join_next().await {
                        done.expect("task").expect("append");
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
