//! `RUST_LOG=colloquy_router=debug` shows each routing decision, in spans that carry the
//! conversation id, turn, source and target; a turn that crosses hubs is traced on the host
//! under the sender's hub, conversation, turn and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use colloquy_runtime::ConversationSpec;
use colloquy_testkit::{modules::Echo, TestCluster, TestHub};
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

impl Buffer {
    /// What was logged so far.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Logs what `targets` lets through, as `RUST_LOG` would, into a buffer, on this thread
/// (the tests run on one, so every task of their hubs is seen) until the guard drops.
fn capture(targets: Targets) -> (Buffer, tracing::subscriber::DefaultGuard) {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::registry().with(targets).with(
        tracing_subscriber::fmt::layer()
            .with_writer(buffer.clone())
            .with_ansi(false),
    );
    (buffer, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn router_debug_logs_carry_the_conversation_turn_source_and_target() {
    // The same filter RUST_LOG=colloquy_router=debug gives.
    let (buffer, _guard) = capture(Targets::new().with_target("colloquy_router", Level::DEBUG));

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

    let log = buffer.text();
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
    let (buffer, _guard) = capture(
        Targets::new()
            .with_target("colloquy_router", Level::DEBUG)
            .with_target("chatty_module", Level::INFO),
    );
    let hub = TestHub::memory().await.unwrap();
    let conv = hub
        .converse(Echo::new("asker".parse().unwrap()), Chatty)
        .await
        .unwrap();
    conv.send("hello").await.unwrap();
    let log = buffer.text();
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

/// A turn that crosses hubs over the link is traced on the host in spans that name the
/// sending hub, the conversation, the turn and the message, around the router's own
/// `hosted_turn` span: the host's events of an exchange are found from the sender's.
#[tokio::test]
async fn the_host_traces_a_linked_turn_under_the_senders_hub_conversation_and_turn() {
    let (buffer, _guard) = capture(
        Targets::new()
            .with_target("colloquy_cluster", Level::DEBUG)
            .with_target("colloquy_router", Level::DEBUG)
            .with_target("chatty_module", Level::INFO),
    );
    let cluster = TestCluster::new();
    let host = cluster.hub("host").build().await.unwrap();
    host.register(Chatty).await.unwrap();
    let sender = cluster.hub("sender").build().await.unwrap();
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    assert!(
        sender
            .reachable_modules()
            .iter()
            .any(|m| m.name.as_str() == "chatty"),
        "the sender learnt the host's module when it joined"
    );
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", "chatty").unwrap())
        .await
        .unwrap();
    let exchange = tokio::time::timeout(Duration::from_secs(30), conversation.send("job"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exchange.reply.unwrap().content, "job");

    let log = buffer.text();
    let line = log
        .lines()
        .find(|l| l.contains("handling inside the module"))
        .unwrap_or_else(|| panic!("the module's event is logged:\n{log}"));
    let linked = format!(
        "link_turn{{from_hub=sender conversation_id={} turn=1 message_id={}}}",
        conversation.id(),
        exchange.request.id
    );
    assert!(line.contains(&linked), "{linked} missing in:\n{line}");
    assert!(
        line.contains("hosted_turn{") && line.contains("source=client target=chatty"),
        "{line}"
    );
    assert!(
        !log.contains("history window rebuilt"),
        "the first turn carries its window whole:\n{log}"
    );
    // The next turn sends only what the host has not seen: the reply to turn 1.
    conversation.send("next job").await.unwrap();
    let log = buffer.text();
    let rebuilt = log
        .lines()
        .find(|l| l.contains("history window rebuilt"))
        .unwrap_or_else(|| panic!("the second turn's window goes by reference:\n{log}"));
    assert!(rebuilt.contains("sent=1 window=2"), "{rebuilt}");
    sender.shutdown().await;
    host.shutdown().await;
}
