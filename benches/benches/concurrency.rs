//! 1,000 conversations each making one round trip at once, through the hub on the memory
//! store: the cost of the hot cache, the turn locks and the scheduler under load.
#![allow(missing_docs, clippy::expect_used)]

use colloquy_benches::{echo_hub, runtime, scale};
use colloquy_runtime::ConversationSpec;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

fn thousand_at_once(c: &mut Criterion) {
    let rt = runtime().expect("tokio runtime");
    let conversations = scale(1_000, 50);
    let (hub, handles) = rt.block_on(async {
        let hub = echo_hub(false).await;
        let mut handles = Vec::new();
        for _ in 0..conversations {
            handles.push(
                hub.start_conversation(
                    ConversationSpec::between("client", "server").expect("names"),
                )
                .await
                .expect("open"),
            );
        }
        (hub, handles)
    });
    let payload = json!("x".repeat(200));
    let mut group = c.benchmark_group("concurrency");
    group.throughput(Throughput::Elements(conversations as u64));
    group.bench_function(
        format!("{conversations}_conversations_one_round_trip_each"),
        |b| {
            b.to_async(&rt).iter(|| async {
                let mut tasks = tokio::task::JoinSet::new();
                for conv in &handles {
                    let (conv, payload) = (conv.clone(), payload.clone());
                    tasks.spawn(async move { conv.send(payload).await });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("task").expect("round trip");
                }
            })
        },
    );
    group.finish();
    rt.block_on(hub.shutdown());
}

criterion_group!(benches, thousand_at_once);
criterion_main!(benches);
