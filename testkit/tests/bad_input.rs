//! Bad input never panics and never writes half: hostile JSON, oversized and deeply nested
//! content, SQL-looking strings, a read-only file, a full disk, faulty modules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use colloquy_core::*;
use colloquy_runtime::{ConversationSpec, HubError, RouteError};
use colloquy_storage::{ConversationStore, MessageRange, SqliteOptions, SqliteStore, StoreError};
use colloquy_testkit::{
    modules::{Echo, Failing, Panicking, Silent},
    TestHub,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, i| {
        if i % 2 == 0 {
            json!([inner])
        } else {
            json!({ "k": inner })
        }
    })
}

/// How many arrays and objects nest on the deepest path of `value`: the oracle of the depth
/// rule, computed here by plain recursion, independently of the production walk.
fn containers(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(containers).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(containers).max().unwrap_or(0),
        _ => 0,
    }
}

/// The documented limit: JSON nested deeper than 100 levels is refused.
const DOCUMENTED_DEPTH: usize = 100;

fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::from),
        "[\u{0}-\u{1f}\"\\\\]{0,50}".prop_map(Value::from),
    ];
    prop_oneof![
        8 => leaf.prop_recursive(6, 64, 8, |inner| prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            proptest::collection::btree_map(".{0,8}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]),
        1 => (90..300usize).prop_map(|depth| nested(depth, json!(1))),
        1 => (0..3usize).prop_map(|mb| Value::String("y".repeat(mb * 700_000))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any JSON is either stored and echoed back exactly, or refused with a typed error and
    /// nothing stored.
    #[test]
    fn hostile_content_is_stored_exactly_or_refused_cleanly(content in hostile_json()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let hub = TestHub::memory().await.unwrap();
            hub.register(Echo::new(name("a"))).await.unwrap();
            hub.register(Echo::new(name("b"))).await.unwrap();
            let conv = hub.start_conversation(ConversationSpec::between("a", "b").unwrap()).await.unwrap();
            let deep = containers(&content) > DOCUMENTED_DEPTH;
            let large = serde_json::to_vec(&content).map(|v| v.len() > 1 << 20).unwrap_or(true);
            match conv.send(content.clone()).await {
                Ok(exchange) => {
                    prop_assert!(!deep && !large);
                    prop_assert_eq!(&exchange.request.content, &content);
                    prop_assert_eq!(&exchange.reply.unwrap().content, &content);
                    prop_assert_eq!(conv.transcript().await.unwrap().len(), 2);
                }
                Err(HubError::Refused(CoreError::ContentTooDeep { .. })) => {
                    prop_assert!(deep);
                    prop_assert_eq!(conv.transcript().await.unwrap().len(), 0);
                }
                Err(HubError::Refused(CoreError::ContentTooLarge { .. })) => {
                    prop_assert!(large && !deep);
                    prop_assert_eq!(conv.transcript().await.unwrap().len(), 0);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn stores_refuse_json_they_could_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db"), SqliteOptions::new())
        .await
        .unwrap();
    let t = Timestamp::from_millis(1_700_000_000_000);
    let mut c = Conversation::new(
        ConversationId::from_parts(t, [1; 10]),
        vec![name("a"), name("b")],
        Intent::Query,
        Duration::from_secs(60),
        t,
    )
    .unwrap();
    store.create(&c).await.unwrap();
    let m = c
        .accept(
            Draft::request(name("a"), name("b"), nested(500, json!("deep"))),
            MessageId::from_parts(t, [2; 10]),
            t,
        )
        .unwrap();
    let err = store.append(&c, &shared(&[m])).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidInput { ref reason } if reason.contains("nests deeper")),
        "{err:?}"
    );
    assert_eq!(
        store
            .messages(c.id(), MessageRange::All)
            .await
            .unwrap()
            .len(),
        0,
        "nothing written"
    );
    let deep_context = Conversation::new(
        ConversationId::from_parts(t, [3; 10]),
        vec![name("a"), name("b")],
        Intent::Query,
        Duration::from_secs(60),
        t,
    )
    .unwrap()
    .with_context(
        json!({ "x": nested(500, json!(1)) })
            .as_object()
            .cloned()
            .unwrap(),
    );
    assert!(matches!(
        store.create(&deep_context).await,
        Err(StoreError::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn sql_looking_strings_are_only_ever_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(&path, SqliteOptions::new())
        .await
        .unwrap();
    let t = Timestamp::from_millis(1_700_000_000_000);
    let evil = "'); DROP TABLE messages; --\" OR 1=1; ATTACH DATABASE '/tmp/x' AS x; --";
    let mut c = Conversation::new(
        ConversationId::from_parts(t, [1; 10]),
        vec![name("a"), name("b")],
        Intent::Query,
        Duration::from_secs(60),
        t,
    )
    .unwrap()
    .with_context(json!({ evil: evil }).as_object().cloned().unwrap())
    .with_metadata(json!({ "note": evil }).as_object().cloned().unwrap());
    store.create(&c).await.unwrap();
    let m = c
        .accept(
            Draft::request(name("a"), name("b"), json!({ evil: [evil] })),
            MessageId::from_parts(t, [2; 10]),
            t,
        )
        .unwrap();
    c.bump_version();
    store
        .append(&c, &shared(std::slice::from_ref(&m)))
        .await
        .unwrap();
    c.fail(evil, t).unwrap();
    c.bump_version();
    store.update(&c).await.unwrap();
    store
        .record_module(
            &ModuleInfo::new(name("a"))
                .with_description(evil)
                .with_version(evil),
            t,
        )
        .await
        .unwrap();
    assert_eq!(store.conversation(c.id()).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.messages(c.id(), MessageRange::All).await.unwrap(),
        vec![m]
    );
    assert_eq!(store.modules().await.unwrap()[0].info.description, evil);
    let tables: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 6, "every table is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_turns_with_a_typed_error_and_keeps_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    SqliteStore::open(&path, SqliteOptions::new())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let pages: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let hub = colloquy_runtime::Hub::builder()
        .sqlite_with(
            &path,
            SqliteOptions::new().max_page_count(pages as u64 + 12),
        )
        .build()
        .await
        .unwrap();
    hub.register(Echo::new(name("a"))).await.unwrap();
    hub.register(Echo::new(name("b"))).await.unwrap();
    let conv = hub
        .start_conversation(ConversationSpec::between("a", "b").unwrap())
        .await
        .unwrap();
    let mut acknowledged = 0;
    let err = loop {
        match conv.send("z".repeat(3_000)).await {
            Ok(exchange) => acknowledged = exchange.reply.unwrap().turn,
            Err(e) => break e,
        }
        assert!(acknowledged < 2_000, "the size limit never applied");
    };
    assert!(
        matches!(err, HubError::Store(StoreError::Full { .. })),
        "{err:?}"
    );
    // The limit was met mid-conversation, after real work, not at the first write.
    assert!(
        acknowledged >= 4,
        "only {acknowledged} turns fit before the disk filled; the test proves nothing"
    );
    let health = hub.health(None).await;
    assert!(
        health.store_latency.is_some(),
        "the store still answers reads: {:?}",
        health.problems
    );
    let transcript = conv.transcript().await.unwrap();
    assert!(
        transcript.len() as u64 >= acknowledged,
        "everything acknowledged is still there"
    );
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(turns, (1..=transcript.len() as u64).collect::<Vec<_>>());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_modules_fail_only_their_own_turns_and_shutdown_completes() {
    // The healthy modules get a deadline no scheduling delay reaches (CI-aware); only the
    // silent one has a short one of its own, and it is meant to be hit.
    let hub = TestHub::memory_with(|b| {
        b.handler_deadline(colloquy_testkit::scaled(Duration::from_secs(30)))
            .drain_timeout(colloquy_testkit::scaled(Duration::from_secs(30)))
    })
    .await
    .unwrap();
    hub.register(Echo::new(name("client"))).await.unwrap();
    hub.register(Echo::new(name("good"))).await.unwrap();
    hub.register(Panicking::new(name("panicky"), "boom"))
        .await
        .unwrap();
    hub.register_with(
        Arc::new(Silent::new(name("silent"))),
        colloquy_runtime::Registration::new().deadline(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    hub.register(Failing::new(name("failing"), "nope"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..20 {
        for target in ["good", "panicky", "silent", "failing"] {
            let hub = Arc::new(hub.hub().clone());
            tasks.spawn(async move {
                let conv = hub
                    .start_conversation(ConversationSpec::between("client", target).unwrap())
                    .await
                    .unwrap();
                (target, conv.send(json!({ "round": round })).await)
            });
        }
    }
    let mut good = 0;
    while let Some(joined) = tasks.join_next().await {
        let (target, result) = joined.unwrap();
        match (target, result) {
            ("good", Ok(exchange)) => {
                assert_eq!(exchange.reply.unwrap().turn, 2);
                good += 1;
            }
            ("panicky", Err(HubError::Route(RouteError::HandlerPanicked { message, .. }))) => {
                assert_eq!(message, "boom")
            }
            ("silent", Err(HubError::Route(RouteError::HandlerTimedOut { .. }))) => {}
            ("failing", Err(HubError::Route(RouteError::HandlerFailed { message, .. }))) => {
                assert_eq!(message, "nope")
            }
            (target, other) => panic!("{target}: unexpected {other:?}"),
        }
    }
    assert_eq!(good, 20, "healthy conversations are unaffected");
    let report = hub.shutdown().await;
    assert!(report.drained);
}

/// `messages` behind `Arc`, as `ConversationStore::append` takes them.
fn shared(messages: &[colloquy_core::Message]) -> Vec<std::sync::Arc<colloquy_core::Message>> {
    messages.iter().cloned().map(std::sync::Arc::new).collect()
}
