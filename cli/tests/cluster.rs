//! Three `colloquy serve` processes on one PostgreSQL schema behave as one hub: a module
//! that lives only on hub A is served, and answers, through hubs B and C; one conversation
//! continued through all three stays contiguous; `colloquy health` lists the three.
//! Needs `COLLOQUY_TEST_POSTGRES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use colloquy_storage::{ConversationStore, MessageRange, PostgresOptions, PostgresStore};
use serde_json::{json, Value};

fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql")
        .arg(url)
        .args(["-qAt", "-c"])
        .arg(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .output();
}

async fn send(
    http: &reqwest::Client,
    endpoint: &str,
    id: &str,
    text: &str,
    context: Option<&str>,
) -> Value {
    let mut message = json!({"messageId": id, "role": "ROLE_USER", "parts": [{"text": text}]});
    if let Some(context) = context {
        message["contextId"] = json!(context);
    }
    http.post(endpoint)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_serve_a_module_that_lives_on_one_of_them() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_cluster_{}", std::process::id());
    drop_schema(&url, &schema);
    let (hub_a, _, _) = common::serve_on(&url, &["--schema", &schema]);
    // B and C host no module of their own (but the A2A callers).
    let (hub_b, _, base_b) = common::serve_with(&url, false, &["--schema", &schema]);
    let (hub_c, _, base_c) = common::serve_with(&url, false, &["--schema", &schema]);
    let http = reqwest::Client::new();

    // C learns from A's heartbeats that echo lives on A, and serves its card.
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let card = http
            .get(format!("{base_c}/agents/echo/.well-known/agent-card.json"))
            .send()
            .await
            .unwrap();
        if card.status() == 200 {
            let card: Value = card.json().await.unwrap();
            assert_eq!(
                card["supportedInterfaces"][0]["url"],
                format!("{base_c}/agents/echo")
            );
            break;
        }
        assert!(Instant::now() < limit, "hub C never learnt of echo");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limit = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base_b}/agents/echo/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < limit, "hub B never learnt of echo");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One conversation, continued through C, then B, then C: every reply comes from A.
    let first = send(&http, &format!("{base_c}/agents/echo"), "m-1", "one", None).await;
    let task = &first["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{first}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "one");
    let context = task["contextId"].as_str().unwrap().to_owned();
    let second = send(
        &http,
        &format!("{base_b}/agents/echo"),
        "m-2",
        "two",
        Some(&context),
    )
    .await;
    assert_eq!(
        second["result"]["task"]["id"],
        format!("{context}:3"),
        "{second}"
    );
    let third = send(
        &http,
        &format!("{base_c}/agents/echo"),
        "m-3",
        "three",
        Some(&context),
    )
    .await;
    assert_eq!(
        third["result"]["task"]["id"],
        format!("{context}:5"),
        "{third}"
    );
    assert_eq!(
        third["result"]["task"]["artifacts"][0]["parts"][0]["text"],
        "three"
    );

    let store = PostgresStore::connect(
        &url,
        PostgresOptions::new()
            .schema(&schema)
            .unwrap()
            .existing_only(),
    )
    .await
    .unwrap();
    let transcript = store
        .messages(context.parse().unwrap(), MessageRange::All)
        .await
        .unwrap();
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(turns, [1, 2, 3, 4, 5, 6]);
    for pair in transcript.chunks(2) {
        assert_eq!(pair[1].in_reply_to, Some(pair[0].id));
        assert_eq!(pair[1].source.as_str(), "echo");
    }

    // health lists the three hubs, alive.
    let health = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["health", "--json", "--schema", &schema, "--db", &url])
        .output()
        .unwrap();
    let health: Value = serde_json::from_slice(&health.stdout).unwrap();
    let alive = health["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["alive"] == true)
        .count();
    assert_eq!(alive, 3, "{health}");
    for hub in [hub_a, hub_b, hub_c] {
        assert!(hub.terminate());
    }
    drop(store);
    drop_schema(&url, &schema);
}
