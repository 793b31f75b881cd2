//! The real `colloquy` binary: every command's happy path, and bad input answered with one
//! line and a non-zero exit, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use colloquy_core::Message;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn colloquy(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn db_args<'a>(db: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = rest.to_vec();
    args.extend(["--db", db.to_str().unwrap()]);
    args
}

fn ok(db: &Path, args: &[&str]) -> String {
    let run = colloquy(&db_args(db, args));
    assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
    run.stdout
}

fn json(db: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(db, &args)).unwrap()
}

/// Asserts a clean failure: non-zero, exactly one `error:` line, no panic or backtrace.
fn fails(run: &Run, expect: &str) {
    assert_ne!(run.code, 0, "expected failure, got success: {}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one line of error expected:\n{}",
        run.stderr
    );
    assert!(lines[0].starts_with("error:"), "{}", lines[0]);
    assert!(
        lines[0].contains(expect),
        "{:?} should mention {expect:?}",
        lines[0]
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("backtrace"),
        "{}",
        run.stderr
    );
}

fn demo_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = ok(&db, &["demo", "--conversations", "8"]);
    assert!(out.contains("ran 8 conversations"), "{out}");
    assert!(out.contains("7 completed, 1 failed"), "{out}");
    assert!(
        out.contains("deliberate failure") && out.contains("is not an address"),
        "{out}"
    );
    assert!(
        out.contains("transcript of") && out.contains("coordinator -> extractor"),
        "{out}"
    );
    assert!(out.contains("database: "), "{out}");
    (dir, db)
}

#[test]
fn demo_adds_to_an_existing_database_and_every_command_reads_it() {
    let (_dir, db) = demo_db();
    let again = json(&db, &["demo", "--conversations", "4"]);
    assert_eq!(again["ran"], 4);
    assert_eq!(
        again["analytics"]["conversations"], 12,
        "the second run adds to the first"
    );
    assert!(again["transcript"]["messages"].as_array().unwrap().len() >= 6);

    let table = ok(&db, &["conversations"]);
    assert!(table.starts_with("id"), "{table}");
    assert_eq!(table.lines().count(), 13, "a header and 12 conversations");
    let failed = json(&db, &["conversations", "--status", "failed"]);
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 2);
    let id = failed[0]["id"].as_str().unwrap().to_owned();
    let by_module = json(
        &db,
        &[
            "conversations",
            "--module",
            "summarizer",
            "--since",
            "1h",
            "--limit",
            "100",
        ],
    );
    assert!(!by_module.as_array().unwrap().is_empty());
    assert!(by_module
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "summarizer")));

    let shown = ok(&db, &["show", &id]);
    assert!(shown.contains("status        failed"), "{shown}");
    assert!(
        shown.contains("turn 1"),
        "replies name the turn they answer:\n{shown}"
    );
    let shown = json(&db, &["show", &id]);
    assert_eq!(shown["conversation"]["id"], id.as_str());

    let analytics = json(&db, &["analytics", "--since", "7d"]);
    assert_eq!(analytics["conversations"], 12);
    assert_eq!(analytics["by_status"]["failed"], 2);
    assert!(ok(&db, &["analytics"]).contains("avg turns"));

    let health = colloquy(&db_args(&db, &["health"]));
    assert_eq!(health.code, 0, "{}", health.stdout);
    assert!(health.stdout.starts_with("healthy"));

    let modules = json(&db, &["modules"]);
    let names: Vec<&str> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["info"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "coordinator",
            "extractor",
            "planner",
            "summarizer",
            "validator"
        ]
    );

    let lines = ok(&db, &["export", &id]);
    let messages: Vec<Message> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        messages.iter().map(|m| m.turn).collect::<Vec<_>>(),
        (1..=messages.len() as u64).collect::<Vec<_>>()
    );
    let all: Vec<Message> =
        serde_json::from_str(&ok(&db, &["export", "--format", "json"])).unwrap();
    assert_eq!(
        all.len() as u64,
        analytics["total_turns"].as_u64().unwrap(),
        "every message exported, readable back"
    );

    let dry = json(&db, &["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(dry["pruned"], 12);
    assert_eq!(
        json(&db, &["analytics"])["conversations"],
        12,
        "a dry run deletes nothing"
    );
    let kept = json(&db, &["prune", "--older-than", "7d"]);
    assert_eq!(kept["pruned"], 0);
    let pruned = json(&db, &["prune", "--older-than", "0s"]);
    assert_eq!(pruned["pruned"], 12);
    assert_eq!(json(&db, &["analytics"])["conversations"], 0);
}

#[test]
fn health_reports_stale_conversations_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stale.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use colloquy_runtime::{ConversationSpec, Hub};
        let hub = Hub::builder().sqlite(&db).build().await.unwrap();
        hub.register(Echoer("a")).await.unwrap();
        hub.register(Echoer("b")).await.unwrap();
        let conv = hub
            .start_conversation(ConversationSpec::between("a", "b").unwrap())
            .await
            .unwrap();
        conv.send("left open").await.unwrap();
        hub.shutdown().await;
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    let run = colloquy(&db_args(&db, &["health", "--stale-after", "1ms"]));
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.starts_with("unhealthy"), "{}", run.stdout);
    assert!(
        run.stdout.contains("1 active conversation(s) idle past"),
        "{}",
        run.stdout
    );
    let relaxed = colloquy(&db_args(&db, &["health", "--stale-after", "1h"]));
    assert_eq!(relaxed.code, 0, "{}", relaxed.stdout);
    // Without --stale-after, each conversation's own idle timeout (300 s) applies.
    assert_eq!(colloquy(&db_args(&db, &["health"])).code, 0);
}

struct Echoer(&'static str);

#[async_trait::async_trait]
impl colloquy_registry::Module for Echoer {
    fn info(&self) -> colloquy_core::ModuleInfo {
        colloquy_core::ModuleInfo::new(self.0.parse().unwrap())
    }
    async fn handle(
        &self,
        turn: colloquy_registry::Turn,
    ) -> Result<colloquy_registry::Response, colloquy_registry::ModuleError> {
        Ok(colloquy_registry::Response::reply(
            turn.message.content.clone(),
        ))
    }
}

#[test]
fn inspection_commands_never_create_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing.db");
    let id = "01a2135e-d034-76ff-8200-00a3f0982ecf";
    for args in [
        vec!["conversations"],
        vec!["show", id],
        vec!["analytics"],
        vec!["health"],
        vec!["modules"],
        vec!["prune", "--older-than", "1d"],
        vec!["export"],
    ] {
        let run = colloquy(&db_args(&db, &args));
        fails(&run, "does not exist");
        assert!(!db.exists(), "{args:?} created the database");
    }
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.txt");
    std::fs::write(&db, "shopping list: milk, eggs\n".repeat(100)).unwrap();
    fails(
        &colloquy(&db_args(&db, &["conversations"])),
        "is not a colloquy database",
    );
    fails(
        &colloquy(&db_args(&db, &["demo", "--conversations", "1"])),
        "is not a colloquy database",
    );
    assert!(
        std::fs::read_to_string(&db)
            .unwrap()
            .starts_with("shopping list"),
        "the file is untouched"
    );
}

#[test]
fn a_database_from_a_newer_colloquy_is_refused() {
    let (_dir, db) = demo_db();
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    fails(&colloquy(&db_args(&db, &["analytics"])), "upgrade colloquy");
}

#[test]
fn bad_ids_durations_and_statuses_get_one_line_errors() {
    let (_dir, db) = demo_db();
    fails(
        &colloquy(&db_args(
            &db,
            &["show", "01a2135e-d034-76ff-8200-000000000000"],
        )),
        "is not in",
    );
    fails(
        &colloquy(&db_args(
            &db,
            &["export", "01a2135e-d034-76ff-8200-000000000000"],
        )),
        "is not in",
    );
    // Usage errors exit with 2, also on one line.
    let malformed = colloquy(&db_args(&db, &["show", "not-an-id"]));
    assert_eq!(malformed.code, 2);
    fails(&malformed, "invalid conversation id \"not-an-id\"");
    let duration = colloquy(&db_args(&db, &["prune", "--older-than", "5 fortnights"]));
    assert_eq!(duration.code, 2);
    fails(&duration, "use forms like 30s, 5m");
    let status = colloquy(&db_args(&db, &["conversations", "--status", "sleeping"]));
    assert_eq!(status.code, 2);
    fails(
        &status,
        "expected one of active, paused, completed, timed_out, failed",
    );
    let help = colloquy(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("demo") && help.stdout.contains("export"));
}

#[test]
fn load_reports_its_workload_and_gives_every_conversation_its_context() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("load.db");
    let report = json(
        &db,
        &[
            "load",
            "--store",
            "sqlite",
            "--conversations",
            "3",
            "--turns",
            "2",
            "--payload-bytes",
            "10",
            "--context-bytes",
            "40",
        ],
    );
    assert_eq!(report["round_trips"], 6);
    assert_eq!(report["context_bytes"], 40);
    assert_eq!(report["payload_bytes"], 10);
    let conversations = json(&db, &["conversations"]);
    let conversations = conversations.as_array().unwrap();
    assert_eq!(conversations.len(), 3);
    for c in conversations {
        assert_eq!(c["turn_count"], 4, "{c}");
        assert_eq!(c["context"]["notes"], "c".repeat(40), "{c}");
    }
}

#[test]
fn load_via_a2a_measures_the_bare_echo_and_the_front_and_stores_every_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a2a-load.db");
    let report = json(
        &db,
        &[
            "load",
            "--via",
            "a2a",
            "--store",
            "sqlite",
            "--conversations",
            "4",
            "--turns",
            "3",
        ],
    );
    assert_eq!(report["via"], "a2a");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets[0]["target"], "bare axum echo");
    assert_eq!(targets[1]["target"], "colloquy (sqlite)");
    for target in targets {
        assert_eq!(target["requests"], 12, "{target}");
    }
    // Each client kept its conversation: four conversations of three exchanges each.
    let conversations = json(&db, &["conversations"]);
    let conversations = conversations.as_array().unwrap();
    assert_eq!(conversations.len(), 4);
    for c in conversations {
        assert_eq!(c["turn_count"], 6, "{c}");
    }
}

#[test]
fn load_via_mcp_measures_send_beside_a2a_and_stores_every_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mcp-load.db");
    let report = json(
        &db,
        &[
            "load",
            "--via",
            "mcp",
            "--store",
            "sqlite",
            "--conversations",
            "4",
            "--turns",
            "3",
        ],
    );
    assert_eq!(report["via"], "mcp");
    assert_eq!(report["store"], "sqlite");
    let targets: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["bare axum echo", "A2A SendMessage", "MCP tools/call send"]
    );
    for target in report["targets"].as_array().unwrap() {
        assert_eq!(target["requests"], 12, "{target}");
    }
    assert!(report["mcp_of_a2a"].as_f64().unwrap() > 0.0);
    // Four conversations over A2A and four over MCP, three exchanges each, all stored.
    let conversations = json(&db, &["conversations"]);
    let conversations = conversations.as_array().unwrap();
    assert_eq!(conversations.len(), 8);
    for c in conversations {
        assert_eq!(c["turn_count"], 6, "{c}");
    }
    let over_mcp = conversations
        .iter()
        .filter(|c| c["participants"][0] == "mcp-client")
        .count();
    assert_eq!(over_mcp, 4);
}

/// The report of `load --via VIA` over 5 conversations of 4 round trips.
fn small_load_via(via: &str) -> Value {
    let run = colloquy(&[
        "load",
        "--via",
        via,
        "--conversations",
        "5",
        "--turns",
        "4",
        "--json",
    ]);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn load_via_sqlite_raw_measures_the_limits_of_sqlite_without_a_hub() {
    let report = small_load_via("sqlite-raw");
    assert_eq!(report["via"], "sqlite-raw");
    assert_eq!(report["synchronous"], "NORMAL");
    // Four rows a round trip, once in 1,000-row transactions and once as single commits.
    assert_eq!(report["rows"], 80);
    assert_eq!(report["single_row_commits"], 80);
    assert_eq!(report["rows_stored"], 160);
    assert!(report["single_row_commits_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn load_via_tokio_measures_the_limit_without_a_hub() {
    let report = small_load_via("tokio");
    assert_eq!(report["via"], "tokio");
    assert_eq!(report["store"], "none");
    assert_eq!(report["round_trips"], 20);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let refused = colloquy(&["load", "--via", "tokio", "--db", db.to_str().unwrap()]);
    fails(&refused, "no store");
    assert!(!db.exists(), "nothing is created");
}
