//! PostgreSQL's two waits give typed errors: a statement that runs past the store's
//! statement timeout is `StatementTimeout`, a row lock held past the lock timeout is
//! `Busy`; and the store answers again as soon as the lock is gone. Needs
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

fn postgres_url() -> Option<String> {
    match std::env::var("COLLOQUY_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_some() => {
            panic!("COLLOQUY_TEST_POSTGRES is not set but COLLOQUY_REQUIRE_SERVICES is")
        }
        Err(_) => {
            eprintln!("skipped: set COLLOQUY_TEST_POSTGRES to run it");
            None
        }
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_lock_timeout_is_busy() {
    let Some(url) = postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let (store, conversation) = store_with(
        &factory,
        &url,
        Duration::from_secs(30),
        Duration::from_millis(100),
    )
    .await;
    let holder = hold_row_lock(&url, factory.schema(), conversation.id()).await;
    let mut paused = conversation.clone();
    paused
        .pause(Timestamp::from_millis(1_700_000_001_000))
        .unwrap();
    paused.bump_version();
    let refused = store.update(&paused).await;
    assert!(
        matches!(refused, Err(StoreError::Busy { waited }) if waited == Duration::from_millis(100)),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_transient());
    drop(holder);
    // The lock is gone with the session: the same write now goes through.
    store.update(&paused).await.unwrap();
    let stored = store
        .conversation(conversation.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_statement_timeout_is_cancelled_with_a_typed_error() {
    let Some(url) = postgres_url() else {
        return;
    };
    let factory = PostgresFactory::new(&url).unwrap();
    let (store, conversation) = store_with(
        &factory,
        &url,
        Duration::from_millis(100),
        Duration::from_secs(30),
    )
    .await;
    let holder = hold_row_lock(&url, factory.schema(), conversation.id()).await;
    let mut paused = conversation.clone();
    paused
        .pause(Timestamp::from_millis(1_700_000_001_000))
        .unwrap();
    paused.bump_version();
    let refused = store.update(&paused).await;
    assert!(
        matches!(refused, Err(StoreError::StatementTimeout { limit }) if limit == Duration::from_millis(100)),
        "{refused:?}"
    );
    drop(holder);
    store.update(&paused).await.unwrap();
}
