//! colloquy as a new user meets it: the README's walk-through replayed in a temporary
//! directory (the demo, every inspection command with a right and a wrong path, `serve` with
//! the demo's modules and one A2A exchange, SIGTERM), and the usual mistakes. What it
//! asserts: no file beyond the database and its SQLite companions, analytics that count
//! every module that spoke, a healthy database at the end, and every error on one line in
//! the user's words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `colloquy ARGS` run in `dir`, as a user in that directory would.
fn colloquy_in(dir: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn ok_in(dir: &Path, args: &[&str]) -> String {
    let run = colloquy_in(dir, args);
    assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
    run.stdout
}

fn json_in(dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok_in(dir, &args)).unwrap()
}

/// Words that belong inside the library, not in what a user reads.
const INSIDE_WORDS: &[&str] = &[
    "existing_only",
    "invalid store call",
    "inconsistent conversation state",
    "StoreError",
    "idempotent",
    "panicked",
    "backtrace",
];

/// A clean failure: non-zero, one `error:` line mentioning `expect`, in the user's words.
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
    for word in INSIDE_WORDS {
        assert!(!lines[0].contains(word), "{:?} says {word:?}", lines[0]);
    }
}

/// The files in `dir`, by name.
fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts that `dir` holds `expected` and, beside a database in it, nothing but SQLite's
/// own `-wal`/`-shm` companions.
fn only(dir: &Path, expected: &[&str], when: &str) {
    let found = files(dir);
    for name in &found {
        let companion = expected
            .iter()
            .any(|db| *name == format!("{db}-wal") || *name == format!("{db}-shm"));
        assert!(
            expected.contains(&name.as_str()) || companion,
            "{when}: {name} was left in the directory ({found:?})"
        );
    }
    for name in expected {
        assert!(
            found.contains(*name),
            "{when}: {name} is missing ({found:?})"
        );
    }
}

const DEMO_MODULES: [&str; 5] = [
    "coordinator",
    "extractor",
    "planner",
    "summarizer",
    "validator",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_leaves_only_the_database_and_ends_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();

    // The README's first command, with its default database.
    let demo = ok_in(here, &["demo", "--conversations", "12"]);
    assert!(demo.contains("colloquy.db"), "{demo}");
    only(here, &["colloquy.db"], "after the demo");

    // Analytics: every demo module, with what the transcripts say each did. Who took part
    // is computed here from the stored messages and participants, independently of the
    // store's aggregate.
    let analytics = json_in(here, &["analytics"]);
    let listed: BTreeMap<String, (u64, u64)> = analytics["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["module"].as_str().unwrap().to_owned(),
                (
                    m["initiated"].as_u64().unwrap(),
                    m["participated"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        DEMO_MODULES,
        "analytics name the five demo modules"
    );
    let conversations = json_in(here, &["conversations", "--limit", "1000"]);
    let mut took_part: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut opened: BTreeMap<String, u64> = BTreeMap::new();
    for c in conversations.as_array().unwrap() {
        let id = c["id"].as_str().unwrap().to_owned();
        let participants = c["participants"].as_array().unwrap();
        *opened
            .entry(participants[0].as_str().unwrap().to_owned())
            .or_default() += 1;
        for p in participants {
            took_part
                .entry(p.as_str().unwrap().to_owned())
                .or_default()
                .insert(id.clone());
        }
    }
    let export = ok_in(here, &["export"]);
    for line in export.lines() {
        let message: Value = serde_json::from_str(line).unwrap();
        took_part
            .entry(message["source"].as_str().unwrap().to_owned())
            .or_default()
            .insert(message["conversation_id"].as_str().unwrap().to_owned());
    }
    for module in DEMO_MODULES {
        let expected = (
            opened.get(module).copied().unwrap_or(0),
            took_part.get(module).map_or(0, |s| s.len() as u64),
        );
        assert_eq!(listed[module], expected, "{module}: (opened, took part)");
    }
    assert!(
        listed["planner"].1 > 0,
        "the planner answers in every handoff: {listed:?}"
    );

    // Every inspection command, on the right database and on a wrong path.
    let first = conversations[0]["id"].as_str().unwrap().to_owned();
    let short = &first[first.len() - 8..];
    for args in [
        vec!["conversations"],
        vec!["show", short],
        vec!["analytics"],
        vec!["health"],
        vec!["modules"],
        vec!["export"],
        vec!["export", short, "--audit"],
        vec!["prune", "--older-than", "7d", "--dry-run"],
    ] {
        ok_in(here, &args);
        only(here, &["colloquy.db"], &format!("after {args:?}"));
        let mut wrong = args.clone();
        wrong.extend(["--db", "colloqy.db"]);
        fails(&colloquy_in(here, &wrong), "colloqy.db does not exist");
        only(here, &["colloquy.db"], &format!("after {wrong:?}"));
    }
    // A file that is not a colloquy database is refused and left as it was, with nothing
    // beside it.
    std::fs::write(here.join("notes.txt"), "shopping list\n").unwrap();
    fails(
        &colloquy_in(here, &["conversations", "--db", "notes.txt"]),
        "not a colloquy database",
    );
    assert_eq!(
        std::fs::read_to_string(here.join("notes.txt")).unwrap(),
        "shopping list\n"
    );
    only(
        here,
        &["colloquy.db", "notes.txt"],
        "after reading notes.txt",
    );
    // A missing directory is named as such, not as a permissions problem.
    fails(
        &colloquy_in(here, &["demo", "--db", "no/such/dir/x.db"]),
        "does not exist",
    );
    only(
        here,
        &["colloquy.db", "notes.txt"],
        "after a demo into a missing directory",
    );
    // A typo gets clap's suggestion.
    fails(
        &colloquy_in(here, &["analytcs"]),
        "similar subcommand exists: 'analytics'",
    );

    // `serve` with the demo's modules, one A2A exchange, then SIGTERM.
    let db = here.join("colloquy.db");
    let (server, ready, base) = common::serve(&db, &[]);
    let cards: Vec<&str> = ready["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        cards.iter().all(|c| !c.contains("a2a-client")),
        "the caller participant is not served as an agent: {cards:?}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = http.get(format!("{base}/")).send().await.unwrap();
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/inspect");
    let answer = common::send_text(
        &http,
        &format!("{base}/agents/echo"),
        "walk-through-1",
        "hello",
        None,
    )
    .await;
    let context = answer["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    assert!(
        !context.starts_with("00000000"),
        "an A2A conversation id does not read as a nil id: {context}"
    );
    assert!(server.terminate(), "serve stops cleanly on SIGTERM");
    only(here, &["colloquy.db", "notes.txt"], "after serve");

    // The A2A conversation is still active; the operator ends it.
    let shown = ok_in(here, &["show", &context[..8]]);
    assert!(shown.contains("status        active"), "{shown}");
    let modules = ok_in(here, &["modules"]);
    assert!(
        modules.lines().all(|l| !l.starts_with("a2a-client")),
        "a caller is not listed as a module:\n{modules}"
    );
    let ended = json_in(here, &["end", &context]);
    assert_eq!(ended["status"], "completed", "{ended}");
    fails(&colloquy_in(here, &["end", &context]), "completed");
    let health = colloquy_in(here, &["health"]);
    assert_eq!(health.code, 0, "{}{}", health.stdout, health.stderr);
    assert!(health.stdout.starts_with("healthy"), "{}", health.stdout);
    assert!(
        health.stdout.contains("integrity check passed"),
        "{}",
        health.stdout
    );
    only(here, &["colloquy.db", "notes.txt"], "at the end");
}

#[test]
fn show_takes_a_unique_part_of_an_id_and_tells_handoffs_state_changes_and_endings() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    ok_in(here, &["demo", "--conversations", "6"]);
    let all = json_in(here, &["conversations"]);
    let ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    // The leading digits are the creation time: shared by all of them, so ambiguous.
    let common_start = &ids[0][..6];
    let ambiguous = colloquy_in(here, &["show", common_start]);
    fails(&ambiguous, "give more of the id");
    for id in &ids {
        assert!(
            ambiguous.stderr.contains(id.as_str()),
            "{}",
            ambiguous.stderr
        );
    }

    let failed = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"]["status"] == "failed")
        .unwrap_or_else(|| panic!("the demo fails one conversation: {all}"));
    let failed_id = failed["id"].as_str().unwrap();
    let text = ok_in(here, &["show", &failed_id[failed_id.len() - 8..]]);
    assert!(
        text.contains(&format!("conversation {failed_id}")),
        "{text}"
    );
    assert!(text.contains("ended         failed at"), "{text}");
    assert!(text.contains("state change"), "{text}");
    assert!(text.contains("opened between"), "{text}");

    // A handoff: the planner hands its place to the summarizer.
    let handoff = ids
        .iter()
        .map(|id| ok_in(here, &["show", id]))
        .find(|text| text.contains("transfer:"))
        .expect("the demo hands conversations off");
    assert!(handoff.contains("planner"), "{handoff}");
    assert!(handoff.contains("ended         completed at"), "{handoff}");

    // The audit export carries the same.
    let audit = ok_in(here, &["export", failed_id, "--audit"]);
    let record: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert!(
        record["ended"].as_str().unwrap().starts_with("failed at"),
        "{record}"
    );
    assert!(!record["state_changes"].as_array().unwrap().is_empty());
    assert_eq!(
        record["messages"].as_array().unwrap().len() as u64,
        record["conversation"]["turn_count"].as_u64().unwrap()
    );
    // A malformed id is a usage error.
    let malformed = colloquy_in(here, &["show", "zz"]);
    assert_eq!(malformed.code, 2);
}

#[test]
fn load_with_a_database_file_stores_there_and_ends_its_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let report = json_in(
        here,
        &[
            "load",
            "--db",
            "bench.db",
            "--conversations",
            "4",
            "--turns",
            "2",
        ],
    );
    assert_eq!(report["store"], "sqlite", "{report}");
    assert_eq!(report["left_active"], 0, "{report}");
    let analytics = json_in(here, &["analytics", "--db", "bench.db"]);
    assert_eq!(analytics["conversations"], 4, "{analytics}");
    assert_eq!(analytics["by_status"]["completed"], 4, "{analytics}");
    assert_eq!(analytics["total_turns"], 16, "{analytics}");
    only(here, &["bench.db"], "after load");
    fails(
        &colloquy_in(here, &["load", "--store", "memory", "--db", "bench.db"]),
        "--store memory keeps nothing",
    );
}

#[test]
fn serve_on_a_busy_port_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    fails(
        &colloquy_in(
            here,
            &[
                "serve",
                "--listen",
                &address,
                "--db",
                "fresh.db",
                "--demo-modules",
            ],
        ),
        "cannot listen on",
    );
    assert!(files(here).is_empty(), "{:?}", files(here));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_times_out_what_a_stopped_server_left_idle() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let db = here.join("served.db");
    let (server, _, base) = common::serve(&db, &["--idle-timeout", "1s"]);
    let http = reqwest::Client::new();
    for n in 0..3 {
        let answer = common::send_text(
            &http,
            &format!("{base}/agents/echo"),
            &format!("left-{n}"),
            "hello",
            None,
        )
        .await;
        assert!(answer["result"].is_object(), "{answer}");
    }
    assert!(server.terminate());
    // Nothing times them out now that the server is gone: health says so, and says what to
    // run. The idle timeout is a second of real time; health is asked until it sees it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let health = loop {
        let health = colloquy_in(here, &["health", "--db", "served.db"]);
        if health.code == 1 || std::time::Instant::now() > deadline {
            break health;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(health.code, 1, "{}", health.stdout);
    assert!(
        health.stdout.contains("`colloquy reap`"),
        "{}",
        health.stdout
    );
    assert!(
        health.stdout.contains("`colloquy end ID`"),
        "{}",
        health.stdout
    );
    let reaped = json_in(here, &["reap", "--db", "served.db"]);
    assert_eq!(reaped["timed_out"], 3, "{reaped}");
    let again = json_in(here, &["reap", "--db", "served.db"]);
    assert_eq!(
        again["timed_out"], 0,
        "a conversation times out once: {again}"
    );
    let analytics = json_in(here, &["analytics", "--db", "served.db"]);
    assert_eq!(analytics["by_status"]["timed_out"], 3, "{analytics}");
    assert_eq!(colloquy_in(here, &["health", "--db", "served.db"]).code, 0);
}

#[test]
fn a_malformed_tokens_file_is_named_without_quoting_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    std::fs::write(here.join("tokens"), "# callers\nsuper-secret-token-1234\n").unwrap();
    let run = colloquy_in(
        here,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            "tokens",
            "--db",
            "t.db",
        ],
    );
    fails(&run, "tokens, line 2");
    assert!(!run.stderr.contains("super-secret"), "{}", run.stderr);
    assert!(
        files(here).iter().all(|f| f == "tokens"),
        "{:?}",
        files(here)
    );
}

#[test]
fn a_token_for_two_participants_or_a_participant_named_like_a_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    std::fs::write(
        here.join("tokens"),
        "tok-alice alice\ntok-bob bob\ntok-alice mallory\n",
    )
    .unwrap();
    let run = colloquy_in(
        here,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            "tokens",
            "--db",
            "t.db",
        ],
    );
    fails(&run, "tokens, line 3");
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("tok-alice"),
        "never print a token: {}",
        run.stderr
    );

    std::fs::write(here.join("tokens"), "tok-alice alice\ntok-echo echo\n").unwrap();
    let run = colloquy_in(
        here,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            "tokens",
            "--demo-modules",
            "--db",
            "t.db",
        ],
    );
    fails(&run, "tokens, line 2");
    assert!(run.stderr.contains("echo"), "{}", run.stderr);
    assert!(
        files(here).iter().all(|f| f == "tokens"),
        "a refused start creates nothing: {:?}",
        files(here)
    );
}
