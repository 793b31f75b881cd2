//! SQLite-specific behaviour: file validation, migrations, corrupt rows, size limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::Path, time::Duration};

use colloquy_core::*;
use colloquy_storage::*;
use serde_json::json;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + ms)
}

fn conversation(seed: u8) -> Conversation {
    let mut c = Conversation::new(
        ConversationId::from_parts(t(0), [seed; 10]),
        vec!["a".parse().unwrap(), "b".parse().unwrap()],
        Intent::Query,
        Duration::from_secs(60),
        t(0),
    )
    .unwrap();
    c.conclude_handshake(&"b".parse().unwrap(), &HandshakeOutcome::Accept, t(0))
        .unwrap();
    c
}

/// Accepts one more turn into `c` and makes `c` the next write (one append per turn).
fn turn(c: &mut Conversation, seed: u8, content: serde_json::Value) -> Message {
    let (from, to) = if c.turn_count().is_multiple_of(2) {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let now = t(1_000 * (c.turn_count() + 1));
    let message = c
        .accept(
            Draft::request(from.parse().unwrap(), to.parse().unwrap(), content),
            MessageId::from_parts(now, [seed; 10]),
            now,
        )
        .unwrap();
    c.bump_version();
    message
}

async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(path, SqliteOptions::new()).await
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn new_database_is_wal_at_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path).await.unwrap();
    store.ping().await.unwrap();
    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(app, 0x434C_5159);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    open(&path).await.unwrap().close().await.unwrap();
    raw(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 7)
        .unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported, .. } if found == SCHEMA_VERSION + 7 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade colloquy"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file must not be modified"
    );
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    raw(&path)
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotADatabase { ref detail, .. } if detail.contains("did not create")),
        "{err:?}"
    );
}

#[tokio::test]
async fn existing_only_does_not_create_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let err = SqliteStore::open(&path, SqliteOptions::new().existing_only())
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::DatabaseMissing { path: path.clone() });
    assert!(!path.exists());
}

#[tokio::test]
async fn corrupt_rows_give_errors_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path).await.unwrap();
    let mut c = conversation(1);
    store.create(&c).await.unwrap();
    let m1 = turn(&mut c, 2, json!({"ok": true}));
    store.append(&c, &shared(&[m1])).await.unwrap();
    let m2 = turn(&mut c, 3, json!({"ok": true}));
    store
        .append(&c, &shared(std::slice::from_ref(&m2)))
        .await
        .unwrap();
    let other = conversation(4);
    store.create(&other).await.unwrap();

    let conn = raw(&path);
    conn.execute(
        "UPDATE messages SET content = '{not json' WHERE id = ?1",
        [m2.id.to_string()],
    )
    .unwrap();
    conn.execute(
        "UPDATE conversations SET status = 'exploded' WHERE id = ?1",
        [other.id().to_string()],
    )
    .unwrap();

    let err = store.messages(c.id(), MessageRange::All).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { ref location, .. } if *location == format!("message {}", m2.id)),
        "{err:?}"
    );
    // The intact message before it still reads.
    assert_eq!(
        store
            .messages(c.id(), MessageRange::Turns { first: 1, last: 1 })
            .await
            .unwrap()
            .len(),
        1
    );

    let err = store.conversation(other.id()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { ref location, ref detail } if *location == format!("conversation {}", other.id()) && detail.contains("exploded")),
        "{err:?}"
    );
    let err = store.list(&ListFilter::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    conn.execute(
        "UPDATE conversations SET participants = '[\"a\"]' WHERE id = ?1",
        [c.id().to_string()],
    )
    .unwrap();
    let err = store.conversation(c.id()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { ref detail, .. } if detail.contains("at least 2 participants")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_full_database_refuses_writes_and_keeps_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    // Create the schema first, then reopen with a limit just above its size.
    open(&path).await.unwrap().close().await.unwrap();
    let pages: i64 = raw(&path)
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let pages = pages as u64;
    let store = SqliteStore::open(&path, SqliteOptions::new().max_page_count(pages + 8))
        .await
        .unwrap();
    let mut c = conversation(1);
    store.create(&c).await.unwrap();
    let mut stored = Vec::new();
    let err = loop {
        let seed = (c.turn_count() % 250) as u8 + 5;
        let m = turn(&mut c, seed, json!("x".repeat(2_000)));
        match store.append(&c, &shared(std::slice::from_ref(&m))).await {
            Ok(_) => stored.push(m),
            Err(e) => break e,
        }
        assert!(stored.len() < 1_000, "the size limit never applied");
    };
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(err.is_transient());
    // Reads and ping keep working; everything acknowledged is there.
    store.ping().await.unwrap();
    assert_eq!(
        store.messages(c.id(), MessageRange::All).await.unwrap(),
        stored
    );
    store.close().await.unwrap();
    drop(store);

    // Once there is room again, the same conversation continues.
    let roomy = open(&path).await.unwrap();
    let mut c = roomy.conversation(c.id()).await.unwrap().unwrap();
    assert_eq!(c.turn_count(), stored.len() as u64);
    let next = turn(&mut c, 251, json!("fits now"));
    roomy.append(&c, &shared(&[next])).await.unwrap();
    assert_eq!(
        roomy
            .messages(c.id(), MessageRange::All)
            .await
            .unwrap()
            .len(),
        stored.len() + 1
    );
}

#[tokio::test]
async fn a_closed_store_refuses_writes_but_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("c.db")).await.unwrap();
    let c = conversation(1);
    store.create(&c).await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        store.create(&conversation(2)).await.unwrap_err(),
        StoreError::Closed
    );
    assert_eq!(store.conversation(c.id()).await.unwrap(), Some(c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_reads_everything_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.db");
    let mut c = conversation(1);
    let writer = open(&path).await.unwrap();
    writer.create(&c).await.unwrap();
    let m = turn(&mut c, 2, json!("kept"));
    writer
        .append(&c, &shared(std::slice::from_ref(&m)))
        .await
        .unwrap();
    // The writer stays open: a read-only store sees its committed writes too.
    let reader = SqliteStore::open_read_only(&path, SqliteOptions::new())
        .await
        .unwrap();
    assert_eq!(reader.conversation(c.id()).await.unwrap(), Some(c.clone()));
    assert_eq!(
        reader.messages(c.id(), MessageRange::All).await.unwrap(),
        vec![m]
    );
    assert_eq!(
        reader
            .list(&ListFilter::new())
            .await
            .unwrap()
            .conversations
            .len(),
        1
    );
    let mut next = c.clone();
    let refused_message = turn(&mut next, 4, json!("no"));
    let refused = [
        reader.create(&conversation(3)).await.unwrap_err(),
        reader
            .append(&next, &shared(&[refused_message]))
            .await
            .unwrap_err(),
        reader.update(&c).await.unwrap_err(),
        reader.prune(t(0)).await.unwrap_err(),
    ];
    for err in refused {
        assert!(
            matches!(&err, StoreError::ReadOnly { path: p, .. } if p == &path),
            "{err:?}"
        );
    }
    reader.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn read_only_opening_checks_the_file_like_opening_does() {
    let dir = tempfile::tempdir().unwrap();
    let ro = |p: std::path::PathBuf| async move {
        SqliteStore::open_read_only(&p, SqliteOptions::new())
            .await
            .unwrap_err()
    };
    let missing = dir.path().join("missing.db");
    assert!(matches!(
        ro(missing.clone()).await,
        StoreError::DatabaseMissing { .. }
    ));
    assert!(!missing.exists(), "never created");

    let other = dir.path().join("other.db");
    raw(&other).execute_batch("CREATE TABLE notes (x)").unwrap();
    assert!(matches!(ro(other).await, StoreError::NotADatabase { .. }));

    let newer = dir.path().join("newer.db");
    open(&newer).await.unwrap().close().await.unwrap();
    raw(&newer)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    assert!(matches!(ro(newer).await, StoreError::SchemaTooNew { .. }));

    let older = dir.path().join("older.db");
    open(&older).await.unwrap().close().await.unwrap();
    raw(&older)
        .pragma_update(None, "user_version", SCHEMA_VERSION - 1)
        .unwrap();
    let err = ro(older).await;
    if SCHEMA_VERSION > 1 {
        assert!(matches!(err, StoreError::SchemaTooOld { .. }), "{err:?}");
    } else {
        // Version 0 is a file colloquy never finished creating.
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_context_is_kept_and_a_patched_one_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("context.db");
    let store = open(&path).await.unwrap();
    let plan = |v: &str| json!({ "plan": v }).as_object().unwrap().clone();
    let mut c = conversation(1).with_context(plan("a"));
    store.create(&c).await.unwrap();
    let stored_context = |path: &Path| -> String {
        raw(path)
            .query_row("SELECT context FROM contexts", [], |r| r.get(0))
            .unwrap()
    };
    // Same context as committed: appends leave it as it is.
    let m = turn(&mut c, 2, json!(1));
    store.append(&c, &shared(&[m])).await.unwrap();
    assert_eq!(stored_context(&path), r#"{"plan":"a"}"#);
    // A patch gives the conversation a new context: the next append writes it.
    c.apply_context_patch(&plan("b"), t(2_500)).unwrap();
    let m = turn(&mut c, 3, json!(2));
    store.append(&c, &shared(&[m])).await.unwrap();
    assert_eq!(stored_context(&path), r#"{"plan":"b"}"#);
    let m = turn(&mut c, 4, json!(3));
    store.append(&c, &shared(&[m])).await.unwrap();
    // An equal context in another allocation (a state read back, say) is written too.
    let mut copy = store.conversation(c.id()).await.unwrap().unwrap();
    let m = turn(&mut copy, 5, json!(4));
    store.append(&copy, &shared(&[m])).await.unwrap();
    store.close().await.unwrap();
    let reopened = open(&path).await.unwrap();
    let back = reopened.conversation(c.id()).await.unwrap().unwrap();
    assert_eq!(back.context()["plan"], "b");
    assert_eq!(back.turn_count(), 4);
    assert_eq!(back, copy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_opening_a_new_file_at_once_both_migrate_safely() {
    // Several rounds, each on a new file: two threads released together by a barrier
    // open it at the same moment (an open migrates synchronously, so two opens in one
    // task would simply run one after the other).
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let opener = |path: std::path::PathBuf, barrier: std::sync::Arc<std::sync::Barrier>| {
            std::thread::spawn(move || {
                barrier.wait();
                SqliteStore::open_blocking(&path, SqliteOptions::new())
            })
        };
        let first = opener(path.clone(), barrier.clone());
        let second = opener(path.clone(), barrier);
        let (a, b) = (first.join().unwrap(), second.join().unwrap());
        let (a, b) = (
            a.unwrap_or_else(|e| panic!("round {round}: {e}")),
            b.unwrap_or_else(|e| panic!("round {round}: {e}")),
        );
        let version: i64 = raw(&path)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let c = conversation(1);
        a.create(&c).await.unwrap();
        assert_eq!(b.conversation(c.id()).await.unwrap(), Some(c));
    }
}

#[test]
fn using_the_store_outside_tokio_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_blocking(dir.path().join("c.db"), SqliteOptions::new()).unwrap();
    let err = block_on_without_runtime(store.ping());
    assert!(
        matches!(err, Err(StoreError::Backend { ref message, .. }) if message.contains("tokio runtime")),
        "{err:?}"
    );
}

/// Polls a future to completion without a tokio runtime (a minimal busy-polling executor;
/// the future under test completes on its first poll).
fn block_on_without_runtime<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Holds a lock on `path` from another connection (as another process would) until the
/// returned thread releases it, after `hold`; the thread returns the instant of release.
fn hold_lock(
    path: &Path,
    setup: &'static str,
    hold: Duration,
) -> std::thread::JoinHandle<std::time::Instant> {
    let conn = raw(path);
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(setup).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        let released = std::time::Instant::now();
        drop(conn); // Rolls back and releases every lock.
        released
    })
}

/// Options whose one SQLite wait (busy_timeout) is far shorter than the lock is held, and
/// whose lock_wait is far longer.
fn patient() -> SqliteOptions {
    SqliteOptions::new()
        .busy_timeout(Duration::from_millis(10))
        .lock_wait(Duration::from_secs(30))
}

/// Opening (pragmas and migration) meets a lock held longer than busy_timeout: it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_waits_for_a_lock_held_longer_than_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let holder = hold_lock(&path, "BEGIN EXCLUSIVE;", Duration::from_millis(300));
    let store = SqliteStore::open(&path, patient()).await.unwrap();
    let opened = std::time::Instant::now();
    assert!(
        opened >= holder.join().unwrap(),
        "opened before the lock was released"
    );
    store.create(&conversation(1)).await.unwrap();
}

/// A write meets a write lock held longer than busy_timeout: it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_waits_for_a_lock_held_longer_than_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open(&path, patient()).await.unwrap();
    let holder = hold_lock(&path, "BEGIN IMMEDIATE;", Duration::from_millis(300));
    store.create(&conversation(1)).await.unwrap();
    assert!(std::time::Instant::now() >= holder.join().unwrap());
    assert!(store
        .conversation(conversation(1).id())
        .await
        .unwrap()
        .is_some());
}

/// Opening read-only (and its first reads) meets a connection holding the database
/// exclusively (`locking_mode=EXCLUSIVE`, which keeps even WAL readers out): it waits. (An
/// open store's readers cannot be locked out this way: exclusive mode needs every other
/// connection closed, and WAL readers never wait for writers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_waits_for_a_lock_held_longer_than_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open(&path, patient()).await.unwrap();
    let c = conversation(1);
    store.create(&c).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let exclusive = "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; \
                     UPDATE conversations SET status = status;";
    let holder = hold_lock(&path, exclusive, Duration::from_millis(300));
    let reader = SqliteStore::open_read_only(&path, patient()).await.unwrap();
    assert!(std::time::Instant::now() >= holder.join().unwrap());
    assert_eq!(reader.conversation(c.id()).await.unwrap(), Some(c));
}

/// Past lock_wait the answer is a typed `Busy` naming the time waited, never "database is
/// locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_lock_wait_is_a_typed_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open(
        &path,
        SqliteOptions::new()
            .busy_timeout(Duration::from_millis(10))
            .lock_wait(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let holder = hold_lock(&path, "BEGIN IMMEDIATE;", Duration::from_millis(1_000));
    let err = store.create(&conversation(1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Busy { waited } if waited >= Duration::from_millis(100)),
        "{err:?}"
    );
    assert!(!err.to_string().contains("database is locked"), "{err}");
    holder.join().unwrap();
}

/// A database written by the previous schema (version 1: no `version` or `busy_until`
/// columns) is migrated in place when opened: its rows read back, at version 0, and take
/// versioned writes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let notes = json!({ "notes": "kept across the upgrade" });
    let mut c = conversation(1).with_context(notes.as_object().unwrap().clone());
    {
        let store = open(&path).await.unwrap();
        store.create(&c).await.unwrap();
        let m = turn(&mut c, 2, json!("before the upgrade"));
        store.append(&c, &shared(&[m])).await.unwrap();
        store.close().await.unwrap();
    }
    // Take the file back to schema version 1, as the previous release left it.
    raw(&path)
        .execute_batch(
            "DROP VIEW conversation_rows; \
             ALTER TABLE conversations ADD COLUMN context TEXT NOT NULL DEFAULT '{}'; \
             UPDATE conversations SET context = \
                 (SELECT x.context FROM contexts x WHERE x.conversation_id = conversations.id); \
             DROP TABLE contexts; \
             ALTER TABLE conversations DROP COLUMN version; \
             ALTER TABLE conversations DROP COLUMN busy_until; \
             DROP TABLE state_changes; \
             PRAGMA user_version = 1;",
        )
        .unwrap();
    let store = open(&path).await.unwrap();
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mut back = store.conversation(c.id()).await.unwrap().unwrap();
    assert_eq!(back.version(), 0, "rows of version 1 start at version 0");
    assert_eq!(
        back.context(),
        notes.as_object().unwrap(),
        "the context moved to its table"
    );
    assert_eq!(back.turn_count(), 1);
    let m = turn(&mut back, 3, json!("after"));
    store.append(&back, &shared(&[m])).await.unwrap();
    assert_eq!(
        store
            .messages(c.id(), MessageRange::All)
            .await
            .unwrap()
            .len(),
        2
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The writers' turnstile is made by the first write, never by opening or reading, and the
/// writer that closes removes it; a store still writing then makes a new one and goes on,
/// and a store opened after that takes turns with it through the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_turnstile_exists_only_while_someone_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let turnstile = dir.path().join("c.db-turnstile");
    let first = open(&path).await.unwrap();
    first.create(&conversation(1)).await.unwrap();
    assert!(turnstile.exists(), "a writer passes the turnstile");
    first.close().await.unwrap();
    // Gone when `close` returns: a process may end right after, before anything is dropped.
    assert!(!turnstile.exists(), "the closing writer removes it");
    drop(first);

    // Opening a current database writes nothing: no turnstile. Reading neither.
    let reopened = open(&path).await.unwrap();
    let reader = SqliteStore::open_read_only(&path, SqliteOptions::new())
        .await
        .unwrap();
    assert_eq!(
        reader
            .list(&ListFilter::new())
            .await
            .unwrap()
            .conversations
            .len(),
        1
    );
    assert!(
        !turnstile.exists(),
        "opening and reading made {turnstile:?}"
    );
    drop(reader);

    // Two writers; one closes (removing the file) while the other goes on writing.
    let other = open(&path).await.unwrap();
    reopened.create(&conversation(2)).await.unwrap();
    other.create(&conversation(3)).await.unwrap();
    reopened.close().await.unwrap();
    drop(reopened);
    other.create(&conversation(4)).await.unwrap();
    assert!(turnstile.exists(), "the writer going on made a new one");
    let third = open(&path).await.unwrap();
    tokio::join!(
        async {
            for seed in 10..40 {
                other.create(&conversation(seed)).await.unwrap();
            }
        },
        async {
            for seed in 40..70 {
                third.create(&conversation(seed)).await.unwrap();
            }
        }
    );
    let all = other
        .list(&ListFilter::new().limit(MAX_PAGE))
        .await
        .unwrap();
    assert_eq!(all.conversations.len(), 4 + 60);
    other.close().await.unwrap();
    third.close().await.unwrap();
    drop((other, third));
    assert_eq!(names_in(dir.path()), ["c.db"], "only the database is left");
}

/// `messages` behind `Arc`, as `ConversationStore::append` takes them.
fn shared(messages: &[colloquy_core::Message]) -> Vec<std::sync::Arc<colloquy_core::Message>> {
    messages.iter().cloned().map(std::sync::Arc::new).collect()
}
