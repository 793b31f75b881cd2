//! Fixtures shared by the criterion benchmarks in `benches/benches/` (which use public APIs
//! only). See `benches/README.md` for the targets, the commands and the measured figures.
//!
//! # What this crate deliberately does not do
//!
//! - It is never a dependency of another crate and adds nothing to a hub.
//! - No timing is asserted anywhere: CI only compiles the benchmarks and runs each once
//!   (`cargo test --benches`); figures come from `cargo bench` and `colloquy load`.

use std::time::Duration;

use colloquy_core::{
    Conversation, ConversationId, Draft, HandshakeOutcome, Intent, Message, MessageId, ModuleName,
    Timestamp,
};
use serde_json::json;

/// True under `cargo bench` (criterion receives `--bench`); false when `cargo test
/// --benches` runs each benchmark once, where fixtures are kept small.
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` under `cargo bench`, `small` under `cargo test --benches`.
pub fn scale(full: usize, small: usize) -> usize {
    if full_run() {
        full
    } else {
        small
    }
}

/// A multi-threaded tokio runtime like a hub's.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// A hub (memory, or a temporary SQLite file) with two echo modules, `client` and
/// `server`, as the routing and concurrency benches use it.
///
/// # Panics
///
/// If the hub cannot be built (a benchmark cannot run without it).
#[allow(clippy::expect_used)] // Fixture set-up: failing loudly is the point.
pub async fn echo_hub(sqlite: bool) -> colloquy_testkit::TestHub {
    let hub = if sqlite {
        colloquy_testkit::TestHub::sqlite().await
    } else {
        colloquy_testkit::TestHub::memory().await
    }
    .expect("hub");
    for module in ["client", "server"] {
        hub.register(colloquy_testkit::modules::Echo::new(name(module)))
            .await
            .expect("register");
    }
    hub
}

/// A module name from a literal.
///
/// # Panics
///
/// If `name` is not a valid module name (benchmarks pass literals).
#[allow(clippy::expect_used)] // Only literals known to be valid are passed.
pub fn name(name: &str) -> ModuleName {
    name.parse()
        .expect("benchmark module names are valid literals")
}

/// Builds unique ids from a counter, so fixtures are deterministic.
#[derive(Debug, Default)]
pub struct Ids(u64);

impl Ids {
    fn next(&mut self) -> [u8; 10] {
        self.0 += 1;
        let b = self.0.to_be_bytes();
        [0xB0, 0x0C, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// A new message id at `t`.
    pub fn message(&mut self, t: Timestamp) -> MessageId {
        MessageId::from_parts(t, self.next())
    }

    /// A new active conversation between `a` and `b`, started at `t`.
    ///
    /// # Panics
    ///
    /// Never for the fixed arguments benchmarks use (two distinct valid names).
    #[allow(clippy::expect_used)] // Two distinct names and a positive timeout cannot fail.
    pub fn conversation(&mut self, t: Timestamp) -> Conversation {
        let mut c = Conversation::new(
            ConversationId::from_parts(t, self.next()),
            vec![name("client"), name("server")],
            Intent::Collaborate,
            Duration::from_secs(3_600),
            t,
        )
        .expect("valid fixture conversation");
        c.conclude_handshake(&name("server"), &HandshakeOutcome::Accept, t)
            .expect("handshake of a fresh conversation");
        c
    }

    /// Accepts `turns` more messages with `payload`-byte contents into `c`, and makes `c`
    /// the next write of the conversation (one batch, one append). The messages come
    /// behind `Arc`, as `ConversationStore::append` takes them.
    ///
    /// # Panics
    ///
    /// Never for the fixtures above (participants, no turn limit, no expiry).
    #[allow(clippy::expect_used)] // Participants are valid and the conversation never expires.
    pub fn talk(
        &mut self,
        c: &mut Conversation,
        turns: usize,
        payload: usize,
    ) -> Vec<std::sync::Arc<Message>> {
        let text = "x".repeat(payload);
        let messages: Vec<std::sync::Arc<Message>> = (0..turns)
            .map(|_| {
                let t = c.last_activity();
                let (from, to) = if c.turn_count().is_multiple_of(2) {
                    ("client", "server")
                } else {
                    ("server", "client")
                };
                c.accept(
                    Draft::request(name(from), name(to), json!(text)),
                    self.message(t),
                    t,
                )
                .map(std::sync::Arc::new)
                .expect("fixture turn")
            })
            .collect();
        if !messages.is_empty() {
            // One batch is one write of the conversation.
            c.bump_version();
        }
        messages
    }
}
