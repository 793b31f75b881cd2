//! Several hubs on one PostgreSQL schema (ARCHITECTURE.md, "Cluster"), in one process: each
//! joins as a member with the modules it hosts, a hub that goes silent is fenced by another
//! after the member timeout, one that shuts down leaves at once, and the reapers of two
//! hubs time each expired conversation out exactly once. Needs `COLLOQUY_TEST_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use colloquy_runtime::{ConversationSpec, Hub, MemberRecord, Status};
use colloquy_testkit::{
    conformance::{PostgresFactory, StoreFactory},
    eventually,
    modules::Echo,
};

/// The hubs' member timeout, before CI's scaling: long enough that a hub merely slowed by
/// a busy machine is not fenced.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(1);

async fn hub(factory: &PostgresFactory, name: &str) -> Hub {
    Hub::builder()
        .store(Arc::new(factory.open().await.unwrap()))
        .member_name(name)
        .member_timeout(MEMBER_TIMEOUT.mul_f64(colloquy_testkit::timeout_scale()))
        .build()
        .await
        .unwrap()
}

async fn members(hub: &Hub) -> Vec<MemberRecord> {
    hub.members().await.expect("a shared store").unwrap()
}

fn named<'a>(members: &'a [MemberRecord], name: &str) -> Option<&'a MemberRecord> {
    members.iter().find(|m| m.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_join_with_their_modules_and_a_silent_one_is_fenced() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let a = hub(&factory, "hub-a").await;
    let b = hub(&factory, "hub-b").await;
    let c = hub(&factory, "hub-c").await;
    a.register(Echo::new("alpha".parse().unwrap()))
        .await
        .unwrap();
    b.register(Echo::new("beta".parse().unwrap()))
        .await
        .unwrap();
    assert!(a.member().is_some() && b.member().is_some());
    assert_ne!(a.member(), b.member());

    // Each hub's modules reach the table with its next heartbeat.
    let listed = eventually(
        || async {
            let all = members(&a).await;
            let hosts = |name: &str, module: &str| {
                named(&all, name).is_some_and(|m| {
                    m.alive && m.modules.iter().any(|info| info.name.as_str() == module)
                })
            };
            hosts("hub-a", "alpha") && hosts("hub-b", "beta") && named(&all, "hub-c").is_some()
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(listed, "{:?}", members(&a).await);

    // hub-c shuts down: it leaves at once.
    c.shutdown().await;
    let all = members(&a).await;
    let gone = named(&all, "hub-c").unwrap();
    assert!(gone.fenced && !gone.alive && gone.left, "{gone:?}");

    // A member that joins and then never heartbeats (a process that died; the binary's
    // SIGKILL test does it for real) is fenced by a live hub after the member timeout.
    let store = factory.open().await.unwrap();
    let ghost = colloquy_storage::ConversationStore::membership(&store)
        .unwrap()
        .join("ghost", None, &[])
        .await
        .unwrap();
    let fenced = eventually(
        || async { named(&members(&a).await, "ghost").is_some_and(|m| m.fenced) },
        Duration::from_secs(10),
    )
    .await;
    assert!(fenced, "{:?}", members(&a).await);
    let all = members(&a).await;
    let ghost_record = named(&all, "ghost").unwrap();
    assert_eq!(ghost_record.member, ghost);
    assert!(!ghost_record.alive);
    assert!(
        !ghost_record.left,
        "a member fenced by others was lost, not left"
    );
    // Saying goodbye after being fenced does not turn a lost member into one that left.
    colloquy_storage::ConversationStore::membership(&store)
        .unwrap()
        .leave(ghost)
        .await
        .unwrap();
    assert!(!named(&members(&a).await, "ghost").unwrap().left);
    // A fenced member's heartbeat is refused: it learns it must rejoin.
    let refused = colloquy_storage::ConversationStore::membership(&store)
        .unwrap()
        .heartbeat(ghost, &[])
        .await
        .unwrap();
    assert!(!refused, "a fenced member cannot heartbeat");
    assert!(named(&all, "hub-a").unwrap().alive && named(&all, "hub-b").unwrap().alive);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reapers_time_each_expired_conversation_out_once() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    // A hub that opened them and is gone: no hub holds them in memory, so only a reaper's
    // scan of the store finds them.
    let opener = hub(&factory, "opener").await;
    opener
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    opener
        .register(Echo::new("server".parse().unwrap()))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let spec = ConversationSpec::between("client", "server")
            .unwrap()
            .idle_timeout(Duration::from_secs(1));
        ids.push(opener.start_conversation(spec).await.unwrap().id());
    }
    opener.shutdown().await;
    let a = hub(&factory, "reaper-a").await;
    let b = hub(&factory, "reaper-b").await;
    // Past their idle timeout (on the hubs' clock, which is the system's here).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (from_a, from_b) = tokio::join!(a.reap(), b.reap());
    assert_eq!(
        from_a.timed_out + from_b.timed_out,
        ids.len(),
        "each conversation timed out exactly once ({} by a, {} by b)",
        from_a.timed_out,
        from_b.timed_out
    );
    for id in ids {
        let stored = a.reader().conversation(id).await.unwrap().unwrap();
        assert_eq!(*stored.status(), Status::TimedOut);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Three hubs on one database, 30 senders into one conversation through all three at once:
/// every send succeeds, the turns are contiguous, and every reply directly follows its
/// request (no exchange is interleaved with another, whichever hubs the senders used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_through_three_hubs_never_interleave_exchanges() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let mut hubs = Vec::new();
    for name in ["order-a", "order-b", "order-c"] {
        let hub = hub(&factory, name).await;
        hub.register(Echo::new("client".parse().unwrap()))
            .await
            .unwrap();
        hub.register(Echo::new("server".parse().unwrap()))
            .await
            .unwrap();
        hubs.push(hub);
    }
    let id = hubs[0]
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap()
        .id();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..30 {
        let hub = hubs[sender % 3].clone();
        senders.spawn(async move {
            let conversation = hub.conversation(id, "client".parse().unwrap()).await?;
            for n in 0..3 {
                let exchange = conversation.send(format!("{sender}-{n}")).await?;
                let reply = exchange.reply.expect("the echo replies");
                assert_eq!(reply.turn, exchange.request.turn + 1, "adjacent");
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap().unwrap();
    }
    let transcript = hubs[1]
        .reader()
        .messages(id, colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(transcript.len(), 180);
    for (i, message) in transcript.iter().enumerate() {
        assert_eq!(message.turn, i as u64 + 1, "contiguous");
        if i % 2 == 1 {
            assert_eq!(
                message.in_reply_to,
                Some(transcript[i - 1].id),
                "turn {}",
                message.turn
            );
            assert_eq!(message.content, transcript[i - 1].content);
        } else {
            assert_eq!(
                message.in_reply_to, None,
                "turn {} is a request",
                message.turn
            );
        }
    }
    for hub in hubs {
        hub.shutdown().await;
    }
}

/// Answers with where it runs.
struct Where(&'static str, &'static str);

#[colloquy_runtime::async_trait]
impl colloquy_runtime::Module for Where {
    fn info(&self) -> colloquy_runtime::ModuleInfo {
        colloquy_runtime::ModuleInfo::new(self.0.parse().unwrap())
            .with_capability("locate".parse().unwrap())
    }

    async fn handle(
        &self,
        turn: colloquy_runtime::Turn,
    ) -> Result<colloquy_runtime::Response, colloquy_runtime::ModuleError> {
        Ok(colloquy_runtime::Response::reply(format!(
            "{} at {}: {}",
            self.0, self.1, turn.message.content
        )))
    }
}

/// A module that lives only on hub A is used from hub C: the turn is delivered at A, the
/// reply comes back and is stored by C; broadcast by capability from C reaches it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_on_one_hub_is_used_from_another() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let a = hub(&factory, "host-a").await;
    let c = hub(&factory, "sender-c").await;
    a.register(Where("alpha", "hub A")).await.unwrap();
    c.register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    let learnt = eventually(
        || async {
            c.reachable_modules()
                .iter()
                .any(|m| m.name.as_str() == "alpha")
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(learnt, "hub C learns what hub A hosts from the heartbeats");
    let conversation = c
        .start_conversation(ConversationSpec::between("client", "alpha").unwrap())
        .await
        .unwrap();
    for n in 1..=3u64 {
        let exchange = conversation.send(format!("question {n}")).await.unwrap();
        let reply = exchange.reply.unwrap();
        assert_eq!(
            reply.content,
            format!("alpha at hub A: \"question {n}\"").as_str()
        );
        assert_eq!(reply.turn, 2 * n);
        assert_eq!(reply.source.as_str(), "alpha");
    }
    let transcript = a
        .reader()
        .messages(conversation.id(), colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(
        transcript.iter().map(|m| m.turn).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );

    let replies = c
        .broadcast(
            &"client".parse().unwrap(),
            &"locate".parse().unwrap(),
            serde_json::json!("anyone?"),
        )
        .await
        .unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].module.as_str(), "alpha");
    let reply = replies[0].result.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(reply.content, "alpha at hub A: \"anyone?\"");
    a.shutdown().await;
    c.shutdown().await;
}

/// A hub that stored a request and died before its answer (a member that joined, wrote,
/// and went silent): the next sender, on a live hub, waits until the dead member is fenced,
/// delivers the dead hub's request again under its own message id (at-least-once to the
/// handler), writes its reply, and only then its own exchange: the transcript stays
/// request, reply, request, reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hubs_unanswered_request_is_delivered_again_with_its_message_id() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let live = hub(&factory, "survivor").await;
    let (server, seen) = colloquy_testkit::modules::Recorder::new("server".parse().unwrap());
    live.register(server).await.unwrap();
    live.register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    let id = live
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap()
        .id();

    let orphan = leave_an_orphan(&factory, &live, id).await;
    let orphaned = std::time::Instant::now();

    // The live hub continues the conversation.
    let handle = live
        .conversation(id, "client".parse().unwrap())
        .await
        .unwrap();
    let exchange = handle.send("next").await.unwrap();
    // Once the dead member is fenced (its timeout, and a heartbeat or two), not when the
    // dead hub's request falls due a minute later.
    let waited = orphaned.elapsed();
    let bound = 2 * MEMBER_TIMEOUT.mul_f64(colloquy_testkit::timeout_scale())
        + colloquy_testkit::scaled(Duration::from_secs(2));
    assert!(
        waited <= bound,
        "the next sender waited {waited:?}, more than {bound:?}: for the dead hub's deadline?"
    );
    assert_eq!(
        exchange.request.turn, 3,
        "after the dead hub's exchange, concluded"
    );
    let ids: Vec<_> = seen.messages().iter().map(|m| m.id).collect();
    assert_eq!(
        ids.first(),
        Some(&orphan.id),
        "delivered again under its own message id"
    );
    let transcript = live
        .reader()
        .messages(id, colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(transcript.len(), 4);
    assert_eq!(transcript[0].id, orphan.id);
    assert_eq!(transcript[1].in_reply_to, Some(orphan.id));
    assert_eq!(transcript[1].content, "left behind");
    assert_eq!(transcript[3].in_reply_to, Some(transcript[2].id));
    live.shutdown().await;
}

/// The dead hub: a member that joins, stores the next turn of conversation `id` (a
/// request, busy until its reply is due a minute later) as that member, and never
/// heartbeats again. Returns the request.
async fn leave_an_orphan(
    factory: &PostgresFactory,
    live: &Hub,
    id: colloquy_runtime::ConversationId,
) -> colloquy_core::Message {
    let store = factory.open().await.unwrap();
    let cluster = colloquy_storage::ConversationStore::membership(&store).unwrap();
    let doomed = cluster.join("doomed", None, &[]).await.unwrap();
    cluster.write_as(Some(doomed));
    let mut conversation = live.reader().conversation(id).await.unwrap().unwrap();
    let now = colloquy_runtime::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let orphan = conversation
        .begin_turn(
            colloquy_core::Draft::request(
                "client".parse().unwrap(),
                "server".parse().unwrap(),
                serde_json::json!("left behind"),
            ),
            colloquy_runtime::MessageId::from_uuid(
                uuid::Builder::from_unix_timestamp_millis(now.as_millis(), &[7; 10]).into_uuid(),
            )
            .unwrap(),
            now,
            now.saturating_add(Duration::from_secs(60)),
            None,
        )
        .unwrap();
    conversation.bump_version();
    colloquy_storage::ConversationStore::append(
        &store,
        &conversation,
        &[std::sync::Arc::new(orphan.clone())],
    )
    .await
    .unwrap();
    orphan
}

/// Nobody sends into the conversation a dead hub left in an exchange: one of the two
/// surviving hubs claims it once the dead one is fenced and delivers the request again, under
/// its message id, to its own copy of the module; exactly one of them (claims are
/// exclusive), and the reply is stored right after the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hubs_exchange_is_taken_over_without_a_next_sender() {
    taken_over_without_a_next_sender(2).await;
}

/// The same with one survivor, which holds the conversation in memory from before the dead
/// hub's request: its copy is stale, and the takeover reads the store instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_with_a_stale_copy_takes_a_dead_hubs_exchange_over() {
    taken_over_without_a_next_sender(1).await;
}

async fn taken_over_without_a_next_sender(survivors: usize) {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let mut recorders = Vec::new();
    let mut live = Vec::new();
    for n in 0..survivors {
        let hub = hub(&factory, &format!("survivor-{n}")).await;
        let (server, seen) = colloquy_testkit::modules::Recorder::new("server".parse().unwrap());
        hub.register(server).await.unwrap();
        hub.register(Echo::new("client".parse().unwrap()))
            .await
            .unwrap();
        recorders.push(seen);
        live.push(hub);
    }
    let conversation = live[0]
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    let id = conversation.id();
    // The first survivor holds the conversation in memory, at turn 2.
    conversation.send("before").await.unwrap();
    let orphan = leave_an_orphan(&factory, &live[0], id).await;

    let reader = live[survivors - 1].reader();
    let answered = eventually(
        || async {
            reader
                .messages(id, colloquy_runtime::MessageRange::All)
                .await
                .unwrap()
                .len()
                == 4
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(answered, "the dead hub's exchange was not taken over");
    let transcript = reader
        .messages(id, colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(transcript[2].id, orphan.id);
    assert_eq!(transcript[3].in_reply_to, Some(orphan.id));
    assert_eq!(transcript[3].content, "left behind");
    let deliveries: Vec<_> = recorders
        .iter()
        .flat_map(|seen| seen.messages())
        .map(|m| m.id)
        .filter(|id| *id != transcript[0].id)
        .collect();
    assert_eq!(
        deliveries,
        vec![orphan.id],
        "delivered once, under its own id"
    );
    let stored = reader.conversation(id).await.unwrap().unwrap();
    assert_eq!(stored.busy_until(), None, "no longer busy");
    assert_eq!(stored.turn_count(), 4);
    for hub in live {
        hub.shutdown().await;
    }
}

/// A hub the others fenced (it was silent past the member timeout, as a process stopped
/// with SIGSTOP is) cannot write any conversation, even one nobody else touched, until it
/// joins again; its hub rejoins at its next heartbeat under a new epoch and writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_hub_cannot_write_until_it_rejoins() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    // Its own handle, to fence it from outside; a long member timeout, so that it does not
    // rejoin before the test looked.
    let store = Arc::new(factory.open().await.unwrap());
    let paused = Hub::builder()
        .store(store.clone())
        .member_name("paused")
        .member_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    paused
        .register(Echo::new("client".parse().unwrap()))
        .await
        .unwrap();
    paused
        .register(Echo::new("server".parse().unwrap()))
        .await
        .unwrap();
    let conversation = paused
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    conversation.send("before").await.unwrap();
    let before = paused.member().unwrap();

    // The others declare it dead (what fence_silent does after the member timeout).
    let other = factory.open().await.unwrap();
    colloquy_storage::ConversationStore::membership(&other)
        .unwrap()
        .leave(before)
        .await
        .unwrap();
    let refused = conversation.send("while fenced").await.unwrap_err();
    assert!(
        matches!(
            refused,
            colloquy_runtime::HubError::Store(colloquy_storage::StoreError::Fenced { .. })
        ),
        "{refused:?}"
    );
    let stored = paused
        .reader()
        .messages(conversation.id(), colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        2,
        "nothing of the fenced hub's send is stored"
    );
    // Every write path is fenced: a state change without a turn (an update) and a new
    // conversation (a create) too.
    let fenced = |e: &colloquy_runtime::HubError| {
        matches!(
            e,
            colloquy_runtime::HubError::Store(colloquy_storage::StoreError::Fenced { .. })
                | colloquy_runtime::HubError::Route(colloquy_runtime::RouteError::Storage(
                    colloquy_storage::StoreError::Fenced { .. }
                ))
        )
    };
    let patch = serde_json::Map::from_iter([("k".to_owned(), serde_json::json!(1))]);
    let refused = conversation.patch_context(patch).await.unwrap_err();
    assert!(fenced(&refused), "an update while fenced: {refused:?}");
    let refused = paused
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap_err();
    assert!(fenced(&refused), "a create while fenced: {refused:?}");
    let listed = paused
        .reader()
        .list(&colloquy_runtime::ListFilter::new())
        .await
        .unwrap()
        .conversations;
    assert_eq!(listed.len(), 1, "no conversation created while fenced");
    assert!(
        listed[0].context().is_empty(),
        "no context written while fenced"
    );

    // Its next heartbeat finds out, and it rejoins under a new epoch; then it writes again.
    let rejoined = eventually(
        || async { paused.member().is_some_and(|m| m.epoch > before.epoch) },
        Duration::from_secs(10),
    )
    .await;
    assert!(rejoined, "the hub rejoined");
    let after = conversation.send("after").await.unwrap();
    assert_eq!(after.request.turn, 3);
    paused.shutdown().await;
}

/// A request sent again with its message id through the hub that first stored it, after
/// another hub continued the conversation (so the first hub's copy is stale), is recognised
/// as stored, the first time: never a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_another_hubs_turn_is_the_stored_exchange() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let a = hub(&factory, "hub-a").await;
    let c = hub(&factory, "hub-c").await;
    for h in [&a, &c] {
        h.register(Echo::new("client".parse().unwrap()))
            .await
            .unwrap();
        h.register(Echo::new("server".parse().unwrap()))
            .await
            .unwrap();
    }
    let on_a = a
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    let id = on_a.id();
    let m1 = colloquy_runtime::MessageId::from_uuid(
        uuid::Builder::from_unix_timestamp_millis(1_800_000_000_000, &[1; 10]).into_uuid(),
    )
    .unwrap();
    let send_m1 = || {
        on_a.send_with(
            "server".parse().unwrap(),
            colloquy_runtime::MessageKind::Request,
            "m1",
            colloquy_runtime::RouteOptions::default().message_id(m1),
        )
    };
    let first = send_m1().await.unwrap();
    assert_eq!(first.request.turn, 1);
    let on_c = c.conversation(id, "client".parse().unwrap()).await.unwrap();
    for n in 0..3 {
        on_c.send(format!("m{}", n + 2)).await.unwrap();
    }
    let retried = send_m1().await.unwrap_err();
    assert!(
        matches!(
            &retried,
            colloquy_runtime::HubError::Route(colloquy_runtime::RouteError::AlreadyStored {
                turn: 1,
                ..
            })
        ),
        "{retried:?}"
    );
    let stored = a
        .reader()
        .messages(id, colloquy_runtime::MessageRange::All)
        .await
        .unwrap();
    assert_eq!(stored.len(), 8, "nothing stored twice");
    a.shutdown().await;
    c.shutdown().await;
}
