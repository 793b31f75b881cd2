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

/// The stored transcript of the conversation `context` in `schema`.
async fn transcript(url: &str, schema: &str, context: &str) -> Vec<colloquy_core::Message> {
    let store = PostgresStore::connect(
        url,
        PostgresOptions::new()
            .schema(schema)
            .unwrap()
            .existing_only(),
    )
    .await
    .unwrap();
    store
        .messages(context.parse().unwrap(), MessageRange::All)
        .await
        .unwrap()
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

    let transcript = transcript(&url, &schema, &context).await;
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
    drop_schema(&url, &schema);
}

/// A hub stopped with SIGSTOP past the member timeout is fenced by the others, which carry
/// its conversations on; when it resumes (SIGCONT), nothing it attempts as its old member
/// lands (its writes are refused), it rejoins under a new epoch, and the transcript stays
/// contiguous, every reply right after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_hub_is_fenced_and_cannot_corrupt_when_it_resumes() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_paused_{}", std::process::id());
    drop_schema(&url, &schema);
    let (paused, _, base) = common::serve_on(&url, &["--schema", &schema]);
    let pid = paused.0.id().to_string();
    let http = reqwest::Client::new();
    let first = send(&http, &format!("{base}/agents/echo"), "p-1", "before", None).await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();

    // Another hub, with its own echo, and a short member timeout: it fences the silent one.
    let store = PostgresStore::connect(&url, PostgresOptions::new().schema(&schema).unwrap())
        .await
        .unwrap();
    let other = colloquy_runtime::Hub::builder()
        .store(std::sync::Arc::new(store))
        .member_name("other")
        .member_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    other
        .register(colloquy_testkit::modules::Echo::new(
            "echo".parse().unwrap(),
        ))
        .await
        .unwrap();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let fenced = colloquy_testkit::eventually(
        || async {
            other
                .members()
                .await
                .unwrap()
                .unwrap()
                .iter()
                .any(|m| m.name != "other" && m.fenced)
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(fenced, "the paused hub was fenced");
    // The conversation goes on through the other hub.
    let id = context.parse().unwrap();
    let conversation = other
        .conversation(id, "a2a-client".parse().unwrap())
        .await
        .unwrap();
    let carried = conversation.send("while it sleeps").await.unwrap();
    assert_eq!(carried.request.turn, 3);

    // It resumes, and is asked to continue the same conversation at once.
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let resumed = send(
        &http,
        &format!("{base}/agents/echo"),
        "p-2",
        "after",
        Some(&context),
    )
    .await;
    // Refused as fenced, or (once it rejoined) written after what the other hub wrote:
    // never over it.
    let resumed_task = &resumed["result"]["task"]["id"];
    assert!(
        resumed["error"].is_object() || *resumed_task == json!(format!("{context}:5")),
        "{resumed}"
    );
    let transcript = other
        .reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap();
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(
        turns,
        (1..=turns.len() as u64).collect::<Vec<_>>(),
        "contiguous"
    );
    for pair in transcript.chunks(2) {
        assert_eq!(pair.len(), 2, "every request has its reply");
        assert_eq!(pair[1].in_reply_to, Some(pair[0].id));
    }
    assert_eq!(
        transcript[2].content, "while it sleeps",
        "the other hub's turn stands"
    );
    // It rejoins under a new epoch.
    let rejoined = colloquy_testkit::eventually(
        || async {
            let members = other.members().await.unwrap().unwrap();
            members
                .iter()
                .filter(|m| m.name != "other")
                .any(|m| m.alive)
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(rejoined, "the resumed hub joined again");
    other.shutdown().await;
    assert!(paused.terminate());
    drop_schema(&url, &schema);
}

/// Three `colloquy serve` processes, each hosting the demo's `echo`: 24 A2A clients send into
/// one conversation through all three at once. Every call succeeds and the stored
/// transcript is contiguous, every reply right after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_through_three_processes_keep_one_order() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_order_{}", std::process::id());
    drop_schema(&url, &schema);
    let hubs: Vec<_> = (0..3)
        .map(|_| common::serve_on(&url, &["--schema", &schema]))
        .collect();
    let bases: Vec<String> = hubs.iter().map(|(_, _, base)| base.clone()).collect();
    let http = reqwest::Client::new();
    let first = send(
        &http,
        &format!("{}/agents/echo", bases[0]),
        "o-0",
        "open",
        None,
    )
    .await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..24 {
        let (http, endpoint, context) = (
            http.clone(),
            format!("{}/agents/echo", bases[sender % 3]),
            context.clone(),
        );
        senders.spawn(async move {
            for n in 0..3 {
                let id = format!("o-{sender}-{n}");
                let answer = send(&http, &endpoint, &id, &id, Some(&context)).await;
                let task = &answer["result"]["task"];
                assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
                assert_eq!(task["artifacts"][0]["parts"][0]["text"], id.as_str());
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let transcript = transcript(&url, &schema, &context).await;
    assert_eq!(transcript.len(), 2 + 24 * 3 * 2);
    for (i, message) in transcript.iter().enumerate() {
        assert_eq!(message.turn, i as u64 + 1, "contiguous");
    }
    for pair in transcript.chunks(2) {
        assert_eq!(
            pair[1].in_reply_to,
            Some(pair[0].id),
            "turn {}",
            pair[1].turn
        );
        assert_eq!(pair[1].content, pair[0].content);
    }
    for (hub, _, _) in hubs {
        assert!(hub.terminate());
    }
    drop_schema(&url, &schema);
}
