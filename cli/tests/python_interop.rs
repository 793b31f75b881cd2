//! The official A2A Python SDK (`a2a-sdk`, pinned in `tests/python/requirements.txt`)
//! against colloquy, both ways:
//!
//! 1. the SDK's client talks to `colloquy serve`: card discovery, two turns in one context,
//!    a retried messageId, GetTask, a failing module, a streamed message, a cancel in flight
//!    and a wrong token;
//! 2. an agent written with the SDK's server (`tests/python/agent.py`) is registered in a hub
//!    with `RemoteAgent` and holds a three-exchange conversation with a Rust module;
//! 3. `colloquy serve` is restarted between two messages of one context, and the turns
//!    continue.
//!
//! Needs a Python with the SDK in `COLLOQUY_TEST_PYTHON` (`.ci/run` makes the virtual
//! environment). Without it the tests say why and pass, unless `COLLOQUY_REQUIRE_SERVICES`
//! is set, as `.ci/run` does: then a missing Python fails them, so CI can never pass by
//! skipping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::{Path, PathBuf};

use common::{python, python_agent, run_script, Running};

use colloquy_a2a::RemoteAgent;
use colloquy_runtime::{
    async_trait, ConversationSpec, Hub, MessageRange, Module, ModuleError, ModuleInfo, Response,
    Turn,
};
use serde_json::Value;

/// `colloquy serve` on `db` with the demo modules and a token file; returns it and its
/// base URL.
fn serve(db: &Path, tokens: &Path, extra: &[&str]) -> (Running, String) {
    let tokens = tokens.to_str().unwrap();
    let mut args = vec!["--tokens", tokens];
    args.extend_from_slice(extra);
    let (server, _, base) = common::serve(db, &args);
    (server, base)
}

fn run_python(python: &Path, args: &[&str]) -> Value {
    run_script(python, "interop.py", args)
}

fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, "py-secret python-tests\n").unwrap();
    path
}

#[test]
fn the_official_python_sdk_client_converses_with_served_modules() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_agent, agent_url) = python_agent(&python);
    let (_server, base) = serve(
        &dir.path().join("interop.db"),
        &tokens_file(dir.path()),
        &["--agent", &agent_url],
    );
    let seen = run_python(&python, &["client", &base, "py-secret"]);

    let first = &seen["first"]["task"];
    assert_eq!(first["status"]["state"], "TASK_STATE_COMPLETED", "{seen}");
    let record = &first["artifacts"][0]["parts"][0]["data"]["record"];
    assert_eq!(record["name"], "Grace");
    assert_eq!(record["language"], "COBOL");
    let context = first["contextId"].as_str().unwrap();
    assert_eq!(first["id"], format!("{context}:1"));
    // The retried messageId: the same task, no new turn.
    assert_eq!(seen["retried"], seen["first"]);
    // The second message of the context is the next exchange: turns 3 and 4.
    let second = &seen["second"]["task"];
    assert_eq!(second["id"], format!("{context}:3"), "{seen}");
    assert_eq!(
        second["artifacts"][0]["parts"][0]["data"]["record"]["name"],
        "Grace Hopper"
    );
    // GetTask reads the first exchange back from the store.
    assert_eq!(seen["fetched"]["id"], first["id"]);
    assert_eq!(seen["fetched"]["artifacts"], first["artifacts"]);
    // A failing handler is a failed task with the reason, not an error.
    let failed = &seen["failed"]["task"];
    assert_eq!(failed["status"]["state"], "TASK_STATE_FAILED", "{seen}");
    let reason = failed["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(reason.contains("expected"), "{reason}");

    // Streamed: submitted, working, the reply, completed, in order.
    let streamed = seen["streamed"].as_array().unwrap();
    let states: Vec<&str> = streamed
        .iter()
        .filter_map(|e| {
            e.pointer("/task/status/state")
                .or_else(|| e.pointer("/statusUpdate/status/state"))
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(
        states,
        [
            "TASK_STATE_SUBMITTED",
            "TASK_STATE_WORKING",
            "TASK_STATE_COMPLETED"
        ],
        "{streamed:?}"
    );
    let artifact = streamed
        .iter()
        .find_map(|e| e.pointer("/artifactUpdate/artifact/parts/0/text"))
        .unwrap();
    assert_eq!(artifact, "hello, stream");

    // Canceled in flight: the Python agent's call through RemoteAgent was stopped.
    assert_eq!(
        seen["canceled"]["status"]["state"], "TASK_STATE_CANCELED",
        "{seen}"
    );
    let last = seen["cancel_stream"].as_array().unwrap().last().unwrap();
    assert_eq!(
        last.pointer("/statusUpdate/status/state").unwrap(),
        "TASK_STATE_CANCELED"
    );
    // And at the Python agent: the call colloquy gave up on was canceled there too (its
    // executor told to cancel, its work stopped), not left running.
    let context = seen["canceled"]["contextId"].as_str().unwrap().to_owned();
    let ended_url = format!("{agent_url}/_test/ended");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline =
        std::time::Instant::now() + colloquy_testkit::scaled(std::time::Duration::from_secs(10));
    let ended = loop {
        let ended: Value = runtime
            .block_on(async { reqwest::get(&ended_url).await?.json().await })
            .unwrap();
        let found = ended
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["context"] == context.as_str());
        if found || std::time::Instant::now() > deadline {
            break ended;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let hows: Vec<&str> = ended
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["context"] == context.as_str())
        .map(|e| e["how"].as_str().unwrap())
        .collect();
    assert!(
        hows.contains(&"cancel"),
        "the Python agent's task of {context} was not canceled: {ended}"
    );

    let wrong = seen["wrong_token"].as_str().unwrap();
    assert!(wrong.contains("401"), "a wrong token is refused: {wrong}");
}

/// The Rust module of the conversation: it asks, the Python agent answers.
struct Asker;

#[async_trait]
impl Module for Asker {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("asker".parse().unwrap())
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::reply(turn.message.content.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_written_with_the_python_sdk_joins_a_hub_as_a_remote_agent() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("remote.db");
    let (_agent, url) = python_agent(&python);
    let hub = Hub::builder().sqlite(&db).build().await.unwrap();
    let agent = RemoteAgent::connect(&url).await.unwrap();
    assert_eq!(agent.info().name.as_str(), "python-counter");
    hub.register(agent).await.unwrap();
    hub.register(Asker).await.unwrap();
    let conversation = hub
        .start_conversation(ConversationSpec::between("asker", "python-counter").unwrap())
        .await
        .unwrap();
    for (n, question) in ["first?", "second?", "third?"].iter().enumerate() {
        let exchange = conversation.send(*question).await.unwrap();
        let reply = exchange.reply.unwrap();
        // The agent counts the context's messages: the three turns reached it as one.
        assert_eq!(
            reply.content,
            format!("python heard #{}: {question}", n + 1).as_str()
        );
        assert_eq!(reply.turn, 2 * n as u64 + 2);
        assert_eq!(reply.in_reply_to, Some(exchange.request.id));
    }
    let id = conversation.id();
    hub.shutdown().await;

    // Stored, contiguous, read back after the hub is gone.
    let reopened = Hub::builder().sqlite(&db).build().await.unwrap();
    let transcript = reopened
        .reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap();
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(turns, [1, 2, 3, 4, 5, 6]);
    let speakers: Vec<&str> = transcript.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(
        speakers,
        [
            "asker",
            "python-counter",
            "asker",
            "python-counter",
            "asker",
            "python-counter"
        ]
    );
    drop(reopened);

    // Served with `--agent`, the inspector names it a remote agent with its endpoint.
    let (server, _, base) = common::serve_with(&db, false, &["--agent", &url]);
    let modules = common::get_text(&format!("{base}/inspect/modules")).await;
    assert!(
        modules.contains("id=\"module-python-counter\""),
        "{modules}"
    );
    assert!(modules.contains("remote A2A agent at http://"), "{modules}");
    assert!(server.terminate());
}

#[test]
fn turns_continue_after_the_server_restarts_between_two_messages() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("restart.db");
    let tokens = tokens_file(dir.path());
    let first = {
        let (server, base) = serve(&db, &tokens, &[]);
        let first = run_python(&python, &["first", &base, "py-secret"]);
        // SIGTERM: drain and close, as an operator's restart does.
        assert!(server.terminate(), "the server stops cleanly");
        first
    };
    let context = first["task"]["contextId"].as_str().unwrap().to_owned();
    assert_eq!(first["task"]["id"], format!("{context}:1"));

    let (_server, base) = serve(&db, &tokens, &[]);
    let next = run_python(&python, &["continue", &base, "py-secret", &context]);
    let task = &next["task"];
    assert_eq!(task["contextId"], context.as_str());
    assert_eq!(task["id"], format!("{context}:3"), "{next}");
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "after-restart");
}
