//! `colloquy serve` as a user runs it: the real binary on a port the OS picks, an A2A
//! JSON-RPC call to a demo module, the exchange stored in the database, and a clean stop on
//! SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use colloquy_runtime::MessageRange;
use colloquy_storage::{ConversationStore, SqliteOptions, SqliteStore};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a2a_calls_with_stored_exchanges_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json", "--db"])
        .arg(&db)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let agents: Vec<String> = serde_json::from_value(started["agents"].clone()).unwrap();
    let extractor = agents
        .iter()
        .find(|url| url.ends_with("/agents/extractor"))
        .unwrap()
        .clone();
    assert_eq!(agents.len(), 5, "{agents:?}");

    let http = reqwest::Client::new();
    let card: Value = http
        .get(format!("{extractor}/.well-known/agent-card.json"))
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

    // SIGTERM: the server drains and exits cleanly.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .args(["--token", "s3cret=ops-console", "--db"])
        .arg(&db)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started: Value = serde_json::from_str(&line).unwrap();
    let agents = started["agents"].as_array().unwrap();
    assert_eq!(
        agents.len(),
        5,
        "the caller participant is not an agent: {agents:?}"
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
    let _ = child.kill();
    let _ = child.wait();
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    let context = task["contextId"].as_str().unwrap().parse().unwrap();
    let store = SqliteStore::open(&db, SqliteOptions::new().existing_only())
        .await
        .unwrap();
    let messages = store.messages(context, MessageRange::All).await.unwrap();
    assert_eq!(messages[0].source.as_str(), "ops-console");
}
