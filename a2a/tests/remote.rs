//! `RemoteAgent` against a real A2A agent over HTTP on a loopback port the OS picks: a small
//! agent written here with axum (the Python SDK's agent is the interop test in the CLI),
//! registered in a hub from its card, holding a conversation with a Rust module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::{extract::State, routing::get, routing::post, Json, Router};
use colloquy_a2a::{A2aError, RemoteAgent};
use colloquy_runtime::{ConversationSpec, HubError, MessageRange, ModuleName, RouteError};
use colloquy_testkit::{modules::Echo, TestHub};
use serde_json::{json, Value};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

/// What the agent received: (contextId, messageId, parts).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// An A2A agent: "fail" fails the task, "later" answers with a working task that GetTask
/// then finds completed, anything else gets a message counting the context's messages.
async fn agent() -> Result<(String, Seen)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let seen: Seen = Arc::default();
    let card = json!({
        "name": "Counting Agent",
        "description": "counts what it hears",
        "version": "2.1.0",
        "supportedInterfaces": [{"url": format!("{base}/rpc"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "count", "name": "Count", "description": "counts", "tags": []}]
    });
    let app = Router::new()
        .route(
            "/.well-known/agent-card.json",
            get(move || {
                let card = card.clone();
                async move { Json(card) }
            }),
        )
        .route("/rpc", post(rpc))
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, seen))
}

async fn rpc(State(seen): State<Seen>, Json(call): Json<Value>) -> Json<Value> {
    let id = call["id"].clone();
    let result = match call["method"].as_str() {
        Some("SendMessage") => {
            let message = &call["params"]["message"];
            let context = message["contextId"].as_str().unwrap_or("").to_owned();
            let text = message["parts"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let count = {
                let mut seen = seen.lock().unwrap();
                seen.push((
                    context.clone(),
                    message["messageId"].as_str().unwrap_or("").to_owned(),
                    message["parts"].clone(),
                ));
                seen.iter().filter(|(c, _, _)| *c == context).count()
            };
            match text.as_str() {
                "fail" => json!({"task": {"id": "t-fail", "contextId": context,
                    "status": {"state": "TASK_STATE_FAILED",
                        "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "cannot count that"}]}}}}),
                "later" => json!({"task": {"id": "t-later", "contextId": context,
                    "status": {"state": "TASK_STATE_WORKING"}}}),
                _ => json!({"message": {"messageId": format!("a-{count}"), "role": "ROLE_AGENT",
                    "contextId": context, "parts": [{"text": format!("message {count}: {text}")}]}}),
            }
        }
        Some("GetTask") => json!({"id": "t-later", "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "a", "parts": [{"data": {"done": true}}]}]}),
        _ => {
            return Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}}),
            )
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_agent_holds_a_stored_conversation_with_a_rust_module() -> Result<()> {
    let (base, seen) = agent().await?;
    let remote = RemoteAgent::connect(&base).await?;
    let info = colloquy_runtime::Module::info(&remote);
    assert_eq!(info.name, name("counting-agent"));
    assert_eq!(info.description, "counts what it hears");
    assert_eq!(
        info.capabilities,
        vec!["count".parse::<colloquy_runtime::Capability>()?]
    );
    assert_eq!(remote.endpoint(), format!("{base}/rpc"));

    let hub = TestHub::sqlite().await?;
    hub.register(remote).await?;
    hub.register(Echo::new(name("planner"))).await?;
    let conversation = hub
        .start_conversation(ConversationSpec::new(
            name("planner"),
            [name("counting-agent")],
        ))
        .await?;
    for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
        let exchange = conversation.send(text).await?;
        assert_eq!(exchange.request.turn, 2 * n as u64 + 1);
        let reply = exchange.reply.unwrap();
        assert_eq!(reply.content, json!(format!("message {}: {text}", n + 1)));
        assert_eq!(reply.source, name("counting-agent"));
    }
    // A task the agent finishes later: polled with GetTask, its artifact is the reply.
    let later = conversation.send("later").await?;
    assert_eq!(later.reply.unwrap().content, json!({"done": true}));
    // A failed task is the module's failure, with the agent's reason; no reply is stored.
    let failed = conversation.send("fail").await.unwrap_err();
    match failed {
        HubError::Route(RouteError::HandlerFailed { message, .. }) => {
            assert!(message.contains("cannot count that"), "{message}");
            assert!(message.contains("failed"), "{message}");
        }
        other => panic!("expected the module's failure, got {other:?}"),
    }

    let stored = hub
        .hub()
        .reader()
        .messages(conversation.id(), MessageRange::All)
        .await?;
    let turns: Vec<u64> = stored.iter().map(|m| m.turn).collect();
    assert_eq!(
        turns,
        (1..=9).collect::<Vec<_>>(),
        "contiguous, the failed request stored"
    );
    // The agent saw the conversation id as contextId and each stored message id as
    // messageId, so its own retries are idempotent too.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    let requests: Vec<_> = stored
        .iter()
        .filter(|m| m.source == name("planner"))
        .collect();
    for ((context, message_id, _), request) in seen.iter().zip(&requests) {
        assert_eq!(context, &conversation.id().to_string());
        assert_eq!(message_id, &request.id.to_string());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_is_not_there_is_a_typed_error() -> Result<()> {
    // A port that was just free: nothing listens on it.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = free.local_addr()?;
    drop(free);
    match RemoteAgent::connect(&format!("http://{address}")).await {
        Err(A2aError::AgentUnreachable { url, .. }) => {
            assert_eq!(url, format!("http://{address}/.well-known/agent-card.json"));
        }
        other => panic!("expected AgentUnreachable, got {other:?}"),
    }
    // Something that answers, but not with a card.
    let (base, _) = agent().await?;
    match RemoteAgent::connect(&format!("{base}/nothing-here")).await {
        Err(A2aError::BadCard { reason, .. }) => assert!(reason.contains("404"), "{reason}"),
        other => panic!("expected BadCard, got {other:?}"),
    }
    Ok(())
}
