//! Runs the storage conformance suite against both built-in backends.
#![allow(clippy::expect_used, clippy::panic, clippy::print_stderr)]

use colloquy_storage::{SqliteOptions, Synchronous};
use colloquy_testkit::conformance::{self, MemoryFactory, SqliteFactory, CHECKS};

/// Runs every check on fresh SQLite files opened with `options`.
async fn assert_sqlite_conforms(options: SqliteOptions) {
    let report = conformance::run_all(|| {
        let options = options.clone();
        async move { SqliteFactory::new(options).expect("temp dir") }
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed.len(), CHECKS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    let report = conformance::run_all(|| async { MemoryFactory::new() }).await;
    report.assert_passed();
    assert_eq!(report.passed.len(), CHECKS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    assert_sqlite_conforms(SqliteOptions::new()).await;
}

/// On a current-thread runtime every write goes through the writer thread's queue (the
/// inline path needs `block_in_place`); on the multi-threaded runtimes here most commit
/// inline. Both paths must behave the same.
#[tokio::test(flavor = "current_thread")]
async fn sqlite_store_conforms_on_a_current_thread_runtime() {
    assert_sqlite_conforms(SqliteOptions::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_with_full_sync_conforms() {
    assert_sqlite_conforms(SqliteOptions::new().synchronous(Synchronous::Full)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let report = conformance::run_all(|| {
        let url = url.clone();
        async move { conformance::PostgresFactory::new(&url).expect("a valid schema name") }
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed.len(), CHECKS.len());
}

/// The membership contract, in memory: hubs of one process sharing one store; and the
/// store's own contract on such a shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cluster_membership_conforms() {
    let report = conformance::run_all(|| async { conformance::MemoryClusterFactory::new() }).await;
    report.assert_passed();
    assert_eq!(report.passed.len(), CHECKS.len());
    let report =
        conformance::membership::run_all(|| async { conformance::MemoryClusterFactory::new() })
            .await;
    report.assert_passed();
    assert_eq!(report.passed.len(), conformance::membership::CHECKS.len());
}

/// The membership contract, on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_membership_conforms() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let report = conformance::membership::run_all(|| {
        let url = url.clone();
        async move { conformance::PostgresFactory::new(&url).expect("a valid schema name") }
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed.len(), conformance::membership::CHECKS.len());
    assert_eq!(conformance::membership::CHECKS.len(), 6);
}

/// Pinned: a check that disappears (or is added without being counted here) shows up.
#[test]
fn the_suite_has_46_checks() {
    assert_eq!(CHECKS.len(), 46);
}
