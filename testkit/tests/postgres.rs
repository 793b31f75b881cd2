//! PostgreSQL beyond the shared suite: migrations (two stores opening one new schema at
//! once, a newer schema refused) and the two waits as typed errors (a statement past the
//! statement timeout is `StatementTimeout`, a row lock held past the lock timeout is
//! `Busy`; the store answers again as soon as the lock is gone). Needs
//! `COLLOQUY_TEST_POSTGRES` (see `conformance.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::time::Duration;

use colloquy_core::{Conversation, ConversationId, Intent, Timestamp};
use colloquy_storage::{ConversationStore, PostgresOptions, PostgresStore, StoreError};
use colloquy_testkit::conformance::{PostgresFactory, StoreFactory};

/// A store on `factory`'s schema with these timeouts, and one stored conversation.
async fn store_with(
    factory: &PostgresFactory,
    url: &str,
    statement: Duration,
    lock: Duration,
) -> (PostgresStore, Conversation) {
    // Made by the factory first, so the schema exists and is dropped with the factory.
    let store = factory.open().await.unwrap();
    let id = ConversationId::from_uuid(uuid_v7(1)).unwrap();
    let conversation = Conversation::new(
        id,
        vec!["a".parse().unwrap(), "b".parse().unwrap()],
        Intent::Query,
        Duration::from_secs(60),
        Timestamp::from_millis(1_700_000_000_000),
    )
    .unwrap();
    store.create(&conversation).await.unwrap();
    let options = PostgresOptions::new()
        .schema(factory.schema())
        .unwrap()
        .statement_timeout(statement)
        .lock_timeout(lock);
    (
        PostgresStore::connect(url, options).await.unwrap(),
        conversation,
    )
}

fn uuid_v7(n: u8) -> uuid::Uuid {
    uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000, &[n; 10]).into_uuid()
}

/// Another session that holds the conversation's row lock until dropped.
async fn hold_row_lock(url: &str, schema: &str, id: ConversationId) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM \"{schema}\".conversations WHERE id = '{id}' FOR UPDATE"
        ))
        .await
        .unwrap();
    client
}

/// Pauses a stored conversation through a store with these timeouts while another
/// session holds its row lock: returns the refusal, and checks that the same write goes
/// through once the lock is gone.
async fn update_while_locked(statement: Duration, lock: Duration) -> Option<StoreError> {
    let url = colloquy_testkit::postgres_url()?;
    let factory = PostgresFactory::new(&url).unwrap();
    let (store, conversation) = store_with(&factory, &url, statement, lock).await;
    let holder = hold_row_lock(&url, factory.schema(), conversation.id()).await;
    let mut paused = conversation.clone();
    paused
        .pause(Timestamp::from_millis(1_700_000_001_000))
        .unwrap();
    paused.bump_version();
    let refused = store.update(&paused).await.unwrap_err();
    drop(holder);
    // The lock is gone with the session: the same write now goes through.
    store.update(&paused).await.unwrap();
    let stored = store.conversation(conversation.id()).await.unwrap();
    assert_eq!(stored, Some(paused));
    Some(refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_lock_timeout_is_busy() {
    let Some(refused) =
        update_while_locked(Duration::from_secs(30), Duration::from_millis(100)).await
    else {
        return;
    };
    assert!(
        matches!(refused, StoreError::Busy { waited } if waited == Duration::from_millis(100)),
        "{refused:?}"
    );
    assert!(refused.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_statement_timeout_is_cancelled_with_a_typed_error() {
    let Some(refused) =
        update_while_locked(Duration::from_millis(100), Duration::from_secs(30)).await
    else {
        return;
    };
    assert!(
        matches!(refused, StoreError::StatementTimeout { limit } if limit == Duration::from_millis(100)),
        "{refused:?}"
    );
}

/// Runs `sql` in a session of its own.
async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_one_new_schema_together_migrate_it_once() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let opened = futures_join(&factory).await;
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: Vec<i64> = client
        .query(
            &format!(
                "SELECT version FROM \"{}\".schema_version ORDER BY version",
                factory.schema()
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=colloquy_storage::POSTGRES_SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration applied exactly once"
    );
}

/// Four stores of one factory opened at the same moment.
async fn futures_join(factory: &PostgresFactory) -> Vec<Result<PostgresStore, StoreError>> {
    let (a, b, c, d) = tokio::join!(
        factory.open(),
        factory.open(),
        factory.open(),
        factory.open()
    );
    vec![a, b, c, d]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_written_by_a_newer_colloquy_is_refused() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    factory.open().await.unwrap();
    let newer = colloquy_storage::POSTGRES_SCHEMA_VERSION + 7;
    execute(
        &url,
        &format!(
            "INSERT INTO \"{}\".schema_version (version) VALUES ({newer})",
            factory.schema()
        ),
    )
    .await;
    match factory.open().await {
        Err(StoreError::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!(found, newer);
            assert_eq!(supported, colloquy_storage::POSTGRES_SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_with_a_nul_escape_is_invalid_input() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let store = factory.open().await.unwrap();
    let mut context = serde_json::Map::new();
    context.insert("note".into(), serde_json::json!("a\u{0}b"));
    let conversation = Conversation::new(
        ConversationId::from_uuid(uuid_v7(2)).unwrap(),
        vec!["a".parse().unwrap(), "b".parse().unwrap()],
        Intent::Query,
        Duration::from_secs(60),
        Timestamp::from_millis(1_700_000_000_000),
    )
    .unwrap()
    .with_context(context);
    let refused = store.create(&conversation).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidInput { reason }) if reason.contains("Unicode")),
        "{refused:?}"
    );
    assert_eq!(store.conversation(conversation.id()).await.unwrap(), None);
}
