//! A routed round trip through the whole hub (request stored, delivered, reply stored),
//! on the memory store and on SQLite.
#![allow(missing_docs, clippy::expect_used)]

use colloquy_benches::{echo_hub, runtime};
use colloquy_runtime::ConversationSpec;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn round_trip(c: &mut Criterion) {
    let rt = runtime().expect("tokio runtime");
    for store in ["memory", "sqlite"] {
        let (hub, conv) = rt.block_on(async {
            let hub = echo_hub(store == "sqlite").await;
            let conv = hub
                .start_conversation(ConversationSpec::between("client", "server").expect("names"))
                .await
                .expect("open");
            (hub, conv)
        });
        let payload = json!("x".repeat(200));
        c.bench_function(&format!("routing/round_trip/{store}"), |b| {
            b.to_async(&rt).iter(|| async {
                let exchange = conv.send(payload.clone()).await.expect("round trip");
                std::hint::black_box(exchange.request.turn)
            })
        });
        rt.block_on(hub.shutdown());
    }
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
