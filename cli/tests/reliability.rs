//! Crash and contention, with the real binary: `colloquy load` killed with SIGKILL at
//! several moments loses nothing it acknowledged, and two processes on one file both
//! finish without "database is locked".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{acknowledged, wait_for_acks};

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use colloquy_core::{ConversationId, MessageId};
use colloquy_runtime::Hub;
use colloquy_storage::{ConversationStore, SqliteOptions, SqliteStore};
use colloquy_testkit::modules::Echo;
use serde_json::Value;

fn load(db: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
    command
        .args(["load", "--store", "sqlite", "--json", "--db"])
        .arg(db)
        .args(args)
        .env_remove("RUST_LOG");
    command
}

/// Opens the test's SQLite file and checks it against the acknowledgements.
async fn verify(
    db: &Path,
    acks: &[(ConversationId, u64, MessageId)],
) -> Vec<(ConversationId, u64)> {
    let store = SqliteStore::open(db, SqliteOptions::new().existing_only())
        .await
        .unwrap();
    let active = common::verify(&store, acks).await;
    store.close().await.unwrap();
    active
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_several_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let log = dir.path().join("acks.log");
    let mut total_acks = 0;
    // Kill the same database's writer three times, at growing amounts of progress.
    for (round, kill_after) in [300usize, 1_500, 4_000].into_iter().enumerate() {
        let mut child = load(
            &db,
            &[
                "--conversations",
                "200",
                "--turns",
                "50",
                "--parallel",
                "64",
                "--ack-log",
            ],
        )
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_acks(&mut child, &log, total_acks + kill_after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the load finished before the kill; nothing was tested"
        );
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush, no checkpoint.
        let output = child.wait_with_output().unwrap();
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                output.status.signal(),
                Some(9),
                "round {round}: the process was not killed mid-run: {:?}",
                output.status
            );
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("locked") && !stderr.contains("panicked"),
            "round {round}: {stderr}"
        );
        let acks = acknowledged(&log);
        assert!(
            acks.len() >= total_acks + kill_after,
            "round {round}: only {} acknowledgements",
            acks.len()
        );
        total_acks = acks.len();
        let active = verify(&db, &acks).await;
        // 50 exchanges are 100 turns: a conversation with fewer was cut off by the kill.
        assert!(
            active.iter().any(|(_, turns)| *turns < 100),
            "round {round}: the kill left no conversation mid-way"
        );

        // A new hub continues every active conversation at its next turn.
        let hub = Hub::builder().sqlite(&db).build().await.unwrap();
        hub.register(Echo::new("client".parse().unwrap()))
            .await
            .unwrap();
        hub.register(Echo::new("server".parse().unwrap()))
            .await
            .unwrap();
        for (id, turns) in active.iter().take(20) {
            let conv = hub
                .conversation(*id, "client".parse().unwrap())
                .await
                .unwrap();
            let exchange = conv.send("after the crash").await.unwrap();
            assert_eq!(
                exchange.request.turn,
                turns + 1,
                "conversation {id} continues at the next turn"
            );
        }
        hub.shutdown().await;
    }
}

/// Keeps `threads` threads spinning until dropped: "while the cores are busy".
struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start(threads: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Two `colloquy load` processes started together on one new file, 100 conversations of
/// 50 exchanges each, three times (the last while every core is busy): both finish, both
/// make progress while the other loads (no starvation), and every acknowledged message of
/// both is stored with contiguous turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_file_take_turns_and_lose_nothing() {
    for round in 0..3 {
        let _hog = (round == 2).then(|| CpuHog::start(2));
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shared.db");
        let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
        let spawn = |log: &Path| {
            load(
                &db,
                &["--conversations", "100", "--turns", "50", "--ack-log"],
            )
            .arg(log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        };
        let mut children = [spawn(&logs[0]), spawn(&logs[1])];
        // Overlap: each has 300 acknowledged round trips while the other still runs. A
        // starved process would still be waiting when the other one finished.
        let limit = Instant::now() + Duration::from_secs(120);
        loop {
            let progress = [acknowledged(&logs[0]).len(), acknowledged(&logs[1]).len()];
            if progress.iter().all(|&n| n >= 300) {
                break;
            }
            for (i, child) in children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "round {round}: process {i} exited ({status}) before both made progress together: {progress:?}"
                    );
                }
            }
            assert!(
                Instant::now() < limit,
                "round {round}: no progress: {progress:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut acks = Vec::new();
        for (child, log) in children.into_iter().zip(&logs) {
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "round {round}: load failed: {stderr}"
            );
            assert!(
                !stdout.contains("locked") && !stderr.contains("locked"),
                "{stdout}{stderr}"
            );
            let report: Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(report["round_trips"], 100 * 50);
            acks.extend(acknowledged(log));
        }
        assert_eq!(
            acks.len(),
            2 * 100 * 50 * 2,
            "every request and reply acknowledged"
        );
        // Every acknowledged message is stored at its turn; turns are 1..=n everywhere; the
        // finished loads ended all 200 conversations, each after its 100 turns.
        let active = verify(&db, &acks).await;
        assert!(active.is_empty(), "{active:?}");
        let store = SqliteStore::open_read_only(&db, SqliteOptions::new())
            .await
            .unwrap();
        let completed = store
            .list(
                &colloquy_storage::ListFilter::new()
                    .status(colloquy_core::StatusKind::Completed)
                    .limit(1_000),
            )
            .await
            .unwrap()
            .conversations;
        assert_eq!(completed.len(), 200);
        assert!(completed.iter().all(|c| c.turn_count() == 100));
    }
}

/// Marks a file immutable (even root cannot write it) until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &Path) -> Self {
        let status = Command::new("chattr").arg("+i").arg(path).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "this test needs `chattr +i` (e2fsprogs) on an ext4-like filesystem; it got {status:?}"
        );
        Self(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_read_only_database_is_refused_for_writing_and_still_inspected() {
    // On the target directory's filesystem, where `chattr` works (a tmpfs may not).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = dir.path().join("frozen.db");
    // Created by another process, so this one holds no descriptor SQLite could reuse.
    let created = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["demo", "--conversations", "2", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let _frozen = Immutable::set(&db);
    let err = SqliteStore::open(&db, SqliteOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, colloquy_storage::StoreError::ReadOnly { .. }),
        "{err:?}"
    );
    let colloquy = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap()
    };
    let refused_in_one_line = |run: std::process::Output| {
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(
            stderr.contains("is read-only") && stderr.lines().count() == 1,
            "{stderr}"
        );
    };
    refused_in_one_line(colloquy(&["demo"]));
    // Commands that only read still work on the frozen file.
    let listed = colloquy(&["conversations", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    // Pruning for real needs to write: refused in one line.
    refused_in_one_line(colloquy(&["prune", "--older-than", "0s"]));
}
