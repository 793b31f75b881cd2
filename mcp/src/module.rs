//! [`McpModule`]: an MCP server as a module. Its tools are the module's capabilities; a
//! turn `{"tool": NAME, "arguments": {...}}` calls one, and the tool's result is the reply.

use std::sync::atomic::{AtomicU32, Ordering};

use colloquy_runtime::{
    async_trait, Capability, ModuleError, ModuleInfo, ModuleName, Response, Turn,
};
use rmcp::{
    model::{CallToolRequestParams, CallToolResult, Tool},
    service::{RunningService, ServiceExt},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
        TokioChildProcess,
    },
    Peer, RoleClient,
};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::McpError;

/// How a child-process MCP server that died is started again: on the next turn after its
/// death, at most `max_restarts` times in a row without a tool call answered in between.
/// The turn during which it died fails with that reason; tool calls are not repeated,
/// since a tool may have acted before the server died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Restarts in a row before the module gives up (every later turn fails saying so).
    /// Default 5; 0 never restarts.
    pub max_restarts: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { max_restarts: 5 }
    }
}

impl RestartPolicy {
    /// At most `max_restarts` restarts in a row.
    pub fn new(max_restarts: u32) -> Self {
        Self { max_restarts }
    }
}

/// Where the server runs.
#[derive(Debug, Clone)]
enum Source {
    /// A child process speaking MCP on its standard input and output.
    Command { program: String, args: Vec<String> },
    /// A Streamable HTTP endpoint, with an optional bearer token.
    Url { url: String, token: Option<String> },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Command { program, args } => {
                f.write_str(program)?;
                args.iter().try_for_each(|a| write!(f, " {a}"))
            }
            Self::Url { url, .. } => f.write_str(url),
        }
    }
}

type Client = RunningService<RoleClient, ()>;

/// An MCP server as a module.
///
/// ```no_run
/// # async fn run(hub: colloquy_runtime::Hub) -> Result<(), Box<dyn std::error::Error>> {
/// use colloquy_mcp::{McpModule, RestartPolicy};
/// let files = McpModule::spawn("python3", ["files_server.py"], None, RestartPolicy::default()).await?;
/// hub.register(files).await?;
/// // A turn {"tool": "read", "arguments": {"path": "notes.txt"}} now calls the server's tool.
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct McpModule {
    info: ModuleInfo,
    source: Source,
    policy: RestartPolicy,
    /// The session with the server and its generation (how many were started before it);
    /// `None` once it died (started again on the next turn).
    client: Mutex<Option<(u32, Client)>>,
    /// Restarts since the last tool call answered.
    restarts: AtomicU32,
}

impl McpModule {
    /// Starts `program args` as a child process speaking MCP over stdio, and makes it a
    /// module named `name` (default: the name the server gives itself, made a valid
    /// module name). The server's standard error is the hub's.
    pub async fn spawn(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
        name: Option<ModuleName>,
        policy: RestartPolicy,
    ) -> Result<Self, McpError> {
        let source = Source::Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        };
        Self::start(source, name, policy).await
    }

    /// Connects to the MCP server at `url` (Streamable HTTP; `token`, when given, is sent
    /// as a bearer token) and makes it a module named `name` (default: the server's name).
    /// A server that cannot be reached later fails the turn; the next turn connects again.
    pub async fn connect(
        url: impl Into<String>,
        token: Option<String>,
        name: Option<ModuleName>,
    ) -> Result<Self, McpError> {
        let source = Source::Url {
            url: url.into(),
            token,
        };
        Self::start(source, name, RestartPolicy::new(u32::MAX)).await
    }

    async fn start(
        source: Source,
        name: Option<ModuleName>,
        policy: RestartPolicy,
    ) -> Result<Self, McpError> {
        let client = open(&source).await?;
        let peer_name = source.to_string();
        let session_error = |e: &dyn std::fmt::Display| McpError::Session {
            peer: peer_name.clone(),
            detail: e.to_string(),
        };
        let tools = client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| session_error(&e))?;
        if tools.is_empty() {
            return Err(McpError::NoTools { peer: peer_name });
        }
        let server = client.peer().peer_info();
        let name = match name {
            Some(name) => name,
            None => {
                let given = server
                    .as_ref()
                    .and_then(|info| info.server_info.as_ref())
                    .map(|implementation| implementation.name.clone())
                    .unwrap_or_else(|| "mcp-server".into());
                let cleaned: String = given
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                cleaned
                    .parse()
                    .map_err(|e: colloquy_runtime::CoreError| McpError::BadName {
                        name: given,
                        peer: peer_name.clone(),
                        detail: e.to_string(),
                    })?
            }
        };
        let description = server
            .as_ref()
            .and_then(|info| info.instructions.clone())
            .unwrap_or_else(|| {
                format!(
                    "MCP server {peer_name}: tools {}",
                    tools
                        .iter()
                        .map(|t| t.name.as_ref())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        let mut info = ModuleInfo::new(name).with_description(description);
        info.capabilities = tools
            .iter()
            .filter_map(|t| t.name.parse::<Capability>().ok())
            .collect();
        info.input_schema = input_schema(&tools);
        Ok(Self {
            info,
            source,
            policy,
            client: Mutex::new(Some((0, client))),
            restarts: AtomicU32::new(0),
        })
    }

    /// The live session's generation and peer, starting the server again if it died and
    /// the policy allows.
    async fn peer(&self) -> Result<(u32, Peer<RoleClient>), ModuleError> {
        let mut client = self.client.lock().await;
        let generation = client.as_ref().map_or(0, |(g, _)| *g);
        if let Some((generation, live)) = client
            .as_ref()
            .filter(|(_, c)| !c.is_closed() && !c.peer().is_transport_closed())
        {
            return Ok((*generation, live.peer().clone()));
        }
        let restarts = self.restarts.load(Ordering::Relaxed);
        if restarts >= self.policy.max_restarts {
            return Err(ModuleError::new(format!(
                "the MCP server {} stopped and was restarted {restarts} times in a row without answering; restart the hub's module after fixing it",
                self.source
            )));
        }
        self.restarts
            .store(restarts.saturating_add(1), Ordering::Relaxed);
        tracing::warn!(server = %self.source, restart = restarts + 1, "starting the MCP server again");
        let started = open(&self.source)
            .await
            .map_err(|e| ModuleError::new(e.to_string()))?;
        let peer = started.peer().clone();
        let generation = generation.saturating_add(1);
        *client = Some((generation, started));
        Ok((generation, peer))
    }

    /// The session of `generation` died: the next turn starts the server again (unless a
    /// later session already replaced it).
    async fn died(&self, generation: u32) {
        let mut client = self.client.lock().await;
        if client.as_ref().is_some_and(|(g, _)| *g == generation) {
            *client = None;
        }
    }
}

/// Starts or connects to the server and runs the MCP handshake.
async fn open(source: &Source) -> Result<Client, McpError> {
    let session_error = |e: &dyn std::fmt::Display| McpError::Session {
        peer: source.to_string(),
        detail: e.to_string(),
    };
    match source {
        Source::Command { program, args } => {
            let mut command = tokio::process::Command::new(program);
            command.args(args);
            let transport = TokioChildProcess::new(command).map_err(|e| McpError::Spawn {
                command: source.to_string(),
                detail: e.to_string(),
            })?;
            ().serve(transport).await.map_err(|e| session_error(&e))
        }
        Source::Url { url, token } => {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            config.auth_header = token.clone();
            let transport = StreamableHttpClientTransport::from_config(config);
            ().serve(transport).await.map_err(|e| session_error(&e))
        }
    }
}

/// What a turn must look like: one of the tools, with its own arguments' schema.
fn input_schema(tools: &[Tool]) -> Value {
    let choices: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "tool": {"const": t.name},
                    "arguments": Value::Object((*t.input_schema).clone()),
                },
                "required": ["tool"],
                "description": t.description,
            })
        })
        .collect();
    json!({ "oneOf": choices })
}

/// A turn's tool call, or why it is not one.
fn tool_call(content: &Value, tools: &[Capability]) -> Result<CallToolRequestParams, ModuleError> {
    let names = || {
        tools
            .iter()
            .map(Capability::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let shape = || {
        ModuleError::new(format!(
            "a turn for an MCP server is {{\"tool\": NAME, \"arguments\": {{...}}}}; its tools are {}",
            names()
        ))
    };
    let object = content.as_object().ok_or_else(shape)?;
    let tool = object
        .get("tool")
        .and_then(Value::as_str)
        .ok_or_else(shape)?;
    let arguments = match object.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(arguments)) => Some(arguments.clone()),
        Some(_) => return Err(shape()),
    };
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = arguments;
    Ok(params)
}

/// A tool's result as the reply: its structured content when it has one, the text of a
/// single text block, or the blocks as JSON. A tool error is a failed turn with the tool's
/// message.
fn reply(result: CallToolResult) -> Result<Response, ModuleError> {
    let text = || {
        result
            .content
            .iter()
            .filter_map(|block| block.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if result.is_error == Some(true) {
        let message = text();
        return Err(ModuleError::new(if message.is_empty() {
            "the tool reported an error without a message".to_owned()
        } else {
            message
        }));
    }
    let value = match (&result.structured_content, result.content.as_slice()) {
        (Some(structured), _) => structured.clone(),
        (None, [single]) if single.as_text().is_some() => Value::String(text()),
        (None, blocks) => serde_json::to_value(blocks)
            .unwrap_or_else(|e| Value::String(format!("unreadable tool result: {e}"))),
    };
    Ok(Response::reply(value))
}

#[async_trait]
impl colloquy_runtime::Module for McpModule {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let params = tool_call(&turn.message.content, &self.info.capabilities)?;
        let (generation, peer) = self.peer().await?;
        // Dropped at the hub's deadline, the call tells the server it is cancelled.
        match peer.call_tool(params).await {
            Ok(result) => {
                self.restarts.store(0, Ordering::Relaxed);
                reply(result)
            }
            Err(e @ rmcp::ServiceError::TransportClosed) => {
                self.died(generation).await;
                Err(ModuleError::new(format!(
                    "the MCP server {} stopped during the call ({e}); it is started again for the next turn",
                    self.source
                )))
            }
            Err(e) => Err(ModuleError::new(format!(
                "the MCP server {} did not answer the call: {e}",
                self.source
            ))),
        }
    }
}
