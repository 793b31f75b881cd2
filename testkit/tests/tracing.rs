//! `RUST_LOG=colloquy_router=debug` shows each routing decision, in spans that carry the
//! conversation id, turn, source and target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use colloquy_runtime::ConversationSpec;
use colloquy_testkit::{modules::Echo, TestHub};
use tracing::Level;
use tracing_subscriber::{filter::Targets, fmt::MakeWriter, layer::SubscriberExt};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test]
async fn router_debug_logs_carry_the_conversation_turn_source_and_target() {
    let buffer = Buffer::default();
    // The same filter RUST_LOG=colloquy_router=debug gives.
    let subscriber = tracing_subscriber::registry()
        .with(Targets::new().with_target("colloquy_router", Level::DEBUG))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(buffer.clone())
                .with_ansi(false),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let hub = TestHub::memory().await.unwrap();
    hub.register(Echo::new("asker".parse().unwrap()))
        .await
        .unwrap();
    hub.register(Echo::new("answerer".parse().unwrap()))
        .await
        .unwrap();
    let conv = hub
        .start_conversation(ConversationSpec::between("asker", "answerer").unwrap())
        .await
        .unwrap();
    conv.send("hello").await.unwrap();
    let err = conv
        .send_to("stranger".parse().unwrap(), "psst")
        .await
        .unwrap_err();
    drop(err);

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let span = format!(
        "route{{conversation_id={} source=asker target=answerer turn=1}}",
        conv.id()
    );
    assert!(log.contains(&span), "missing span {span} in:\n{log}");
    assert!(log.contains("request stored, delivering"), "{log}");
    assert!(log.contains("turn complete"), "{log}");
    assert!(
        log.contains("draft refused"),
        "the refused send is logged too:\n{log}"
    );
    assert!(
        !log.contains("colloquy_storage"),
        "other crates stay quiet at this filter"
    );
}

/// Logs one event from inside its handler.
struct Chatty;

#[async_trait::async_trait]
impl colloquy_registry::Module for Chatty {
    fn info(&self) -> colloquy_core::ModuleInfo {
        colloquy_core::ModuleInfo::new("chatty".parse().unwrap())
    }

    async fn handle(
        &self,
        turn: colloquy_registry::Turn,
    ) -> Result<colloquy_registry::Response, colloquy_registry::ModuleError> {
        tracing::info!(target: "chatty_module", "handling inside the module");
        Ok(colloquy_registry::Response::reply(
            turn.message.content.clone(),
        ))
    }
}

/// A handler runs as its own task, inside the turn's span: a module's own events carry the
/// conversation, turn, source and target too.
#[tokio::test]
async fn a_modules_own_events_carry_the_turns_span() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            Targets::new()
                .with_target("colloquy_router", Level::DEBUG)
                .with_target("chatty_module", Level::INFO),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(buffer.clone())
                .with_ansi(false),
        );
    let _guard = tracing::subscriber::set_default(subscriber);
    let hub = TestHub::memory().await.unwrap();
    let conv = hub
        .converse(Echo::new("asker".parse().unwrap()), Chatty)
        .await
        .unwrap();
    conv.send("hello").await.unwrap();
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("handling inside the module"))
        .unwrap_or_else(|| panic!("the module's event is missing:\n{log}"));
    let span = format!(
        "route{{conversation_id={} source=asker target=chatty turn=1}}",
        conv.id()
    );
    assert!(line.contains(&span), "{line}");
}
