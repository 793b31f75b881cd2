//! Routing through a whole hub: order under concurrency, isolation, restarts, errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::Result;
use colloquy_core::*;
use colloquy_registry::{Module, ModuleError, Registration, Response, Turn};
use colloquy_runtime::{ConversationSpec, Hub, HubError, RouteError, RouteOptions};
use colloquy_storage::MessageRange;
use colloquy_testkit::{
    modules::{Echo, Failing, Panicking, Recorder, Scripted, Slow},
    TestHub,
};
use serde_json::{json, Map, Value};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

async fn thousand_senders(hub: &TestHub) -> Result<()> {
    let conv = hub
        .converse(Echo::new(name("client")), Echo::new(name("server")))
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_000u64 {
        let conv = conv.clone();
        tasks.spawn(async move { conv.send(json!({ "sender": i })).await });
    }
    let mut request_turns = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        let exchange = joined??;
        let reply = exchange.reply.expect("echo replies");
        assert_eq!(
            reply.turn,
            exchange.request.turn + 1,
            "a reply directly follows its request"
        );
        assert_eq!(reply.in_reply_to, Some(exchange.request.id));
        assert!(
            request_turns.insert(exchange.request.turn),
            "turn {} given twice",
            exchange.request.turn
        );
    }
    let stored = conv.transcript().await?;
    let turns: Vec<u64> = stored.iter().map(|m| m.turn).collect();
    assert_eq!(
        turns,
        (1..=2_000).collect::<Vec<_>>(),
        "turns are exactly 1..2000"
    );
    let senders: HashSet<u64> = stored
        .iter()
        .filter(|m| m.kind == MessageKind::Request)
        .map(|m| m.content["sender"].as_u64().unwrap())
        .collect();
    assert_eq!(
        senders.len(),
        1_000,
        "every sender's message is stored once"
    );
    assert_eq!(conv.state().await?.turn_count(), 2_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_senders_into_one_conversation_memory() -> Result<()> {
    let hub = TestHub::memory().await?;
    thousand_senders(&hub).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_senders_into_one_conversation_sqlite() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    thousand_senders(&hub).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conversations_between_the_same_modules_are_isolated() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    hub.register(Echo::new(name("client"))).await?;
    let (recorder, seen) = Recorder::new(name("worker"));
    hub.register(recorder).await?;
    let start = |tag: &'static str| {
        let hub = hub.hub().clone();
        async move {
            let spec = ConversationSpec::between("client", "worker")?
                .context(object(json!({ "owner": tag })));
            hub.start_conversation(spec).await
        }
    };
    let (a, b) = (start("A").await?, start("B").await?);
    let (ra, rb) = tokio::join!(
        async {
            for i in 0..20 {
                a.send(json!({ "conv": "A", "i": i })).await?;
            }
            Ok::<_, HubError>(())
        },
        async {
            for i in 0..20 {
                b.send(json!({ "conv": "B", "i": i })).await?;
            }
            Ok::<_, HubError>(())
        }
    );
    ra?;
    rb?;
    let turns = seen.turns();
    assert_eq!(turns.len(), 40);
    for turn in &turns {
        let (expected_id, tag) = if turn.conversation.id == a.id() {
            (a.id(), "A")
        } else {
            (b.id(), "B")
        };
        assert_eq!(turn.message.conversation_id, expected_id);
        assert_eq!(
            turn.message.content["conv"], tag,
            "message delivered in the wrong conversation"
        );
        assert_eq!(
            turn.conversation.context["owner"], tag,
            "context of the other conversation leaked"
        );
        for past in &turn.history {
            assert_eq!(
                past.conversation_id, expected_id,
                "history of the other conversation leaked"
            );
        }
    }
    // Each handler saw a growing window of its own conversation only (bounded at 20).
    let last_a = turns
        .iter()
        .rev()
        .find(|t| t.conversation.id == a.id())
        .unwrap();
    assert_eq!(last_a.history.len(), 20);
    // Every recorded turn kept its own snapshot: later turns did not change it.
    for turn in turns.iter().filter(|t| t.conversation.id == a.id()) {
        let before = turn.message.turn - 1;
        let expected: Vec<u64> = (before.saturating_sub(19).max(1)..=before).collect();
        assert_eq!(
            turn.history.iter().map(|m| m.turn).collect::<Vec<_>>(),
            expected,
            "history seen at turn {}",
            turn.message.turn
        );
    }
    assert_eq!(a.transcript().await?.len(), 40);
    assert!(a
        .transcript()
        .await?
        .iter()
        .all(|m| m.content["conv"] == "A"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hub_on_the_same_sqlite_file_continues_at_the_right_turn_with_its_context(
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("restart.db");
    let id = {
        let hub = Hub::builder().sqlite(&path).build().await?;
        hub.register(Echo::new(name("client"))).await?;
        let patcher = Scripted::new(
            name("planner"),
            (0..3).map(|i| {
                Response::reply_with_patch(
                    json!({ "step": i }),
                    object(json!({ "plan": { "step": i } })),
                )
            }),
        );
        hub.register(patcher).await?;
        let conv = hub
            .start_conversation(ConversationSpec::between("client", "planner")?)
            .await?;
        for i in 0..3 {
            conv.send(json!({ "ask": i })).await?;
        }
        hub.shutdown().await;
        conv.id()
    };
    let hub = Hub::builder().sqlite(&path).build().await?;
    hub.register(Echo::new(name("client"))).await?;
    let (planner, seen) = Recorder::new(name("planner"));
    hub.register(planner).await?;
    let conv = hub.conversation(id, name("client")).await?;
    let exchange = conv.send(json!({ "ask": "after restart" })).await?;
    assert_eq!(
        exchange.request.turn, 7,
        "three exchanges (six turns) happened before the restart"
    );
    assert_eq!(exchange.reply.as_ref().unwrap().turn, 8);
    let turn = &seen.turns()[0];
    assert_eq!(
        turn.conversation.context["plan"],
        json!({ "step": 2 }),
        "context survived the restart"
    );
    assert_eq!(
        turn.history.iter().map(|m| m.turn).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    hub.shutdown().await;
    Ok(())
}

/// Fails its first turn, then records the history of every later one.
struct FailsFirst {
    calls: std::sync::atomic::AtomicUsize,
    histories: Arc<std::sync::Mutex<Vec<Vec<u64>>>>,
}

#[async_trait::async_trait]
impl Module for FailsFirst {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("flaky"))
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Err(ModuleError::new("first call fails"));
        }
        let turns = turn.history.iter().map(|m| m.turn).collect();
        self.histories.lock().unwrap().push(turns);
        Ok(Response::reply("ok"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_handler_failed_is_still_in_the_next_turns_history() -> Result<()> {
    let hub = TestHub::memory().await?;
    hub.register(Echo::new(name("client"))).await?;
    let histories = Arc::new(std::sync::Mutex::new(Vec::new()));
    hub.register(FailsFirst {
        calls: Default::default(),
        histories: Arc::clone(&histories),
    })
    .await?;
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "flaky")?)
        .await?;
    let failed = conv.send(json!("first")).await.unwrap_err();
    assert!(
        matches!(failed, HubError::Route(RouteError::HandlerFailed { .. })),
        "{failed:?}"
    );
    let exchange = conv.send(json!("second")).await?;
    assert_eq!(exchange.request.turn, 2, "the failed request kept turn 1");
    conv.send(json!("third")).await?;
    assert_eq!(
        *histories.lock().unwrap(),
        vec![vec![1], vec![1, 2, 3]],
        "the failed request is history; the current message is not"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_targets_are_reported_with_the_registered_modules() -> Result<()> {
    let hub = TestHub::memory().await?;
    hub.register(Echo::new(name("alpha"))).await?;
    hub.register(Echo::new(name("beta"))).await?;
    let err = hub
        .start_conversation(ConversationSpec::between("alpha", "ghost")?)
        .await
        .unwrap_err();
    match err {
        HubError::Route(RouteError::UnknownTarget { target, registered }) => {
            assert_eq!(target, name("ghost"));
            assert_eq!(registered, vec![name("alpha"), name("beta")]);
        }
        other => panic!("expected UnknownTarget, got {other:?}"),
    }
    // A participant unregistered after the conversation started is an unknown target too.
    let conv = hub
        .start_conversation(ConversationSpec::between("alpha", "beta")?)
        .await?;
    hub.unregister(&name("beta"))?;
    let err = conv.send("anyone there?").await.unwrap_err();
    assert!(
        matches!(&err, HubError::Route(RouteError::UnknownTarget { registered, .. }) if *registered == vec![name("alpha")]),
        "{err:?}"
    );
    assert!(err.to_string().contains("registered: alpha"), "{err}");
    // Nothing was stored for the refused message.
    assert_eq!(conv.transcript().await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_send_or_obtain_a_handle() -> Result<()> {
    let hub = TestHub::memory().await?;
    for m in ["a", "b", "mallory"] {
        hub.register(Echo::new(name(m))).await?;
    }
    let conv = hub
        .start_conversation(ConversationSpec::between("a", "b")?)
        .await?;
    let err = hub
        .conversation(conv.id(), name("mallory"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::Refused(CoreError::NotParticipant { ref module, .. }) if *module == name("mallory")),
        "{err:?}"
    );
    let err = conv.send_to(name("mallory"), "psst").await.unwrap_err();
    assert!(
        matches!(err, HubError::Refused(CoreError::NotParticipant { .. })),
        "{err:?}"
    );
    assert_eq!(conv.transcript().await?.len(), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_slow_module_times_out_and_the_conversation_stays_usable() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.handler_deadline(Duration::from_secs(5))).await?;
    hub.register(Echo::new(name("client"))).await?;
    hub.register(Slow::new(name("sloth"), Duration::from_secs(60)))
        .await?;
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "sloth")?)
        .await?;
    let err = conv.send("hurry").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerTimedOut { ref module, deadline, .. }) if *module == name("sloth") && deadline == Duration::from_secs(5)),
        "{err:?}"
    );
    // The request was acknowledged before delivery, so it is stored.
    assert_eq!(conv.transcript().await?.len(), 1);
    // A per-call deadline long enough lets the next turn through.
    let exchange = conv
        .send_with(
            name("sloth"),
            MessageKind::Request,
            "take your time",
            RouteOptions::deadline(Duration::from_secs(120)),
        )
        .await?;
    assert_eq!(exchange.request.turn, 2);
    assert_eq!(exchange.reply.unwrap().turn, 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_module_deadline_overrides_the_hub_default() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.handler_deadline(Duration::from_secs(100))).await?;
    hub.register(Echo::new(name("client"))).await?;
    hub.register_with(
        Arc::new(Slow::new(name("sloth"), Duration::from_secs(10))),
        Registration::new().deadline(Duration::from_secs(2)),
    )
    .await?;
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "sloth")?)
        .await?;
    let err = conv.send("hi").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerTimedOut { deadline, .. }) if deadline == Duration::from_secs(2)),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_module_is_contained_and_a_failing_one_reported() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    hub.register(Echo::new(name("client"))).await?;
    hub.register(Echo::new(name("helper"))).await?;
    hub.register(Panicking::new(name("bomb"), "kaboom")).await?;
    hub.register(Failing::new(name("grump"), "no thanks"))
        .await?;
    let conv = hub
        .start_conversation(ConversationSpec::new(
            name("client"),
            [name("bomb"), name("grump"), name("helper")],
        ))
        .await?;
    let err = conv.send_to(name("bomb"), "tick").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerPanicked { ref module, ref message, .. }) if *module == name("bomb") && message == "kaboom"),
        "{err:?}"
    );
    let err = conv.send_to(name("grump"), "please").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerFailed { ref message, .. }) if message == "no thanks"),
        "{err:?}"
    );
    let exchange = conv.send_to(name("helper"), "still there?").await?;
    assert_eq!(exchange.request.turn, 3);
    assert_eq!(exchange.reply.unwrap().content, json!("still there?"));
    assert!(hub.health(None).await.healthy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_content_is_refused_before_anything_is_stored() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.max_content_bytes(1_000)).await?;
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    let err = conv.send("x".repeat(2_000)).await.unwrap_err();
    assert_eq!(
        err,
        HubError::Refused(CoreError::ContentTooLarge { limit: 1_000 })
    );
    assert_eq!(conv.transcript().await?.len(), 0);
    conv.send("small").await?;
    Ok(())
}

/// Answers each turn by ending, transferring or replying, as the content says.
struct Director;

#[async_trait::async_trait]
impl Module for Director {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("director"))
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(match turn.message.content.as_str() {
            Some("hand over") => Response::Transfer {
                to: name("deputy"),
                reply: Some(colloquy_registry::Reply::new("over to deputy")),
            },
            Some("bye") => Response::end_with("goodbye"),
            _ => Response::NoReply,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_can_stay_silent_transfer_and_end() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    hub.register(Echo::new(name("client"))).await?;
    hub.register(Director).await?;
    hub.register(Scripted::new(name("deputy"), [Response::end_with("done")]))
        .await?;
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "director")?)
        .await?;
    let silent = conv.send("hello?").await?;
    assert!(silent.reply.is_none());
    let handed = conv.send("hand over").await?;
    assert_eq!(
        handed.reply.as_ref().unwrap().content,
        json!("over to deputy")
    );
    assert_eq!(*handed.participants, [name("client"), name("deputy")]);
    let ended = conv.send("finish please").await?;
    assert_eq!(ended.request.target, name("deputy"));
    assert_eq!(ended.status, Status::Completed);
    let state = conv.state().await?;
    assert_eq!(state.status(), &Status::Completed);
    assert_eq!(state.turn_count(), 5);
    let err = conv.send("more?").await.unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Refused(CoreError::NotActive {
                status: Status::Completed,
                ..
            })
        ),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_come_from_the_store_in_order() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    for i in 0..5 {
        conv.send(json!(i)).await?;
    }
    let last = conv.history(3).await?;
    assert_eq!(
        last.iter().map(|m| m.turn).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    let all = hub.reader().messages(conv.id(), MessageRange::All).await?;
    assert_eq!(all.len(), 10);
    Ok(())
}

/// Callers (the participants network clients speak as) are registered once for every
/// front: a name that is a module is refused and nothing is registered; the others are
/// listed as callers, can be registered again, and cannot be addressed.
#[tokio::test]
async fn callers_are_registered_beside_modules_and_never_in_their_place() -> Result<()> {
    let hub = Hub::builder().memory().build().await?;
    hub.register(Echo::new(name("echo"))).await?;
    let refused = hub
        .register_callers(&[name("web"), name("echo")], "clients")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, HubError::CallerIsModule { participant } if participant.as_str() == "echo"),
        "{refused:?}"
    );
    assert!(hub.modules().iter().all(|m| m.name.as_str() != "web"));

    hub.register_callers(&[name("web"), name("cli")], "clients")
        .await?;
    hub.register_callers(&[name("web")], "clients").await?;
    let callers: Vec<String> = hub
        .modules()
        .iter()
        .filter(|m| m.is_caller())
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(callers, ["cli", "web"]);
    let conversation = hub
        .start_conversation(ConversationSpec::between("web", "echo")?)
        .await?;
    let exchange = conversation.send("hello").await?;
    assert_eq!(
        exchange.reply.map(|r| r.content.clone()),
        Some(json!("hello"))
    );
    let to_caller = hub
        .start_conversation(ConversationSpec::between("echo", "web")?)
        .await?;
    let refused = to_caller.send("hi").await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be addressed"),
        "{refused}"
    );
    hub.shutdown().await;
    Ok(())
}
