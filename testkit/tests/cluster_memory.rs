//! The cluster on paused time: hubs of one process sharing one in-memory store
//! (`MemoryStore::cluster`) fence a hub that falls silent and take over the exchange it
//! left, with no database and no waiting: tokio's clock jumps over the member timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_runtime::{ConversationSpec, Hub, MessageRange, Status};
use colloquy_testkit::{
    modules::{Echo, Slow},
    TestCluster,
};

const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

async fn hub(cluster: &TestCluster, name: &str) -> Hub {
    cluster
        .hub(name)
        .member_timeout(MEMBER_TIMEOUT)
        // No sockets on paused time: turns between these hubs go through the store's queue.
        .cluster_link(None)
        .build()
        .await
        .unwrap()
}

/// Hub A stores a request and dies while its module works on it (its process gone: the
/// caller's future and the hub dropped, no shutdown, no leave). Hub B fences A once A has
/// been silent for the member timeout, claims the exchange A left, delivers the request
/// again under its own message id to its own `worker`, and stores the reply: within the
/// member timeout plus one heartbeat of A's last one, on tokio's clock.
#[tokio::test(start_paused = true)]
async fn a_silent_hubs_exchange_is_taken_over_within_the_member_timeout_and_a_heartbeat() {
    let cluster = TestCluster::new();
    let a = hub(&cluster, "a").await;
    let b = hub(&cluster, "b").await;
    a.register(Slow::new(
        "worker".parse().unwrap(),
        Duration::from_secs(3_600),
    ))
    .await
    .unwrap();
    a.register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    b.register(Echo::new("worker".parse().unwrap()))
        .await
        .unwrap();
    let conversation = a
        .start_conversation(ConversationSpec::between("client", "worker").unwrap())
        .await
        .unwrap();
    let id = conversation.id();
    let sending = tokio::spawn(async move { conversation.send("finish me").await });
    // The request is stored (the conversation is busy) before A dies.
    let reader = b.reader();
    while reader
        .messages(id, MessageRange::All)
        .await
        .unwrap()
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let died = tokio::time::Instant::now();
    sending.abort();
    let _ = sending.await;
    drop(a);

    let concluded = loop {
        let transcript = reader.messages(id, MessageRange::All).await.unwrap();
        if transcript.len() == 2 {
            break transcript;
        }
        assert!(
            died.elapsed() < Duration::from_secs(60),
            "not taken over within a minute: {transcript:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = died.elapsed();
    assert!(
        took <= MEMBER_TIMEOUT + MEMBER_TIMEOUT / 5 + Duration::from_millis(100),
        "taken over {took:?} after A died: more than the member timeout plus one heartbeat"
    );
    assert!(
        took >= MEMBER_TIMEOUT - MEMBER_TIMEOUT / 5,
        "not before A could be silent: {took:?}"
    );
    assert_eq!(concluded[1].turn, 2);
    assert_eq!(concluded[1].in_reply_to, Some(concluded[0].id));
    assert_eq!(concluded[1].content, "finish me");
    let members = b.members().await.unwrap().unwrap();
    let lost = members.iter().find(|m| m.name == "a").unwrap();
    assert_eq!(lost.state(), "lost", "{lost:?}");
    let state = b.reader().conversation(id).await.unwrap().unwrap();
    assert_eq!(state.status(), &Status::Active);
    assert_eq!(state.busy_until(), None, "the exchange is over");
    b.shutdown().await;
}

/// A hub fenced while it was paused cannot write when it resumes: its first write is
/// refused as fenced, its next heartbeat tells it, and it joins again under a new epoch and
/// writes again.
#[tokio::test(start_paused = true)]
async fn a_fenced_hub_writes_nothing_until_it_rejoins() {
    let cluster = TestCluster::new();
    let a = hub(&cluster, "a").await;
    let b = hub(&cluster, "b").await;
    a.register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    a.register(Echo::new("worker".parse().unwrap()))
        .await
        .unwrap();
    let first = a.member().unwrap();
    let conversation = a
        .start_conversation(ConversationSpec::between("client", "worker").unwrap())
        .await
        .unwrap();
    // B fences A as the others would after its silence (A's own heartbeat would win the
    // race on a clock that never stalls).
    use colloquy_storage::ConversationStore;
    cluster
        .store()
        .membership()
        .unwrap()
        .leave(first)
        .await
        .unwrap();
    let refused = conversation.send("while fenced").await.unwrap_err();
    assert!(refused.to_string().contains("fenced"), "{refused}");
    // Its next heartbeat finds out, and it rejoins under a new epoch.
    tokio::time::sleep(MEMBER_TIMEOUT / 5 + Duration::from_millis(10)).await;
    let second = a.member().unwrap();
    assert!(second.epoch > first.epoch, "{first:?} then {second:?}");
    let exchange = conversation.send("after rejoining").await.unwrap();
    assert_eq!(exchange.request.turn, 1, "the refused request left nothing");
    a.shutdown().await;
    b.shutdown().await;
}

/// Replies with the turns of the history window it was handed.
struct Historian;

#[colloquy_runtime::async_trait]
impl colloquy_runtime::Module for Historian {
    fn info(&self) -> colloquy_runtime::ModuleInfo {
        colloquy_runtime::ModuleInfo::new("historian".parse().unwrap())
    }

    async fn handle(
        &self,
        turn: colloquy_runtime::Turn,
    ) -> Result<colloquy_runtime::Response, colloquy_runtime::ModuleError> {
        let turns: Vec<u64> = turn.history.iter().map(|m| m.turn).collect();
        let contents: Vec<serde_json::Value> =
            turn.history.iter().map(|m| m.content.clone()).collect();
        Ok(colloquy_runtime::Response::reply(
            serde_json::json!({ "turns": turns, "contents": contents }),
        ))
    }
}

/// Over the link the history window goes by reference (only what the host has not seen),
/// and the module on the other hub is handed exactly the window a local module would be:
/// the last three messages before each request, contents included, also when another
/// participant's turns come in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_on_another_hub_gets_the_same_history_window_over_the_link() {
    let cluster = TestCluster::new();
    let host = cluster.hub("host").build().await.unwrap();
    host.register(Historian).await.unwrap();
    let sender = cluster
        .hub("sender")
        .history_window(3)
        .build()
        .await
        .unwrap();
    assert!(sender.cluster_address().is_some(), "the hubs are linked");
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    sender
        .register(Echo::new("local".parse().unwrap()))
        .await
        .unwrap();
    let conversation = sender
        .start_conversation(ConversationSpec::new(
            "client".parse().unwrap(),
            ["historian".parse().unwrap(), "local".parse().unwrap()],
        ))
        .await
        .unwrap();
    let mut stored = 0u64;
    for n in 1..=6u64 {
        // Every third exchange goes to the local module: turns the host never saw.
        let target = if n % 3 == 0 { "local" } else { "historian" };
        let exchange = conversation
            .send_to(target.parse().unwrap(), format!("message {n}"))
            .await
            .unwrap();
        let request = exchange.request.turn;
        assert_eq!(request, stored + 1);
        stored = request + 1;
        if target == "historian" {
            let reply = exchange.reply.unwrap();
            let expected: Vec<u64> = (request.saturating_sub(3).max(1)..request).collect();
            assert_eq!(
                reply.content["turns"],
                serde_json::json!(expected),
                "exchange {n}"
            );
            let transcript = sender
                .reader()
                .messages(conversation.id(), MessageRange::All)
                .await
                .unwrap();
            let contents: Vec<serde_json::Value> = transcript
                .iter()
                .filter(|m| expected.contains(&m.turn))
                .map(|m| m.content.clone())
                .collect();
            assert_eq!(
                reply.content["contents"],
                serde_json::json!(contents),
                "exchange {n}"
            );
        }
    }
    sender.shutdown().await;
    host.shutdown().await;
}

/// A conversation opened with its first request to a module on another hub: the
/// invitation and the request cross the link, and the sender's hub writes three times
/// (created, the handshake's outcome with the request, the reply), each turn under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_opened_with_its_first_request_crosses_hubs_in_three_writes() {
    let cluster = TestCluster::new();
    let host = cluster.hub("host").build().await.unwrap();
    host.register(Echo::new("worker".parse().unwrap()))
        .await
        .unwrap();
    let sender = cluster.hub("sender").build().await.unwrap();
    assert!(sender.cluster_address().is_some(), "the hubs are linked");
    sender
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    let (conversation, sent) = sender
        .start_conversation_and_send(
            ConversationSpec::between("client", "worker").unwrap(),
            "worker".parse().unwrap(),
            colloquy_runtime::MessageKind::Request,
            "across",
            colloquy_runtime::RouteOptions::default(),
        )
        .await
        .unwrap();
    let exchange = sent.unwrap();
    assert_eq!(exchange.request.turn, 1);
    assert_eq!(exchange.reply.unwrap().content, "across");
    let stored = host
        .reader()
        .conversation(conversation.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.phase(), stored.turn_count(), stored.version()),
        (colloquy_runtime::Phase::Execution, 2, 2)
    );
    let writers = sender
        .turn_writers(conversation.id(), MessageRange::All)
        .await
        .unwrap()
        .unwrap();
    let named: Vec<(u64, Option<&str>)> = writers
        .iter()
        .map(|w| (w.turn, w.name.as_deref()))
        .collect();
    assert_eq!(named, [(1, Some("sender")), (2, Some("sender"))]);
    sender.shutdown().await;
    host.shutdown().await;
}
