//! Listing (a page of 100, filtered by status and by participant) and analytics over
//! 100,000 stored conversations.
#![allow(missing_docs, clippy::expect_used)]

use colloquy_benches::{runtime, scale, Ids};
use colloquy_core::{StatusKind, Timestamp};
use colloquy_storage::{ConversationStore, ListFilter, SqliteOptions, SqliteStore, TimeRange};
use criterion::{criterion_group, criterion_main, Criterion};

fn list_and_analytics(c: &mut Criterion) {
    let rt = runtime().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = rt
        .block_on(SqliteStore::open(
            dir.path().join("bench.db"),
            SqliteOptions::new(),
        ))
        .expect("store");
    let count = scale(100_000, 500);
    let mut ids = Ids::default();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let mut conversation =
                ids.conversation(Timestamp::from_millis(1_700_000_000_000 + i as u64));
            let opened = conversation.clone();
            let messages = ids.talk(&mut conversation, 2, 50);
            if i % 3 == 0 {
                conversation
                    .complete(conversation.last_activity())
                    .expect("complete");
            }
            let store = store.clone();
            tasks.spawn(async move {
                store.create(&opened).await?;
                store.append(&conversation, &messages).await
            });
            if tasks.len() >= 256 {
                tasks
                    .join_next()
                    .await
                    .expect("task")
                    .expect("task ran")
                    .expect("stored");
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("stored");
        }
    });
    c.bench_function("list/page_of_100/all", |b| {
        let filter = ListFilter::new().limit(100);
        b.to_async(&rt)
            .iter(|| async { store.list(&filter).await.expect("list").conversations.len() })
    });
    c.bench_function("list/page_of_100/completed", |b| {
        let filter = ListFilter::new().status(StatusKind::Completed).limit(100);
        b.to_async(&rt)
            .iter(|| async { store.list(&filter).await.expect("list").conversations.len() })
    });
    c.bench_function("list/page_of_100/participant", |b| {
        let filter = ListFilter::new()
            .participant(colloquy_benches::name("server"))
            .limit(100);
        b.to_async(&rt)
            .iter(|| async { store.list(&filter).await.expect("list").conversations.len() })
    });
    c.bench_function(&format!("analytics/all_{count}"), |b| {
        b.to_async(&rt).iter(|| async {
            store
                .analytics(TimeRange::all())
                .await
                .expect("analytics")
                .conversations
        })
    });
}

criterion_group!(benches, list_and_analytics);
criterion_main!(benches);
