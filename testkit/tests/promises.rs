//! The promises a user relies on, each reproduced exactly as it was once broken:
//! time inside a turn is not idleness, two hubs on one file never undo each other's
//! changes, a deadline holds whatever the handler does with its thread, and no store
//! operation moves a paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{CoreError, ModuleInfo, ModuleName, Status};
use colloquy_registry::{Module, ModuleError, Registration, Response, Turn};
use colloquy_runtime::{ConversationSpec, Hub, HubBuilder, HubError, RouteError};
use colloquy_storage::MessageRange;
use colloquy_testkit::{
    modules::{Echo, Recorder, Slow},
    TestHub,
};
use serde_json::json;
use tokio::time::Instant;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap()
}

/// Idle timeout 10 s, handler deadline 60 s.
fn ten_second_idle(b: HubBuilder) -> HubBuilder {
    b.idle_timeout(Duration::from_secs(10))
        .handler_deadline(Duration::from_secs(60))
}

/// A handler taking 15 s on a hub whose idle timeout is 10 s: the reply is stored as turn
/// 2, the conversation stays active, and idleness counts from the reply.
async fn long_turn_keeps_its_answer(hub: &TestHub) {
    let conv = hub
        .converse(
            Echo::new(name("client")),
            Slow::new(name("worker"), Duration::from_secs(15)),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let exchange = conv.send("work").await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert_eq!(exchange.reply.as_ref().map(|r| r.turn), Some(2));
    assert_eq!(exchange.status, Status::Active);
    let state = conv.state().await.unwrap();
    assert_eq!(state.turn_count(), 2);
    assert_eq!(state.status(), &Status::Active);
    assert_eq!(state.busy_until(), None, "the turn is over");
    assert_eq!(
        state.idle_since(),
        Some(exchange.reply.as_ref().unwrap().sent_at),
        "idleness counts from the reply"
    );
    // 9 s after the reply the conversation still takes a turn; 10 s after the next reply
    // it has expired.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(conv.send("more").await.unwrap().request.turn, 3);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hub.reap().await.timed_out, 1);
    assert_eq!(conv.state().await.unwrap().status(), &Status::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_module_working_longer_than_the_idle_timeout_keeps_its_answer_in_memory() {
    let hub = TestHub::memory_with(ten_second_idle).await.unwrap();
    long_turn_keeps_its_answer(&hub).await;
}

#[tokio::test(start_paused = true)]
async fn a_module_working_longer_than_the_idle_timeout_keeps_its_answer_on_sqlite() {
    let hub = TestHub::sqlite_with(ten_second_idle).await.unwrap();
    long_turn_keeps_its_answer(&hub).await;
}

/// Another hub on the same file sees the turn in progress in the store: its reaper and
/// its health report do not count the turn's time as idleness.
#[tokio::test(start_paused = true)]
async fn another_hub_does_not_time_out_a_turn_in_progress() {
    let first = TestHub::sqlite_with(ten_second_idle).await.unwrap();
    let second = Hub::builder()
        .sqlite(first.path().unwrap())
        .idle_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let conv = first
        .converse(
            Echo::new(name("client")),
            Slow::new(name("worker"), Duration::from_secs(15)),
        )
        .await
        .unwrap();
    let sending = tokio::spawn({
        let conv = conv.clone();
        async move { conv.send("work").await }
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    let busy = second
        .conversation(conv.id(), name("client"))
        .await
        .unwrap();
    assert!(busy.state().await.unwrap().busy_until().is_some());
    assert_eq!(second.reap().await.timed_out, 0, "the turn is not idle");
    let health = second.health(Some(Duration::from_secs(5))).await;
    assert!(health.stale_conversations.is_empty(), "{health:?}");
    let exchange = sending.await.unwrap().unwrap();
    assert_eq!(exchange.reply.map(|r| r.turn), Some(2));
    assert_eq!(conv.state().await.unwrap().status(), &Status::Active);
    second.shutdown().await;
}

/// Two hubs open one SQLite file; a conversation is hot in the first, the second patches
/// its context and then ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_file_never_undo_each_others_changes() {
    let mut a = TestHub::sqlite().await.unwrap();
    let _dir = a.keep_dir();
    let b = Hub::builder()
        .sqlite(_dir.as_ref().unwrap().path().join("test.db"))
        .build()
        .await
        .unwrap();
    let (worker, seen) = Recorder::new(name("worker"));
    let conv = a.converse(Echo::new(name("client")), worker).await.unwrap();
    conv.send("one").await.unwrap();
    let from_b = b.conversation(conv.id(), name("client")).await.unwrap();

    // B's patch reaches A's module on A's next turn, and is not overwritten by A's write.
    from_b
        .patch_context(object(json!({"from_b": 1})))
        .await
        .unwrap();
    let exchange = conv.send("two").await.unwrap();
    assert_eq!(exchange.request.turn, 3);
    let last_turn = seen.turns().pop().unwrap();
    assert_eq!(
        last_turn.conversation.context.get("from_b"),
        Some(&json!(1))
    );
    assert_eq!(
        from_b.state().await.unwrap().context().get("from_b"),
        Some(&json!(1))
    );

    // A state change of A after another patch of B: the conflict reloads and succeeds.
    from_b
        .patch_context(object(json!({"again": true})))
        .await
        .unwrap();
    let paused = conv.pause().await.unwrap();
    assert_eq!(paused.status(), &Status::Paused);
    assert_eq!(paused.context().get("again"), Some(&json!(true)));
    conv.resume().await.unwrap();

    // B ends it; A can neither reopen it nor append to it.
    let ended = from_b.end().await.unwrap();
    let refused = conv.send("three").await.unwrap_err();
    assert!(
        matches!(
            refused,
            HubError::Refused(CoreError::NotActive {
                status: Status::Completed,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(conv.resume().await.is_err());
    let stored = from_b.state().await.unwrap();
    assert_eq!(stored.status(), &Status::Completed);
    assert_eq!(stored.ended_at(), ended.ended_at());
    assert_eq!(stored.turn_count(), 4);
    let messages = b
        .reader()
        .messages(conv.id(), MessageRange::All)
        .await
        .unwrap();
    assert_eq!(
        messages.iter().map(|m| m.turn).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// Blocks its thread in `handle` until the test releases it, the first time; answers at
/// once after that.
struct Blocking {
    release: Mutex<Option<mpsc::Receiver<()>>>,
    finished: mpsc::SyncSender<()>,
}

#[async_trait]
impl Module for Blocking {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("legacy"))
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let release = self.release.lock().unwrap().take();
        if let Some(release) = release {
            // A synchronous client: the thread is held, the runtime is not told.
            let _ = release.recv();
            let _ = self.finished.send(());
            return Ok(Response::reply("late"));
        }
        Ok(Response::reply(turn.message.content.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_is_held_to_its_deadline() {
    let hub = TestHub::sqlite().await.unwrap();
    let (release, held) = mpsc::channel();
    let (finished, done) = mpsc::sync_channel(1);
    hub.register(Echo::new(name("client"))).await.unwrap();
    hub.register_with(
        Arc::new(Blocking {
            release: Mutex::new(Some(held)),
            finished,
        }),
        Registration::new().deadline(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "legacy").unwrap())
        .await
        .unwrap();
    // A safety net so that a broken implementation (one that waits for the handler) fails
    // this test instead of hanging it: the handler is released after 10 s regardless.
    let failsafe = release.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = failsafe.send(());
    });
    // The caller is answered while the handler still holds its thread.
    let err = conv.send("please").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerTimedOut { .. })),
        "{err:?}"
    );
    release.send(()).unwrap();
    tokio::task::spawn_blocking(move || done.recv().unwrap())
        .await
        .unwrap();
    // The late result was never stored; the conversation goes on.
    let exchange = conv.send("again").await.unwrap();
    assert_eq!(exchange.request.turn, 2);
    assert_eq!(exchange.reply.as_ref().map(|r| r.turn), Some(3));
    let stored = hub
        .reader()
        .messages(conv.id(), MessageRange::All)
        .await
        .unwrap();
    assert!(stored.iter().all(|m| m.content != json!("late")));
    assert_eq!(stored.len(), 3);
}

/// Sleeps its thread past the deadline, then answers.
struct Sleepy;

#[async_trait]
impl Module for Sleepy {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("sleepy"))
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        std::thread::sleep(Duration::from_millis(400));
        Ok(Response::reply("late"))
    }
}

/// Even polled in place (the opt-in fast path, which cannot answer the caller early), a
/// result that arrives after the deadline is refused and never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_handler_that_answers_late_is_refused() {
    let hub = TestHub::memory().await.unwrap();
    hub.register(Echo::new(name("client"))).await.unwrap();
    hub.register_with(
        Arc::new(Sleepy),
        Registration::new()
            .deadline(Duration::from_millis(200))
            .inline(),
    )
    .await
    .unwrap();
    let conv = hub
        .start_conversation(ConversationSpec::between("client", "sleepy").unwrap())
        .await
        .unwrap();
    let err = conv.send("please").await.unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerTimedOut { .. })),
        "{err:?}"
    );
    let state = conv.state().await.unwrap();
    assert_eq!(state.turn_count(), 1);
    assert_eq!(state.busy_until(), None);
}

/// N instant exchanges on a paused current-thread runtime, with the reaper on and a short
/// idle timeout, leave tokio's clock where it was.
async fn instant_exchanges_leave_the_clock(hub: &TestHub) {
    let conv = hub
        .converse(Echo::new(name("client")), Echo::new(name("server")))
        .await
        .unwrap();
    let before = Instant::now();
    for i in 0..20u64 {
        let exchange = conv.send(json!(i)).await.unwrap();
        assert_eq!(exchange.reply.map(|r| r.turn), Some(2 * i + 2));
    }
    conv.history(10).await.unwrap();
    hub.health(None).await;
    assert_eq!(
        Instant::now(),
        before,
        "a store operation moved the paused clock"
    );
}

fn short_idle_with_reaper(b: HubBuilder) -> HubBuilder {
    b.idle_timeout(Duration::from_secs(1))
        .reaper_interval(Duration::from_millis(100))
}

#[tokio::test(start_paused = true)]
async fn store_operations_never_move_a_paused_clock_on_sqlite() {
    let hub = TestHub::sqlite_with(short_idle_with_reaper).await.unwrap();
    instant_exchanges_leave_the_clock(&hub).await;
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn store_operations_never_move_a_paused_clock_in_memory() {
    let hub = TestHub::memory_with(short_idle_with_reaper).await.unwrap();
    instant_exchanges_leave_the_clock(&hub).await;
}
