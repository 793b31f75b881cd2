//! The link between hubs (ARCHITECTURE.md, "Cluster"): a turn to a module another hub hosts
//! goes to that hub over HTTP/2, runs through its router's call discipline, and the sender
//! stores the answer; the database's delivery queue is used only where the link cannot
//! serve. Needs `COLLOQUY_TEST_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use colloquy_runtime::{
    async_trait, ConversationSpec, Hub, HubError, LinkConfig, Module, ModuleError, ModuleInfo,
    Response, RouteError, Turn,
};
use colloquy_testkit::{
    conformance::{PostgresFactory, StoreFactory},
    eventually, mock,
    modules::{Echo, Panicking},
};

async fn hub(factory: &PostgresFactory, name: &str, link: Option<LinkConfig>) -> Hub {
    Hub::builder()
        .store(Arc::new(factory.open().await.unwrap()))
        .member_name(name)
        .member_timeout(colloquy_testkit::scaled(Duration::from_secs(2)))
        .cluster_link(link)
        .build()
        .await
        .unwrap()
}

/// Waits until `hub` can address `module` (learnt at a heartbeat).
async fn learns(hub: &Hub, module: &str) {
    let learnt = eventually(
        || async {
            hub.reachable_modules()
                .iter()
                .any(|m| m.name.as_str() == module)
        },
        colloquy_testkit::scaled(Duration::from_secs(10)),
    )
    .await;
    assert!(
        learnt,
        "the sender's hub learns that another hub hosts {module}"
    );
}

/// Replies with the number of turns queued in the database's delivery table while it runs:
/// 0 when its turn came over the link, 1 when it came through the database.
struct Probe {
    name: &'static str,
    client: Arc<tokio_postgres::Client>,
}

impl Probe {
    async fn new(name: &'static str, url: &str, schema: &str) -> Self {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .await
            .unwrap();
        Self {
            name,
            client: Arc::new(client),
        }
    }
}

#[async_trait]
impl Module for Probe {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.parse().unwrap())
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let queued: i64 = self
            .client
            .query_one("SELECT count(*) FROM deliveries", &[])
            .await
            .map_err(|e| ModuleError::new(e.to_string()))?
            .get(0);
        Ok(Response::reply(serde_json::json!({
            "queued": queued,
            "echo": turn.message.content,
        })))
    }
}

async fn queued_while_answering(sender: &Hub, module: &str, turns: u64) -> Vec<i64> {
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", module).unwrap())
        .await
        .unwrap();
    let mut queued = Vec::new();
    for n in 1..=turns {
        let exchange = conversation.send(format!("turn {n}")).await.unwrap();
        let reply = exchange.reply.unwrap();
        assert_eq!(reply.turn, 2 * n, "the reply is the turn after its request");
        assert_eq!(reply.content["echo"], format!("turn {n}").as_str());
        queued.push(reply.content["queued"].as_i64().unwrap());
    }
    conversation.end().await.unwrap();
    queued
}

/// Each hub advertises its link in its member row; a turn to a module of another hub goes
/// over it (nothing is queued in the database while the module runs), while a hub without
/// a link is still reached through the database (one delivery row while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_to_another_hub_goes_over_the_link_and_a_hub_without_one_through_the_database() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let linked = hub(&factory, "linked", Some(LinkConfig::loopback())).await;
    let unlinked = hub(&factory, "unlinked", None).await;
    let sender = hub(&factory, "sender", Some(LinkConfig::loopback())).await;
    linked
        .register(Probe::new("direct", &url, factory.schema()).await)
        .await
        .unwrap();
    unlinked
        .register(Probe::new("queued", &url, factory.schema()).await)
        .await
        .unwrap();
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    assert!(unlinked.cluster_address().is_none());
    let address = linked.cluster_address().unwrap().to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let members = sender.members().await.unwrap().unwrap();
    let advertised = members.iter().find(|m| m.name == "linked").unwrap();
    assert_eq!(advertised.address.as_deref(), Some(address.as_str()));
    learns(&sender, "direct").await;
    learns(&sender, "queued").await;

    assert_eq!(
        queued_while_answering(&sender, "direct", 3).await,
        [0, 0, 0]
    );
    assert_eq!(queued_while_answering(&sender, "queued", 2).await, [1, 1]);
    for hub in [linked, unlinked, sender] {
        hub.shutdown().await;
    }
}

/// Hubs that do not share the secret cannot use each other's links (the host refuses the
/// turn before reading it), and the turn still arrives, through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_secret_is_refused_and_the_turn_goes_through_the_database() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let host = hub(
        &factory,
        "host",
        Some(LinkConfig::loopback().secret("right-secret")),
    )
    .await;
    let intruder = hub(
        &factory,
        "intruder",
        Some(LinkConfig::loopback().secret("wrong")),
    )
    .await;
    let friend = hub(
        &factory,
        "friend",
        Some(LinkConfig::loopback().secret("right-secret")),
    )
    .await;
    host.register(Probe::new("guarded", &url, factory.schema()).await)
        .await
        .unwrap();
    for sender in [&intruder, &friend] {
        sender
            .register(Echo::new("client".parse().unwrap()))
            .await
            .unwrap();
        learns(sender, "guarded").await;
    }
    assert_eq!(queued_while_answering(&intruder, "guarded", 1).await, [1]);
    assert_eq!(queued_while_answering(&friend, "guarded", 1).await, [0]);
    for hub in [host, intruder, friend] {
        hub.shutdown().await;
    }
}

/// A link that would listen beyond this machine without a secret is refused at build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_beyond_loopback_needs_a_secret() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let refused = Hub::builder()
        .store(Arc::new(factory.open().await.unwrap()))
        .cluster_link(LinkConfig::new("0.0.0.0:0".parse().unwrap()))
        .build()
        .await
        .unwrap_err();
    match refused {
        HubError::Cluster { reason } => {
            assert!(reason.contains("without a cluster secret"), "{reason}")
        }
        other => panic!("expected a cluster error, got {other:?}"),
    }
}

/// A module that panics on another hub is a failed turn with the panic's message, well
/// before the deadline (the host contains it as it would for a local turn), and the
/// conversation goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_module_that_panics_fails_the_turn_with_its_message() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let host = hub(&factory, "host", Some(LinkConfig::loopback())).await;
    let sender = Hub::builder()
        .store(Arc::new(factory.open().await.unwrap()))
        .member_name("sender")
        .member_timeout(colloquy_testkit::scaled(Duration::from_secs(2)))
        // Long enough that a timeout cannot be mistaken for the panic's answer.
        .handler_deadline(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    host.register(Panicking::new(
        "panicky".parse().unwrap(),
        "the remote module broke",
    ))
    .await
    .unwrap();
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    learns(&sender, "panicky").await;
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", "panicky").unwrap())
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(300), conversation.send("hello"))
        .await
        .expect("answered long before the deadline")
        .unwrap_err();
    match failed {
        HubError::Route(RouteError::HandlerFailed {
            module, message, ..
        }) => {
            assert_eq!(module.as_str(), "panicky");
            assert!(message.contains("the remote module broke"), "{message}");
        }
        other => panic!("expected the remote panic as a failed turn, got {other:?}"),
    }
    let transcript = sender
        .reader()
        .messages(conversation.id(), colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(transcript.len(), 1, "the request is stored, no reply");
    host.shutdown().await;
    sender.shutdown().await;
}

/// A hub shutting down drains the turns it runs for other hubs as it drains its own: the
/// sender gets the answer, and the host leaves only afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_shutting_down_finishes_the_turns_it_runs_for_others() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let host = hub(&factory, "host", Some(LinkConfig::loopback())).await;
    let sender = hub(&factory, "sender", Some(LinkConfig::loopback())).await;
    // Holds the turn until the test answers it.
    let (gated, mut turns) = mock("gated".parse().unwrap());
    host.register(gated).await.unwrap();
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    learns(&sender, "gated").await;
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", "gated").unwrap())
        .await
        .unwrap();
    let sending = tokio::spawn(async move { conversation.send("please").await });
    let pending = turns
        .next_turn()
        .await
        .expect("the turn reaches the host's module");
    let stopping = tokio::spawn({
        let host = host.clone();
        async move { host.shutdown().await }
    });
    // The host is draining: it stays until the turn it runs is answered.
    let drained = eventually(
        || async {
            host.stats().in_flight == 1
                && host
                    .health(None)
                    .await
                    .problems
                    .iter()
                    .any(|p| p.contains("shutting down"))
        },
        colloquy_testkit::scaled(Duration::from_secs(10)),
    )
    .await;
    assert!(
        drained,
        "the host is shutting down with the hosted turn in flight"
    );
    assert!(!stopping.is_finished());
    let released = format!("released {}", pending.turn.message.content);
    pending.reply(released);
    let exchange = sending.await.unwrap().unwrap();
    assert_eq!(exchange.reply.unwrap().content, "released \"please\"");
    let report = stopping.await.unwrap();
    assert!(report.drained, "{report:?}");
    sender.shutdown().await;
}
