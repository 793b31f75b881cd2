//! A turn that crosses hubs over the link is traced on the host in spans that name the
//! sending hub, the conversation, the turn and the message, around the router's own
//! `hosted_turn` span: the host's events of an exchange are found from the sender's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use colloquy_runtime::{
    async_trait, Clock, ConversationSpec, Hub, Module, ModuleError, ModuleInfo, Response, Turn,
};
use colloquy_storage::MemoryStore;
use colloquy_testkit::modules::Echo;
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

/// Logs that it works on the turn.
struct Worker;

#[async_trait]
impl Module for Worker {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("worker".parse().unwrap())
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        tracing::info!("working on it");
        Ok(Response::reply(turn.message.content.clone()))
    }
}

// One thread: the subscriber set for this test sees every task of both hubs.
#[tokio::test]
async fn the_host_traces_a_linked_turn_under_the_senders_hub_conversation_and_turn() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            Targets::new()
                .with_target("colloquy_cluster", Level::DEBUG)
                .with_target("colloquy_router", Level::DEBUG)
                .with_target("tracing_cluster", Level::INFO),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(buffer.clone())
                .with_ansi(false),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = Clock::system();
    let store = MemoryStore::cluster(move || clock.now());
    let host = Hub::builder()
        .store(Arc::new(store.handle()))
        .member_name("host")
        .build()
        .await
        .unwrap();
    host.register(Worker).await.unwrap();
    let sender = Hub::builder()
        .store(Arc::new(store.handle()))
        .member_name("sender")
        .build()
        .await
        .unwrap();
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    assert!(
        sender
            .reachable_modules()
            .iter()
            .any(|m| m.name.as_str() == "worker"),
        "the sender learnt the host's module when it joined"
    );
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", "worker").unwrap())
        .await
        .unwrap();
    let exchange = tokio::time::timeout(Duration::from_secs(30), conversation.send("job"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exchange.reply.unwrap().content, "job");

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("working on it"))
        .unwrap_or_else(|| panic!("the module's event is logged:\n{log}"));
    let linked = format!(
        "link_turn{{from_hub=sender conversation_id={} turn=1 message_id={}}}",
        conversation.id(),
        exchange.request.id
    );
    assert!(line.contains(&linked), "{linked} missing in:\n{line}");
    assert!(
        line.contains("hosted_turn{") && line.contains("source=client target=worker"),
        "{line}"
    );
    assert!(
        !log.contains("history window rebuilt"),
        "the first turn carries its window whole:\n{log}"
    );
    // The next turn sends only what the host has not seen: the reply to turn 1.
    conversation.send("next job").await.unwrap();
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let rebuilt = log
        .lines()
        .find(|l| l.contains("history window rebuilt"))
        .unwrap_or_else(|| panic!("the second turn's window goes by reference:\n{log}"));
    assert!(rebuilt.contains("sent=1 window=2"), "{rebuilt}");
    sender.shutdown().await;
    host.shutdown().await;
}
