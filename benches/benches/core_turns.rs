//! Core turn acceptance: the pure state machine's cost per message.
#![allow(missing_docs)]

use colloquy_benches::{name, Ids};
use colloquy_core::{Draft, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn accept(c: &mut Criterion) {
    let mut ids = Ids::default();
    let t = Timestamp::from_millis(1_700_000_000_000);
    let mut conversation = ids.conversation(t);
    let (client, server) = (name("client"), name("server"));
    let content = json!("x".repeat(200));
    c.bench_function("core/accept_turn", |b| {
        b.iter(|| {
            let draft = Draft::request(client.clone(), server.clone(), content.clone());
            let message = conversation.accept(draft, ids.message(t), t);
            std::hint::black_box(message.map(|m| m.turn))
        })
    });
    c.bench_function("core/check_draft", |b| {
        let draft = Draft::request(client.clone(), server.clone(), content.clone());
        b.iter(|| std::hint::black_box(conversation.check_draft(&draft, t)))
    });
}

criterion_group!(benches, accept);
criterion_main!(benches);
