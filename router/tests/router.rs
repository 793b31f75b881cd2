//! The router on its own, over a fault-injecting memory store: every failed write drops the
//! hot copy and the next operation continues from the store's truth; a conflict with
//! another writer is reloaded and decided again; shutdown drains a slow write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use colloquy_core::{CoreError, Draft, Intent, ModuleInfo, ModuleName, Status, Timestamp};
use colloquy_registry::{Module, ModuleError, Registration, Registry, Response, Turn};
use colloquy_router::{
    Change, Clock, ConversationSpec, RouteError, RouteOptions, Router, RouterConfig,
};
use colloquy_storage::{
    ConversationStore, Faults, FaultyStore, MemoryStore, MessageRange, StoreError,
};
use serde_json::json;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

/// Echoes; or fails, when the content says "fail".
struct Echo(&'static str);

#[async_trait]
impl Module for Echo {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name(self.0))
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        if turn.message.content == json!("fail") {
            return Err(ModuleError::new("asked to fail"));
        }
        Ok(Response::reply(turn.message.content.clone()))
    }
}

struct Setup {
    router: Router,
    store: Arc<FaultyStore<MemoryStore>>,
    faults: Faults,
}

fn setup() -> Setup {
    setup_with(|_| Arc::new(Echo("b")))
}

/// A router over a fault-injecting memory store, with `a` (an echo) and the module `other`
/// makes (it may hold the store, to act behind the router's back).
fn setup_with(other: impl FnOnce(Arc<FaultyStore<MemoryStore>>) -> Arc<dyn Module>) -> Setup {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let store = Arc::new(store);
    let registry = Registry::new();
    registry
        .register(Arc::new(Echo("a")), Registration::new())
        .unwrap();
    registry
        .register(other(store.clone()), Registration::new())
        .unwrap();
    let router = Router::new(
        store.clone(),
        Arc::new(registry),
        RouterConfig::default(),
        Clock::starting_at(Timestamp::from_millis(1_700_000_000_000)),
    );
    Setup {
        router,
        store,
        faults,
    }
}

fn full() -> StoreError {
    StoreError::Full {
        detail: "injected".into(),
    }
}

async fn open(router: &Router) -> colloquy_core::ConversationId {
    router
        .open(ConversationSpec::new(name("a"), [name("b")]).intent(Intent::Query))
        .await
        .unwrap()
        .conversation
        .id()
}

fn hello(content: &str) -> Draft {
    Draft::request(name("a"), name("b"), json!(content))
}

/// Routes `content` from `a` to `b`.
async fn send(
    s: &Setup,
    id: colloquy_core::ConversationId,
    content: &str,
) -> Result<colloquy_router::Exchange, RouteError> {
    s.router
        .route(id, hello(content), RouteOptions::default())
        .await
}

async fn turns(s: &Setup, id: colloquy_core::ConversationId) -> Vec<u64> {
    s.store
        .inner()
        .messages(id, MessageRange::All)
        .await
        .unwrap()
        .iter()
        .map(|m| m.turn)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failed_request_write_stores_nothing_and_the_next_turn_continues() {
    let s = setup();
    let id = open(&s.router).await;
    s.faults.fail_next_writes(1, full());
    let err = send(&s, id, "lost").await.unwrap_err();
    assert_eq!(err, RouteError::Storage(full()));
    assert_eq!(turns(&s, id).await, Vec::<u64>::new());
    let exchange = send(&s, id, "kept").await.unwrap();
    assert_eq!(exchange.request.turn, 1);
    assert_eq!(turns(&s, id).await, vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_reply_write_keeps_the_request_and_the_next_turn_follows_it() {
    let s = setup();
    let id = open(&s.router).await;
    // The request's write goes through, the reply's fails.
    s.faults.fail_writes_after(1, 1, full());
    let err = send(&s, id, "one").await.unwrap_err();
    assert_eq!(err, RouteError::Storage(full()));
    assert_eq!(s.faults.writes_failed(), 1);
    assert_eq!(turns(&s, id).await, vec![1], "the request is stored");
    // The hot copy was dropped: the next turn reloads and follows the stored request.
    let next = send(&s, id, "two").await.unwrap();
    assert_eq!(next.request.turn, 2);
    assert_eq!(turns(&s, id).await, vec![1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn another_writers_change_is_reloaded_and_the_turn_decided_again() {
    let s = setup();
    let id = open(&s.router).await;
    send(&s, id, "one").await.unwrap();
    // Another writer (another hub) patches the conversation behind the router's back.
    let mut stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    stored
        .apply_context_patch(
            json!({"by": "other"}).as_object().unwrap(),
            Timestamp::from_millis(1_700_000_000_500),
        )
        .unwrap();
    stored.bump_version();
    s.store.inner().update(&stored).await.unwrap();
    let exchange = send(&s, id, "two").await.unwrap();
    assert_eq!(exchange.request.turn, 3);
    let after = s.router.conversation(id).await.unwrap();
    assert_eq!(after.context().get("by"), Some(&json!("other")));
    // The other writer ends it: the router refuses with the stored status.
    let mut stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    stored
        .complete(Timestamp::from_millis(1_700_000_000_900))
        .unwrap();
    stored.bump_version();
    s.store.inner().update(&stored).await.unwrap();
    let err = send(&s, id, "three").await.unwrap_err();
    assert!(
        matches!(
            err,
            RouteError::Refused(CoreError::NotActive {
                status: Status::Completed,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(turns(&s, id).await, vec![1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_state_change_leaves_the_store_and_the_next_change_applies() {
    let s = setup();
    let id = open(&s.router).await;
    s.faults.fail_next_writes(1, full());
    assert_eq!(
        s.router.apply(id, Change::Pause).await.unwrap_err(),
        RouteError::Storage(full())
    );
    assert_eq!(
        s.router.conversation(id).await.unwrap().status(),
        &Status::Active
    );
    let paused = s.router.apply(id, Change::Pause).await.unwrap();
    assert_eq!(paused.status(), &Status::Paused);
}

#[tokio::test(start_paused = true)]
async fn a_handler_failure_whose_end_of_turn_write_fails_reloads_and_goes_on() {
    let s = setup();
    let id = open(&s.router).await;
    // The request is written, then the handler fails, then the end-of-turn write fails.
    s.faults.fail_writes_after(1, 1, full());
    let err = send(&s, id, "fail").await.unwrap_err();
    assert!(matches!(err, RouteError::HandlerFailed { .. }), "{err:?}");
    // The store still says busy (the end of the turn was not stored); the hot copy was
    // dropped, so the router reloads it and the conversation goes on.
    assert!(s
        .store
        .inner()
        .conversation(id)
        .await
        .unwrap()
        .unwrap()
        .busy_until()
        .is_some());
    let next = send(&s, id, "again").await.unwrap();
    assert_eq!(next.request.turn, 2);
    assert_eq!(
        s.store
            .inner()
            .conversation(id)
            .await
            .unwrap()
            .unwrap()
            .busy_until(),
        None
    );
}

fn conflict(id: colloquy_core::ConversationId) -> StoreError {
    StoreError::Conflict {
        conversation: id,
        turn: 0,
        reason: "injected: another writer got in first".into(),
    }
}

/// One conflict policy for every write: a state change, a request and a timeout refused
/// as conflicts several times are each decided again on the stored truth and land; past
/// the bound the conflict is the caller's, and nothing was written.
#[tokio::test(start_paused = true)]
async fn every_write_is_decided_again_after_conflicts_up_to_one_bound() {
    let s = setup();
    let id = open(&s.router).await;
    s.faults.fail_next_writes(3, conflict(id));
    let paused = s.router.apply(id, Change::Pause).await.unwrap();
    assert_eq!(paused.status(), &Status::Paused);
    assert_eq!(s.faults.writes_failed(), 3);
    s.router.apply(id, Change::Resume).await.unwrap();

    s.faults.fail_next_writes(5, conflict(id));
    let exchange = send(&s, id, "one").await.unwrap();
    assert_eq!(exchange.request.turn, 1);
    assert_eq!(turns(&s, id).await, vec![1, 2]);

    // The bound: 64 decisions again after the first, then the refusal is returned.
    let failed_before = s.faults.writes_failed();
    s.faults.fail_next_writes(1_000, conflict(id));
    let err = s.router.apply(id, Change::Pause).await.unwrap_err();
    assert!(
        matches!(err, RouteError::Storage(StoreError::Conflict { .. })),
        "{err:?}"
    );
    assert_eq!(s.faults.writes_failed() - failed_before, 65);
    s.faults.fail_next_writes(0, conflict(id));
    let stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    assert_eq!(stored.status(), &Status::Active);
}

/// The reaper's timeout follows the same policy: a conflict reloads and times out what is
/// still expired (and leaves alone what another writer's turn made active again).
#[tokio::test(start_paused = true)]
async fn a_timeout_that_meets_a_conflict_is_decided_again() {
    let s = setup();
    let mut spec = ConversationSpec::new(name("a"), [name("b")]).intent(Intent::Query);
    spec.idle_timeout = Some(Duration::from_secs(10));
    let id = s.router.open(spec).await.unwrap().conversation.id();
    tokio::time::advance(Duration::from_secs(11)).await;
    s.faults.fail_next_writes(2, conflict(id));
    let report = s.router.reap(Duration::from_secs(3_600)).await;
    assert_eq!(report.timed_out, 1);
    assert_eq!(s.faults.writes_failed(), 2);
    let stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    assert_eq!(stored.status(), &Status::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_survives_a_disconnected_store_and_times_out_after_reconnect() {
    let s = setup();
    let mut spec = ConversationSpec::new(name("a"), [name("b")]).intent(Intent::Query);
    spec.idle_timeout = Some(Duration::from_secs(10));
    let id = s.router.open(spec).await.unwrap().conversation.id();
    tokio::time::advance(Duration::from_secs(11)).await;
    s.faults.disconnect();
    let report = s.router.reap(Duration::from_secs(3_600)).await;
    assert_eq!(report.timed_out, 0);
    s.faults.reconnect();
    let report = s.router.reap(Duration::from_secs(3_600)).await;
    assert_eq!(report.timed_out, 1);
    assert_eq!(
        s.router.conversation(id).await.unwrap().status(),
        &Status::TimedOut
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_a_slow_write() {
    let s = setup();
    let id = open(&s.router).await;
    s.faults.delay(Some(Duration::from_secs(2)));
    let router = Arc::new(s.router);
    let sending = {
        let router = router.clone();
        tokio::spawn(async move {
            router
                .route(id, hello("slow"), RouteOptions::default())
                .await
        })
    };
    tokio::task::yield_now().await;
    let report = router.shutdown(Duration::from_secs(30)).await;
    assert!(report.drained);
    assert_eq!(report.aborted, 0);
    assert_eq!(
        sending.await.unwrap().unwrap().reply.map(|r| r.turn),
        Some(2)
    );
    assert_eq!(
        router
            .route(id, hello("late"), RouteOptions::default())
            .await
            .unwrap_err(),
        RouteError::ShuttingDown
    );
}

/// Patches the stored conversation behind the router's back while it handles a turn (as
/// another hub would), then replies.
struct PatchesMeanwhile(Arc<FaultyStore<MemoryStore>>);

#[async_trait]
impl Module for PatchesMeanwhile {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("worker"))
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let store = self.0.inner();
        let id = turn.message.conversation_id;
        let mut stored = store.conversation(id).await.unwrap().unwrap();
        stored
            .apply_context_patch(
                json!({"other_hub": true}).as_object().unwrap(),
                turn.message.sent_at,
            )
            .unwrap();
        stored.bump_version();
        store.update(&stored).await.unwrap();
        Ok(Response::reply_with_patch(
            "done",
            json!({"worker": 1}).as_object().cloned().unwrap(),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_that_meets_another_writers_patch_is_decided_again_and_kept() {
    let Setup { router, store, .. } = setup_with(|store| Arc::new(PatchesMeanwhile(store)));
    let id = router
        .open(ConversationSpec::new(name("a"), [name("worker")]))
        .await
        .unwrap()
        .conversation
        .id();
    let exchange = router
        .route(
            id,
            Draft::request(name("a"), name("worker"), json!("work")),
            RouteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(exchange.reply.map(|r| r.turn), Some(2));
    let stored = store.inner().conversation(id).await.unwrap().unwrap();
    assert_eq!(stored.turn_count(), 2);
    assert_eq!(stored.context().get("other_hub"), Some(&json!(true)));
    assert_eq!(stored.context().get("worker"), Some(&json!(1)));
    assert_eq!(stored.busy_until(), None);
}

/// Never answers: only a cancel, the deadline or shutdown ends its call.
struct Stuck;

#[async_trait]
impl Module for Stuck {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("b"))
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_keeps_the_request_and_ends_the_turn() {
    let s = setup_with(|_| Arc::new(Stuck));
    let id = open(&s.router).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let (stored_tx, stored_rx) = std::sync::mpsc::channel();
    let options = RouteOptions::default()
        .cancel_on(cancel.clone())
        .on_stored(move |request| {
            let _ = stored_tx.send(request.turn);
        });
    let call = s.router.route(id, hello("wait"), options);
    let canceller = async {
        // The hook reports the stored request before delivery; cancel only then.
        loop {
            if let Ok(turn) = stored_rx.try_recv() {
                break turn;
            }
            tokio::task::yield_now().await;
        }
    };
    let (routed, stored) = tokio::join!(call, async {
        let turn = canceller.await;
        cancel.cancel();
        turn
    });
    assert_eq!(stored, 1, "the hook saw the stored request's turn");
    assert_eq!(
        routed.unwrap_err(),
        RouteError::Canceled {
            conversation: id,
            module: name("b"),
        }
    );
    assert_eq!(turns(&s, id).await, vec![1], "the request stays stored");
    let stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    assert_eq!(stored.busy_until(), None, "the turn is over");
    assert_eq!(*stored.status(), Status::Active);
}

#[tokio::test(start_paused = true)]
async fn appends_whose_answer_was_lost_are_retried_and_stored_once() {
    let s = setup();
    let id = open(&s.router).await;
    // The request's commit goes through but its answer is lost; so is the reply's.
    s.faults.lose_next_acks(2);
    let exchange = send(&s, id, "once").await.unwrap();
    assert_eq!(exchange.request.turn, 1);
    assert_eq!(exchange.reply.as_ref().unwrap().turn, 2);
    assert_eq!(s.faults.writes_failed(), 2, "both answers were lost");
    // Each retry found its message stored: no turn twice, nothing missing.
    assert_eq!(turns(&s, id).await, vec![1, 2]);
    let next = send(&s, id, "twice").await.unwrap();
    assert_eq!(next.request.turn, 3);
}

#[tokio::test(start_paused = true)]
async fn a_store_unavailable_for_a_moment_is_retried_and_one_unavailable_for_long_is_reported() {
    let s = setup();
    let id = open(&s.router).await;
    let unavailable = || StoreError::Unavailable {
        backend: "faulty",
        detail: "injected".into(),
    };
    s.faults.fail_next_writes(2, unavailable());
    let exchange = send(&s, id, "soon").await.unwrap();
    assert_eq!(exchange.request.turn, 1);
    s.faults.fail_next_writes(10, unavailable());
    let err = send(&s, id, "never").await.unwrap_err();
    assert!(
        matches!(err, RouteError::Storage(StoreError::Unavailable { .. })),
        "{err:?}"
    );
    assert_eq!(
        turns(&s, id).await,
        vec![1, 2],
        "nothing of the failed send is stored"
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_change_whose_answer_was_lost_is_found_stored_on_retry() {
    let s = setup();
    let id = open(&s.router).await;
    s.faults.lose_next_acks(1);
    let paused = s.router.apply(id, Change::Pause).await.unwrap();
    assert_eq!(*paused.status(), Status::Paused);
    let stored = s.store.inner().conversation(id).await.unwrap().unwrap();
    assert_eq!(
        stored, paused,
        "the first attempt's commit is the stored state"
    );
    // And the conversation goes on from it.
    let resumed = s.router.apply(id, Change::Resume).await.unwrap();
    assert_eq!(resumed.version(), paused.version() + 1);
}

/// Holds a permit of `permits` while it "works", and never answers.
struct Hung(Arc<tokio::sync::Semaphore>);

#[async_trait]
impl Module for Hung {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("b"))
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        let _held = self.0.acquire().await;
        std::future::pending::<()>().await;
        Ok(Response::NoReply)
    }
}

/// When the caller hears `HandlerTimedOut`, the hung handler's future is gone: what it held
/// is free again. On a multi-threaded runtime, 50 times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_handler_is_gone_when_its_caller_hears_so() {
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let s = setup_with({
        let permits = Arc::clone(&permits);
        move |_| Arc::new(Hung(permits))
    });
    let id = open(&s.router).await;
    for round in 0..50 {
        let refused = s
            .router
            .route(
                id,
                hello("work"),
                RouteOptions::deadline(Duration::from_millis(20)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refused, RouteError::HandlerTimedOut { .. }),
            "{refused}"
        );
        assert_eq!(
            permits.available_permits(),
            1,
            "round {round}: the hung handler still holds its permit after its caller was answered"
        );
    }
}
