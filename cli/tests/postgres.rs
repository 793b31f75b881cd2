//! Every command of the binary on PostgreSQL (`--db postgres://... --schema ...`), on a
//! fresh schema of the server in `COLLOQUY_TEST_POSTGRES`, dropped afterwards. Without the
//! variable the tests say so and pass, unless `COLLOQUY_REQUIRE_SERVICES` is set (as
//! `.ci/run` does).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::process::{Command, Stdio};

use colloquy_storage::{ConversationStore, PostgresOptions, PostgresStore};
use common::{acknowledged, verify, wait_for_acks};
use serde_json::Value;

/// A schema of its own for one test, dropped when the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, test: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("colloquy_cli_{test}_{}", std::process::id()),
        }
    }

    /// Runs the binary on this schema; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args(args)
            .args(["--db", &self.url, "--schema", &self.name])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// `colloquy load` on this schema, with an ack log.
    fn load(&self, log: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
        command
            .args(["load", "--json", "--db", &self.url, "--schema", &self.name])
            .args(args)
            .arg("--ack-log")
            .arg(log)
            .env_remove("RUST_LOG");
        command
    }

    /// Opens the schema as a store, to check it.
    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(
            &self.url,
            PostgresOptions::new()
                .schema(&self.name)
                .unwrap()
                .existing_only(),
        )
        .await
        .unwrap()
    }

    /// Waits until the server has no session of this schema's stores left: after a client
    /// is killed, the statement it had sent may still commit, and its session ends only
    /// then. Checking the database before that would race with that last commit.
    fn wait_for_no_sessions(&self) {
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let out = Command::new("psql")
                .arg(&self.url)
                .args(["-qAt", "-c"])
                .arg(format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'colloquy/{}'",
                    self.name
                ))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "0" {
                return;
            }
            assert!(std::time::Instant::now() < limit, "sessions linger");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Terminates every server session of this schema's stores; returns how many.
    fn terminate_sessions(&self) -> usize {
        let out = Command::new("psql")
            .arg(&self.url)
            .args(["-qAt", "-c"])
            .arg(format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'colloquy/{}'",
                self.name
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let (code, stdout, stderr) = self.run(&args);
        assert_eq!(code, 0, "{args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = Command::new("psql")
            .arg(&self.url)
            .args(["-qAt", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
            .output();
        if !dropped.is_ok_and(|o| o.status.success()) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

#[test]
fn every_command_works_on_postgres() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "commands");
    // Reading commands never create the schema.
    let (code, _, stderr) = schema.run(&["conversations"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not exist"), "{stderr}");

    let demo = schema.json(&["demo", "--conversations", "6"]);
    assert_eq!(demo["ran"], 6);
    assert!(demo["database"].as_str().unwrap().contains(&schema.name));
    let listed = schema.json(&["conversations"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 6);
    let failed: Vec<&Value> = listed
        .iter()
        .filter(|c| c["status"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "the demo's deliberate failure");
    let id = failed[0]["id"].as_str().unwrap();
    let shown = schema.json(&["show", id]);
    let turns = shown["messages"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|m| m["turn"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=turns.len() as u64).collect::<Vec<_>>()
    );
    let analytics = schema.json(&["analytics"]);
    assert_eq!(analytics["conversations"], 6);
    assert_eq!(analytics["by_status"]["failed"], 1);
    let health = schema.json(&["health"]);
    assert_eq!(health["healthy"], true, "{health}");
    let modules = schema.json(&["modules"]);
    assert_eq!(modules.as_array().unwrap().len(), 5);
    let (code, exported, _) = schema.run(&["export", id]);
    assert_eq!(code, 0);
    assert_eq!(exported.lines().count(), turns.len());
    // Load writes into the same database; prune then removes every ended conversation.
    let load = schema.json(&["load", "--conversations", "4", "--turns", "3"]);
    assert_eq!(load["store"], "postgres");
    assert_eq!(load["round_trips"], 12);
    assert_eq!(
        load["left_active"], 0,
        "the load ends its conversations: {load}"
    );
    let dry = schema.json(&["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(dry["pruned"], 10, "the demo's 6 and the load's 4: {dry}");
    let pruned = schema.json(&["prune", "--older-than", "0s"]);
    assert_eq!(pruned["pruned"], 10, "{pruned}");
    let left = schema.json(&["conversations"]);
    assert_eq!(left.as_array().unwrap().len(), 0, "{left}");
}

/// Every connection of a running load is terminated by the server, three times: the hub
/// recovers (the pool replaces the connections, writes whose connection died are retried
/// and found by their message ids), the load completes, and every acknowledged message is
/// stored, once, with contiguous turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_mid_load_lose_nothing() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "terminated");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("acks.log");
    let mut child = schema
        .load(
            &log,
            &["--conversations", "64", "--turns", "40", "--parallel", "16"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut terminated = 0;
    for progress in [200, 800, 1_600] {
        wait_for_acks(&mut child, &log, progress);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load finished before the sessions were terminated; nothing was tested"
        );
        terminated += schema.terminate_sessions();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the load did not recover: {stderr}"
    );
    assert!(terminated >= 3, "sessions were terminated: {terminated}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["round_trips"], 64 * 40, "every round trip completed");
    let acks = acknowledged(&log);
    assert_eq!(acks.len(), 64 * 40 * 2);
    let store = schema.store().await;
    let active = verify(&store, &acks).await;
    assert!(
        active.is_empty(),
        "the finished load ended them: {active:?}"
    );
    let completed = store
        .list(
            &colloquy_storage::ListFilter::new()
                .status(colloquy_core::StatusKind::Completed)
                .limit(100),
        )
        .await
        .unwrap()
        .conversations;
    assert_eq!(completed.len(), 64);
    assert!(
        completed.iter().all(|c| c.turn_count() == 80),
        "{completed:?}"
    );
}

/// `colloquy load` on PostgreSQL killed with SIGKILL three times, at growing progress:
/// nothing acknowledged is lost, turns stay contiguous, and a new hub continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_load_on_postgres_loses_nothing_acknowledged() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "sigkill");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("acks.log");
    let mut total = 0;
    let mut concluded = 0;
    for (round, kill_after) in [200usize, 800, 2_000].into_iter().enumerate() {
        let mut child = schema
            .load(
                &log,
                &[
                    "--conversations",
                    "100",
                    "--turns",
                    "50",
                    "--parallel",
                    "32",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_acks(&mut child, &log, total + kill_after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the load finished before the kill"
        );
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(output.status.signal(), Some(9), "round {round}");
        }
        schema.wait_for_no_sessions();
        let acks = acknowledged(&log);
        assert!(acks.len() >= total + kill_after, "round {round}");
        total = acks.len();
        let store = schema.store().await;
        let active = verify(&store, &acks).await;
        assert!(
            active.iter().any(|(_, turns)| *turns < 100),
            "round {round}: the kill left no conversation mid-way"
        );
        // Which of them the kill cut off between request and reply, read before any hub
        // runs again (a new hub may conclude them on its own, or at their next send).
        let mut cut_offs = Vec::new();
        for (id, turns) in &active {
            let last = colloquy_storage::ConversationStore::messages(
                &store,
                *id,
                colloquy_storage::MessageRange::Last(1),
            )
            .await
            .unwrap();
            let cut_off = last
                .first()
                .filter(|m| m.in_reply_to.is_none())
                .map(|m| m.id);
            cut_offs.push((*id, *turns, cut_off));
        }
        // Every conversation cut off mid-exchange, and up to 10 others.
        cut_offs.sort_by_key(|(_, _, cut_off)| cut_off.is_none());
        let others = cut_offs.iter().filter(|c| c.2.is_some()).count() + 10;
        cut_offs.truncate(others);
        // A new hub continues a conversation the kill cut off at its next turn.
        let hub = colloquy_runtime::Hub::builder()
            .store(std::sync::Arc::new(store))
            .build()
            .await
            .unwrap();
        hub.register(colloquy_testkit::modules::Echo::new(
            "client".parse().unwrap(),
        ))
        .await
        .unwrap();
        hub.register(colloquy_testkit::modules::Echo::new(
            "server".parse().unwrap(),
        ))
        .await
        .unwrap();
        // Every active conversation continues; one the kill cut off between its request
        // and the reply is first concluded: the new hub delivers that request again (under
        // its message id) and stores its reply, then the new exchange follows.
        for (id, turns, cut_off) in cut_offs {
            let conversation = hub
                .conversation(id, "client".parse().unwrap())
                .await
                .unwrap();
            let exchange = conversation.send("after the crash").await.unwrap();
            match cut_off {
                None => assert_eq!(exchange.request.turn, turns + 1, "round {round}"),
                Some(request) => {
                    assert_eq!(exchange.request.turn, turns + 2, "round {round}");
                    let answered = hub
                        .reader()
                        .messages(
                            id,
                            colloquy_storage::MessageRange::Turns {
                                first: turns + 1,
                                last: turns + 1,
                            },
                        )
                        .await
                        .unwrap();
                    assert_eq!(answered[0].in_reply_to, Some(request), "round {round}");
                    concluded += 1;
                }
            }
        }
        hub.shutdown().await;
        drop(hub);
    }
    assert!(
        concluded > 0,
        "no kill cut an exchange between its request and its reply: the takeover was not tested"
    );
}

/// A running `colloquy serve` on PostgreSQL is a member: `health` lists it alive with its
/// modules, `modules` says which hub hosts each; once it stops, it is listed as gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_is_listed_by_health_and_modules() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "members");
    let (server, _, _) = common::serve_on(&url, &["--schema", &schema.name]);
    // Its modules reach the table with its first heartbeat (each second).
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        let health = schema.json(&["health"]);
        let hubs = health["hubs"].as_array().cloned().unwrap_or_default();
        if hubs.iter().any(|h| {
            h["alive"] == true
                && h["modules"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|n| n.as_str() == Some("echo")))
        }) {
            break health;
        }
        assert!(std::time::Instant::now() < limit, "{health}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let hub_name = health["hubs"][0]["name"].as_str().unwrap().to_owned();
    let modules = schema.json(&["modules"]);
    let echo = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["info"]["name"] == "echo")
        .unwrap();
    assert_eq!(echo["hosted_by"], serde_json::json!([hub_name]));
    assert!(server.terminate(), "serve stops cleanly");
    let after = schema.json(&["health"]);
    let gone = &after["hubs"][0];
    assert_eq!(gone["alive"], false, "{after}");
    assert_eq!(gone["fenced"], true, "it left when it stopped: {after}");
}

/// The web inspector reads a PostgreSQL database as it reads SQLite: the demo's
/// conversations listed, filtered to the failed one, its reason shown, modules and health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_reads_a_postgres_database() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "inspect");
    let (code, _, stderr) = schema.run(&["demo", "--conversations", "6"]);
    assert_eq!(code, 0, "{stderr}");
    let (server, _, base) = common::serve_on(&url, &["--schema", &schema.name]);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.text().await.unwrap()
        }
    };
    let list = get("/inspect").await;
    assert_eq!(list.matches("class=\"conversation-link\"").count(), 6);
    let failed = get("/inspect?status=failed").await;
    let id = failed
        .split("/inspect/conversations/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the deliberate failure is listed")
        .to_owned();
    let page = get(&format!("/inspect/conversations/{id}")).await;
    assert!(page.contains("validator rejected the record"), "{page}");
    assert!(page.contains("id=\"turn-1\""));
    let modules = get("/inspect/modules").await;
    assert!(modules.contains("id=\"module-echo\""));
    assert!(modules.contains("this hub"));
    let health = get("/inspect/health").await;
    assert!(health.contains("postgres, answers in"), "{health}");
    assert!(server.terminate());
}
