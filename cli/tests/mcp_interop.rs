//! The official MCP Python SDK (`mcp` 2.x, pinned in `tests/python/requirements.txt`)
//! against colloquy, both ways:
//!
//! 1. the SDK's client drives `colloquy mcp` over stdio and `/mcp` of `colloquy serve` over
//!    Streamable HTTP: tools listed, a conversation started with the demo's echo module, two
//!    turns sent, a live subscription to the transcript told of the second, the transcript
//!    resource read, bad arguments and refused turns answered with `isError` (nothing
//!    stored for them), a wrong token refused with 401;
//! 2. a server written with the SDK's `MCPServer` (`tests/python/mcp_server.py`) joins a hub
//!    as a module and holds a stored three-exchange conversation beside a Rust module; its
//!    tool errors are failed turns, and when it dies it is started again for the next turn.
//!
//! Needs a Python with the SDK in `COLLOQUY_TEST_PYTHON` (`.ci/run` makes the virtual
//! environment); without it the tests say why and pass, unless `COLLOQUY_REQUIRE_SERVICES`
//! is set, as `.ci/run` does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::path::Path;

use colloquy_mcp::{McpModule, RestartPolicy};
use colloquy_runtime::{
    async_trait, ConversationSpec, Hub, HubError, MessageKind, MessageRange, Module, ModuleError,
    ModuleInfo, Response, RouteError, RouteOptions, StoreReader, Turn,
};
use common::{python, run_script, script};
use serde_json::{json, Value};

fn run_client(python: &Path, args: &[&str]) -> Value {
    run_script(python, "mcp_client.py", args)
}

/// What `converse` of mcp_client.py saw, checked: the outcomes a client acts on.
fn check_conversation(seen: &Value, caller: &str) -> String {
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "end_conversation",
            "find_conversations",
            "history",
            "list_modules",
            "send",
            "start_conversation"
        ]
    );
    let modules = seen["modules"]["structured"]["modules"].as_array().unwrap();
    assert!(modules.iter().any(|m| m["name"] == "echo"), "{seen}");
    assert!(
        modules.iter().all(|m| m["name"] != caller),
        "a caller is not a module: {seen}"
    );

    let started = &seen["started"]["structured"];
    assert_eq!(started["participants"], json!([caller, "echo"]), "{seen}");
    let id = started["conversation_id"].as_str().unwrap().to_owned();

    let sent = &seen["sent"]["structured"];
    assert_eq!(sent["request_turn"], 1, "{seen}");
    assert_eq!(sent["reply_turn"], 2);
    assert_eq!(sent["reply"], json!({"text": "hello"}));
    assert_eq!(sent["from"], "echo");
    assert_eq!(seen["sent_again"]["structured"]["reply_turn"], 4);

    // The live subscription heard of the second exchange.
    let uri = format!("colloquy://conversations/{id}");
    assert_eq!(seen["honored"], json!([uri]));
    assert_eq!(seen["event"]["kind"], "ResourceUpdated", "{seen}");
    assert_eq!(seen["event"]["uri"], uri.as_str());

    // The transcript resource: four turns, request and reply alternating.
    let messages = seen["transcript"]["messages"].as_array().unwrap();
    let turns: Vec<(u64, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["turn"].as_u64().unwrap(),
                m["source"].as_str().unwrap(),
                m["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            (1, caller, "request"),
            (2, "echo", "reply"),
            (3, caller, "request"),
            (4, "echo", "reply")
        ]
    );
    let resources = seen["resources"].as_array().unwrap();
    assert!(resources.contains(&json!("colloquy://modules")));
    assert!(resources.contains(&json!(uri)));

    // Refusals: tool results with isError and the reason.
    let refused = |key: &str, says: &str| {
        let outcome = &seen[key];
        assert_eq!(outcome["is_error"], true, "{key}: {outcome}");
        let text = outcome["text"][0].as_str().unwrap();
        assert!(text.contains(says), "{key}: {text}");
    };
    refused("missing_content", "missing field `content`");
    refused("unknown_conversation", "not found among yours");
    refused("not_a_module", "nobody-here");
    refused("after_end", "accepts no turns");

    let found = seen["found"]["structured"]["conversations"]
        .as_array()
        .unwrap();
    assert_eq!(found.len(), 1, "{seen}");
    assert_eq!(found[0]["conversation_id"], id.as_str());
    assert_eq!(found[0]["turns"], 4);
    assert_eq!(
        seen["ended"]["structured"]["conversation"]["status"]["status"],
        "completed"
    );
    // Nothing was stored for the refused calls: the history still ends at turn 4.
    let history = seen["history"]["structured"]["messages"]
        .as_array()
        .unwrap();
    let last: Vec<u64> = history
        .iter()
        .map(|m| m["turn"].as_u64().unwrap())
        .collect();
    assert_eq!(last, [3, 4]);
    id
}

/// The conversations stored in `db`, with their turn counts.
async fn stored(db: &Path) -> Vec<(String, u64, Vec<String>)> {
    let hub = Hub::builder().sqlite(db).build().await.unwrap();
    let reader: StoreReader = hub.reader();
    let page = reader
        .list(&colloquy_runtime::ListFilter::new())
        .await
        .unwrap();
    let found = page
        .conversations
        .iter()
        .map(|c| {
            (
                c.id().to_string(),
                c.turn_count(),
                c.participants().iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    hub.shutdown().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_client_drives_colloquy_mcp_over_stdio() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stdio.db");
    let seen = run_client(
        &python,
        &[
            "stdio",
            env!("CARGO_BIN_EXE_colloquy"),
            db.to_str().unwrap(),
        ],
    );
    let id = check_conversation(&seen, "py-desk");
    // The process closed its store when the client left: the conversation is on disk,
    // with exactly the four turns sent, and no turnstile file is left behind.
    assert_eq!(
        stored(&db).await,
        [(id, 4, vec!["py-desk".to_owned(), "echo".to_owned()])]
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("turnstile"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_official_python_sdk_client_drives_the_mcp_endpoint_of_serve_with_tokens() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "desk-secret py-desk\nother-secret someone-else\n").unwrap();
    let (_server, ready, base) = common::serve(
        &dir.path().join("http.db"),
        &["--tokens", tokens.to_str().unwrap()],
    );
    let url = format!("{base}/mcp");
    assert_eq!(ready["mcp"], url.as_str());
    let seen = run_client(&python, &["http", &url, "desk-secret"]);
    let id = check_conversation(&seen, "py-desk");

    // Another caller's token: its own, empty world; the first caller's conversation is
    // "not found" to it.
    let other = run_client(&python, &["refused", &url, "no-such-token"]);
    assert_eq!(other["refused"], true, "{other}");
    let runtime_check = tokio::runtime::Runtime::new().unwrap();
    // What the SDK was refused with: 401, asking for a bearer token, before any MCP.
    let refused = runtime_check.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth("no-such-token")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let found = runtime_check.block_on(async {
        let client = reqwest::Client::new();
        mcp_call(
            &client,
            &url,
            "other-secret",
            "find_conversations",
            json!({}),
        )
        .await
    });
    assert_eq!(
        found["result"]["structuredContent"]["conversations"],
        json!([]),
        "{found}"
    );
    let peeked = runtime_check.block_on(async {
        let client = reqwest::Client::new();
        mcp_call(
            &client,
            &url,
            "other-secret",
            "history",
            json!({"conversation_id": id}),
        )
        .await
    });
    assert_eq!(peeked["result"]["isError"], true, "{peeked}");
}

/// One `tools/call` over Streamable HTTP with the raw protocol (initialize, then the call
/// in the same session), to check what a second caller sees.
async fn mcp_call(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    tool: &str,
    arguments: Value,
) -> Value {
    let post = |body: Value, session: Option<String>| {
        let mut request = client
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        request.send()
    };
    let initialized = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "rust-test", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    let session = initialized
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = initialized.text().await.unwrap();
    post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.clone(),
    )
    .await
    .unwrap();
    let answer = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": tool, "arguments": arguments}}),
        session,
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    // An SSE stream of one message, or a JSON body.
    let json_text = answer
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| data.starts_with('{'))
        .unwrap_or(answer.as_str())
        .to_owned();
    serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// The Rust module beside the Python server: it answers in capitals.
struct Capitals;

#[async_trait]
impl Module for Capitals {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("capitals".parse().unwrap())
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let text = turn.message.content.as_str().unwrap_or_default();
        Ok(Response::reply(text.to_uppercase()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_written_with_the_python_sdk_joins_a_hub_as_a_module() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("module.db");
    let hub = Hub::builder().sqlite(&db).build().await.unwrap();
    let module = McpModule::spawn(
        python.to_str().unwrap(),
        [script("mcp_server.py")],
        None,
        RestartPolicy::new(2),
    )
    .await
    .unwrap();
    let info = module.info();
    // Named as the server names itself; its tools are its capabilities.
    assert_eq!(info.name.as_str(), "py-tools");
    let capabilities: Vec<&str> = info.capabilities.iter().map(|c| c.as_str()).collect();
    assert_eq!(capabilities, ["word_count", "shout", "refuse", "crash"]);
    hub.register(module).await.unwrap();
    hub.register(Capitals).await.unwrap();

    let spec = ConversationSpec::new("capitals".parse().unwrap(), ["py-tools".parse().unwrap()]);
    let conversation = hub.start_conversation(spec).await.unwrap();
    let send = |target: &str, content: Value| {
        let conversation = conversation.clone();
        let target = target.parse().unwrap();
        async move {
            conversation
                .send_with(
                    target,
                    MessageKind::Request,
                    content,
                    RouteOptions::default(),
                )
                .await
        }
    };
    // Three exchanges: the Python server's tool, structured and as text, and a failing
    // tool as a failed turn with its message.
    let counted = send(
        "py-tools",
        json!({"tool": "word_count", "arguments": {"text": "one two three"}}),
    )
    .await
    .unwrap();
    let reply = counted.reply.unwrap();
    assert_eq!(reply.content["words"], 3, "{}", reply.content);
    assert_eq!(reply.turn, 2);
    let first_pid = reply.content["pid"].as_u64().unwrap();
    let shouted = send(
        "py-tools",
        json!({"tool": "shout", "arguments": {"text": "hello"}}),
    )
    .await
    .unwrap();
    assert_eq!(shouted.reply.unwrap().content, "HELLO!");
    let refused = send(
        "py-tools",
        json!({"tool": "refuse", "arguments": {"reason": "not today"}}),
    )
    .await
    .unwrap_err();
    match refused {
        HubError::Route(RouteError::HandlerFailed { message, .. }) => {
            assert!(message.contains("not today"), "{message}")
        }
        other => panic!("a tool error is a failed turn: {other:?}"),
    }
    // Not a tool call: refused by the module with the shape it takes.
    let shapeless = send("py-tools", json!("hello")).await.unwrap_err();
    assert!(
        shapeless.to_string().contains("\"tool\": NAME"),
        "{shapeless}"
    );

    // The server dies during a call: a failed turn saying so; the next turn starts it
    // again (a new process) and is answered.
    let crashed = send("py-tools", json!({"tool": "crash"}))
        .await
        .unwrap_err();
    assert!(crashed.to_string().contains("stopped"), "{crashed}");
    let again = send(
        "py-tools",
        json!({"tool": "word_count", "arguments": {"text": "back again"}}),
    )
    .await
    .unwrap()
    .reply
    .unwrap();
    assert_eq!(again.content["words"], 2);
    assert_ne!(again.content["pid"].as_u64().unwrap(), first_pid);

    let id = conversation.id();
    hub.shutdown().await;
    let reopened = Hub::builder().sqlite(&db).build().await.unwrap();
    let transcript = reopened
        .reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap();
    // Six requests; replies only to the three answered (a failed turn stores its request
    // and no reply).
    let turns: Vec<(u64, &str)> = transcript
        .iter()
        .map(|m| (m.turn, m.source.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (1, "capitals"),
            (2, "py-tools"),
            (3, "capitals"),
            (4, "py-tools"),
            (5, "capitals"),
            (6, "capitals"),
            (7, "capitals"),
            (8, "capitals"),
            (9, "py-tools")
        ],
        "{transcript:#?}"
    );
    reopened.shutdown().await;
}
