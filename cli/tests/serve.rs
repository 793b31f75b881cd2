//! `colloquy serve` as a user runs it: the real binary on a port the OS picks, an A2A
//! JSON-RPC call to a demo module, the exchange stored in the database, and a clean stop on
//! SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use colloquy_runtime::MessageRange;
use colloquy_storage::{ConversationStore, SqliteOptions, SqliteStore};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a2a_calls_with_stored_exchanges_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.db");
    let (server, started, base) = common::serve(&db, &[]);
    let cards: Vec<String> = serde_json::from_value(started["cards"].clone()).unwrap();
    assert_eq!(cards.len(), 6, "the demo's five and echo: {cards:?}");
    let card_url = cards
        .iter()
        .find(|url| url.ends_with("/agents/extractor/.well-known/agent-card.json"))
        .unwrap()
        .clone();
    let extractor = card_url
        .trim_end_matches("/.well-known/agent-card.json")
        .to_owned();

    let http = reqwest::Client::new();
    let card: Value = http
        .get(&card_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["supportedInterfaces"][0]["url"], extractor);
    let answer: Value = http
        .post(&extractor)
        .json(&json!({
            "jsonrpc": "2.0",
            "id": "call-1",
            "method": "SendMessage",
            "params": {"message": {
                "messageId": "from-python-1",
                "role": "ROLE_USER",
                "parts": [{"data": {"text": "name: Ada\nlanguage: Rust"}}],
            }},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["id"], "call-1");
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["data"]["record"]["name"],
        "Ada"
    );

    // Operations: health as JSON, metrics as Prometheus text counting the exchange.
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics
            .contains(r#"colloquy_a2a_exchanges_total{module="extractor",outcome="completed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("colloquy_a2a_exchange_seconds_bucket"),
        "{metrics}"
    );

    // SIGTERM: the server drains and exits cleanly.
    assert!(server.terminate(), "the server stops cleanly on SIGTERM");

    // The exchange is in the database.
    let context = task["contextId"].as_str().unwrap().parse().unwrap();
    let store = SqliteStore::open(&db, SqliteOptions::new().existing_only())
        .await
        .unwrap();
    let messages = store.messages(context, MessageRange::All).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].source.as_str(), "a2a-client");
    assert_eq!(messages[1].content["record"]["language"], "Rust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_token_refuses_calls_without_it_and_speaks_as_its_participant() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokens.db");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# who may call\ns3cret ops-console\n").unwrap();
    let (server, started, _) = common::serve(&db, &["--tokens", tokens.to_str().unwrap()]);
    let cards = started["cards"].as_array().unwrap();
    assert_eq!(
        cards.len(),
        6,
        "the caller participant is not an agent: {cards:?}"
    );
    let extractor = format!(
        "http://{}/agents/extractor",
        started["listening"].as_str().unwrap()
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
        "messageId": "t-1", "role": "ROLE_USER", "parts": [{"data": {"text": "a: b"}}]}}});
    let http = reqwest::Client::new();
    let refused = http.post(&extractor).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let answer: Value = http
        .post(&extractor)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(server);
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    let context = task["contextId"].as_str().unwrap().parse().unwrap();
    let store = SqliteStore::open(&db, SqliteOptions::new().existing_only())
        .await
        .unwrap();
    let messages = store.messages(context, MessageRange::All).await.unwrap();
    assert_eq!(messages[0].source.as_str(), "ops-console");
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("never.db"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without tokens"), "{stderr}");
    assert!(!dir.path().join("never.db").exists(), "nothing was opened");
}

/// `serve --db :memory:` keeps conversations in the serving process only: an A2A context
/// continues with the next turns, nothing is written beside it, and no other command can
/// open it (it says where to look instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_memory_continues_contexts_and_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
    command.current_dir(dir.path()).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--demo-modules",
        "--db",
        ":memory:",
    ]);
    let (server, ready) = common::start(&mut command);
    let base = format!("http://{}", ready["listening"].as_str().unwrap());
    let echo = format!("{base}/agents/echo");
    let http = reqwest::Client::new();
    let first = common::send_text(&http, &echo, "memory-1", "hello", None).await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    assert_eq!(
        first["result"]["task"]["id"],
        format!("{context}:1"),
        "{first}"
    );
    let second = common::send_text(&http, &echo, "memory-2", "again", Some(&context)).await;
    assert_eq!(
        second["result"]["task"]["id"],
        format!("{context}:3"),
        "the second exchange is turns 3 and 4 of the same conversation: {second}"
    );
    assert!(server.terminate(), "serve stops cleanly on SIGTERM");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing is written: {left:?}");

    let shown = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .current_dir(dir.path())
        .args(["conversations", "--db", ":memory:"])
        .output()
        .unwrap();
    assert!(!shown.status.success());
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(
        stderr.contains("lives inside one `colloquy serve`") && stderr.contains("/inspect"),
        "{stderr}"
    );
}
