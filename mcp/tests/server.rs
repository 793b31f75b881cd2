//! The MCP server in process, driven by the official Rust SDK's client over an in-memory
//! pipe: what a caller can see, what a refused call stores, a cancelled send, a subscribed
//! transcript. (The official Python SDK against the binary: cli/tests/mcp_interop.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use colloquy_mcp::{McpOptions, McpServer, McpSession};
use colloquy_runtime::{
    async_trait, ConversationId, Hub, MessageRange, Module, ModuleError, ModuleInfo, ModuleName,
    Response, Turn,
};
use colloquy_testkit::{
    eventually,
    modules::{Echo, Failing},
};
use rmcp::{
    model::{
        CallToolRequest, CallToolRequestParams, ClientRequest, ReadResourceRequestParams,
        ResourceUpdatedNotificationParam, SubscribeRequestParams,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService, ServiceExt},
    ClientHandler, RoleClient, ServerHandler,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn name(text: &str) -> ModuleName {
    text.parse().unwrap()
}

/// A memory hub with `echo` and `broken`, served with two callers: `desk` (the default)
/// and `other` (by token).
async fn served() -> (Hub, Arc<McpServer>) {
    let hub = Hub::builder().memory().build().await.unwrap();
    hub.register(Echo::new(name("echo"))).await.unwrap();
    hub.register(Failing::new(name("broken"), "the disk is full"))
        .await
        .unwrap();
    let options = McpOptions::new()
        .unwrap()
        .caller(name("desk"))
        .token("t-other", name("other"));
    let server = McpServer::new(hub.clone(), options).await.unwrap();
    (hub, server)
}

/// Connects a client (with `handler`) to `session` over an in-memory pipe.
async fn connect<H: ClientHandler>(
    session: McpSession,
    handler: H,
) -> RunningService<RoleClient, H> {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let running = session.serve(server_end).await.unwrap();
        let _ = running.waiting().await;
    });
    handler.serve(client_end).await.unwrap()
}

/// Calls `tool`: `Ok(structured result)` or `Err(the message of an isError result)`.
async fn call<H: ClientHandler>(
    client: &RunningService<RoleClient, H>,
    tool: &str,
    arguments: Value,
) -> Result<Value, String> {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    let result = client
        .peer()
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap();
    if result.is_error == Some(true) {
        Err(result.content[0].as_text().unwrap().text.clone())
    } else {
        Ok(result.structured_content.unwrap())
    }
}

async fn stored_turns(hub: &Hub, id: &str) -> Vec<(u64, String)> {
    let id: ConversationId = id.parse().unwrap();
    hub.reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.turn, m.source.to_string()))
        .collect()
}

#[tokio::test]
async fn refused_calls_are_tool_errors_and_store_nothing_of_their_own() {
    let (hub, server) = served().await;
    let client = connect(server.session(), ()).await;
    assert!(server.session().get_info().capabilities.tools.is_some());

    let started = call(&client, "start_conversation", json!({"with": ["echo"]}))
        .await
        .unwrap();
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(started["participants"], json!(["desk", "echo"]));

    // Bad arguments: refused before anything is stored.
    let missing = call(&client, "send", json!({"conversation_id": id})).await;
    assert!(missing.unwrap_err().contains("missing field `content`"));
    let unknown = call(
        &client,
        "send",
        json!({"conversation_id": id, "content": 1, "colour": "red"}),
    )
    .await;
    assert!(unknown.unwrap_err().contains("unknown field `colour`"));
    let zero = call(
        &client,
        "send",
        json!({"conversation_id": id, "content": 1, "timeout_seconds": 0}),
    )
    .await;
    assert!(zero.unwrap_err().contains("positive number of seconds"));
    assert_eq!(stored_turns(&hub, &id).await, []);

    // Answered: turns 1 and 2.
    let sent = call(
        &client,
        "send",
        json!({"conversation_id": id, "content": {"n": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(
        (sent["request_turn"].as_u64(), sent["reply_turn"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(sent["reply"], json!({"n": 1}));
    assert_eq!(
        stored_turns(&hub, &id).await,
        [(1, "desk".into()), (2, "echo".into())]
    );

    // A module that fails: an error with its message; the request is stored, no reply.
    let with_broken = call(&client, "start_conversation", json!({"with": ["broken"]}))
        .await
        .unwrap();
    let broken_id = with_broken["conversation_id"].as_str().unwrap().to_owned();
    let failed = call(
        &client,
        "send",
        json!({"conversation_id": broken_id, "content": "go"}),
    )
    .await;
    assert!(failed.unwrap_err().contains("the disk is full"));
    assert_eq!(stored_turns(&hub, &broken_id).await, [(1, "desk".into())]);

    // An unknown tool is the protocol's error, not a result.
    let no_such = client
        .peer()
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(no_such.is_err());
    hub.shutdown().await;
}

#[tokio::test]
async fn start_conversation_with_content_sends_the_first_message_in_the_same_call() {
    let (hub, server) = served().await;
    let client = connect(server.session(), ()).await;

    let started = call(
        &client,
        "start_conversation",
        json!({"with": ["echo"], "content": {"hello": 1}}),
    )
    .await
    .unwrap();
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    let first = &started["first_exchange"];
    assert_eq!(
        (first["request_turn"].as_u64(), first["reply_turn"].as_u64()),
        (Some(1), Some(2)),
        "{started}"
    );
    assert_eq!(first["reply"], json!({"hello": 1}));
    assert_eq!(first["from"], "echo");
    assert_eq!(
        stored_turns(&hub, &id).await,
        [(1, "desk".into()), (2, "echo".into())]
    );
    // Three writes: created, the handshake's outcome with the request, the reply.
    let stored = hub
        .reader()
        .conversation(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version(), 2);
    // Without content, as before: no first exchange.
    let plain = call(&client, "start_conversation", json!({"with": ["echo"]}))
        .await
        .unwrap();
    assert_eq!(plain["first_exchange"], Value::Null);

    // Whom the first message is for must be clear before anything is opened.
    let before = hub.reader().count_by_status().await.unwrap();
    let unclear = call(
        &client,
        "start_conversation",
        json!({"with": ["echo", "broken"], "content": "hi"}),
    )
    .await;
    assert!(unclear.unwrap_err().contains("with `to`"));
    let stray = call(
        &client,
        "start_conversation",
        json!({"with": ["echo"], "to": "echo"}),
    )
    .await;
    assert!(stray.unwrap_err().contains("give its content too"));
    assert_eq!(hub.reader().count_by_status().await.unwrap(), before);

    // A first message that fails: the error names the conversation, which is opened and
    // holds the stored request.
    let failed = call(
        &client,
        "start_conversation",
        json!({"with": ["echo", "broken"], "to": "broken", "content": "go"}),
    )
    .await
    .unwrap_err();
    assert!(failed.contains("the disk is full"), "{failed}");
    let opened = failed
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .to_owned();
    assert_eq!(stored_turns(&hub, &opened).await, [(1, "desk".into())]);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_caller_never_sees_another_callers_conversations() {
    let (hub, server) = served().await;
    let desk = connect(server.session(), ()).await;
    let other = connect(server.session_as(name("other")).unwrap(), ()).await;
    assert!(
        server.session_as(name("echo")).is_err(),
        "a module is not a caller"
    );

    let started = call(&desk, "start_conversation", json!({"with": ["echo"]}))
        .await
        .unwrap();
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    call(
        &desk,
        "send",
        json!({"conversation_id": id, "content": "private"}),
    )
    .await
    .unwrap();

    let found = call(&other, "find_conversations", json!({})).await.unwrap();
    assert_eq!(found["conversations"], json!([]));
    for tool in ["history", "end_conversation"] {
        let refused = call(&other, tool, json!({"conversation_id": id}))
            .await
            .unwrap_err();
        assert!(
            refused.contains("not found among yours"),
            "{tool}: {refused}"
        );
    }
    let uri = format!("colloquy://conversations/{id}");
    let read = other
        .peer()
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await;
    assert!(read.is_err(), "another caller's transcript is not readable");
    let listed = other.peer().list_all_resources().await.unwrap();
    assert!(listed.iter().all(|r| r.uri != uri));

    // Its owner reads it, and the conversation is untouched.
    let mine = desk
        .peer()
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap();
    let text = match &mine.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    let transcript: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(transcript["messages"].as_array().unwrap().len(), 2);
    assert_eq!(transcript["conversation"]["status"]["status"], "active");
    hub.shutdown().await;
}

/// Never answers; records that its call was dropped.
struct Stuck(Arc<AtomicBool>);

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Module for Stuck {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("stuck"))
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        let _flag = DropFlag(Arc::clone(&self.0));
        std::future::pending::<()>().await;
        Err(ModuleError::new("unreachable"))
    }
}

#[tokio::test]
async fn a_send_the_client_cancels_stops_the_module_and_ends_the_turn() {
    let (hub, server) = served().await;
    let stopped = Arc::new(AtomicBool::new(false));
    hub.register(Stuck(Arc::clone(&stopped))).await.unwrap();
    let client = connect(server.session(), ()).await;
    let started = call(&client, "start_conversation", json!({"with": ["stuck"]}))
        .await
        .unwrap();
    let id = started["conversation_id"].as_str().unwrap().to_owned();

    let Value::Object(arguments) = json!({"conversation_id": id, "content": "wait"}) else {
        unreachable!()
    };
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("send").with_arguments(arguments),
    ));
    let handle = client
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    // The request is stored before the module is called.
    let conversation: ConversationId = id.parse().unwrap();
    let reader = hub.reader();
    assert!(
        eventually(
            || async { stored_turns(&hub, &id).await.len() == 1 },
            Duration::from_secs(10)
        )
        .await
    );
    handle
        .cancel(Some("the user changed their mind".into()))
        .await
        .unwrap();
    assert!(
        eventually(
            || async { stopped.load(Ordering::SeqCst) },
            Duration::from_secs(10)
        )
        .await,
        "the module's call was dropped"
    );
    // The turn ended without a reply: the conversation takes the next one.
    assert!(
        eventually(
            || async {
                reader
                    .conversation(conversation)
                    .await
                    .unwrap()
                    .is_some_and(|c| c.busy_until().is_none())
            },
            Duration::from_secs(10)
        )
        .await
    );
    assert_eq!(stored_turns(&hub, &id).await, [(1, "desk".into())]);
    hub.shutdown().await;
}

/// Hands each announced resource URI to the test.
struct Updates(mpsc::UnboundedSender<String>);

impl ClientHandler for Updates {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }
}

#[tokio::test]
#[allow(deprecated)]
async fn a_subscribed_transcript_is_announced_at_each_new_turn() {
    let (hub, server) = served().await;
    let (updates, mut announced) = mpsc::unbounded_channel();
    let client = connect(server.session(), Updates(updates)).await;
    let started = call(&client, "start_conversation", json!({"with": ["echo"]}))
        .await
        .unwrap();
    let id = started["conversation_id"].as_str().unwrap().to_owned();
    let uri = format!("colloquy://conversations/{id}");
    client
        .peer()
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    call(
        &client,
        "send",
        json!({"conversation_id": id, "content": "hi"}),
    )
    .await
    .unwrap();
    let heard = tokio::time::timeout(
        colloquy_testkit::scaled(Duration::from_secs(10)),
        announced.recv(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(heard, uri);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_over_streamable_http_joins_another_hub_as_a_module() {
    // The server: this crate's own, at /mcp of a hub with an echo module, over real HTTP.
    let (served_hub, server) = served().await;
    let streams = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let router = server.router(streams.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });

    // The module, in a second hub: its capabilities are the server's tools.
    let hub = Hub::builder().memory().build().await.unwrap();
    let module =
        colloquy_mcp::McpModule::connect(&url, Some("t-other".into()), Some(name("remote-hub")))
            .await
            .unwrap();
    let info = module.info();
    assert_eq!(info.name.as_str(), "remote-hub");
    assert!(info.capabilities.iter().any(|c| c.as_str() == "send"));
    hub.register(module).await.unwrap();
    hub.register(Echo::new(name("driver"))).await.unwrap();
    let conversation = hub
        .start_conversation(
            colloquy_runtime::ConversationSpec::between("driver", "remote-hub").unwrap(),
        )
        .await
        .unwrap();

    // A turn calls a tool of the server; its structured result is the reply.
    let listed = conversation
        .send(json!({"tool": "list_modules", "arguments": {"capability": "echo"}}))
        .await
        .unwrap()
        .reply
        .unwrap();
    assert_eq!(
        listed.content["modules"][0]["name"], "echo",
        "{}",
        listed.content
    );
    // A tool's refusal is a failed turn with its message.
    let refused = conversation
        .send(json!({"tool": "history", "arguments": {"conversation_id": "nope"}}))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not found among yours"),
        "{refused}"
    );
    assert_eq!(
        conversation.transcript().await.unwrap().len(),
        3,
        "request, reply, and the refused request"
    );

    streams.cancel();
    serving.abort();
    hub.shutdown().await;
    served_hub.shutdown().await;
}
