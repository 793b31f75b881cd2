//! [`McpServer`]: the hub as an MCP server; its options, its callers, and its two
//! transports (stdio for one local client, Streamable HTTP for many).

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Router,
};
use colloquy_runtime::{Hub, ModuleName};
use rmcp::{
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServiceExt,
};

use crate::{session::McpSession, McpError};

/// Settings of an [`McpServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpOptions {
    /// The participant a client speaks as over stdio, and over HTTP when no tokens are
    /// configured. Default `mcp-client`.
    pub caller: ModuleName,
    /// Bearer tokens and the participant each names. When any is set, every HTTP call must
    /// carry one (`Authorization: Bearer <token>`; 401 otherwise), and a caller sees and
    /// continues only its own participant's conversations.
    pub tokens: HashMap<String, ModuleName>,
    /// Host names (or `host:port`) HTTP clients may address the server by, beside the
    /// loopback names, which are always allowed. The `Host` check keeps a web page from
    /// reaching a server on the user's machine through DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Largest HTTP request body, in bytes (413 beyond). Default 2 MiB: a turn's content
    /// is at most the hub's 1 MiB of JSON, in an envelope.
    pub max_body_bytes: usize,
}

impl McpOptions {
    /// Callers speak as `mcp-client`, no tokens, loopback hosts only.
    pub fn new() -> Result<Self, McpError> {
        Ok(Self {
            caller: "mcp-client"
                .parse()
                .map_err(colloquy_runtime::HubError::from)?,
            tokens: HashMap::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 2 << 20,
        })
    }

    /// Clients without tokens (and the stdio client) speak as `caller`.
    pub fn caller(mut self, caller: ModuleName) -> Self {
        self.caller = caller;
        self
    }

    /// Requires bearer tokens over HTTP: a call carrying `token` speaks as `participant`.
    pub fn token(mut self, token: impl Into<String>, participant: ModuleName) -> Self {
        self.tokens.insert(token.into(), participant);
        self
    }

    /// Also accepts HTTP requests addressed to `host` (a name, or `host:port`).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// The participants clients can speak as: the stdio and anonymous caller, and one per
    /// token.
    pub fn participants(&self) -> Vec<ModuleName> {
        let mut all: Vec<ModuleName> = self.tokens.values().cloned().collect();
        all.push(self.caller.clone());
        all.sort();
        all.dedup();
        all
    }
}

/// A hub served as an MCP server. Create it once per hub; serve it over stdio
/// ([`serve_stdio`](Self::serve_stdio)) or mount its HTTP routes
/// ([`router`](Self::router)).
#[derive(Debug)]
pub struct McpServer {
    pub(crate) hub: Hub,
    options: McpOptions,
}

/// The participant an HTTP call speaks as, put in the request's extensions by the token
/// check and read by the session.
#[derive(Debug, Clone)]
pub(crate) struct CallerOf(pub(crate) ModuleName);

impl McpServer {
    /// A server for `hub`. Registers the caller participants in the hub.
    ///
    /// Errors: [`McpError::CallerIsModule`] when a caller participant has the name of a
    /// module of the hub.
    pub async fn new(hub: Hub, options: McpOptions) -> Result<Arc<Self>, McpError> {
        let callers = options.participants();
        hub.register_callers(&callers, "MCP clients of this hub (LLM applications)")
            .await?;
        Ok(Arc::new(Self { hub, options }))
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The options it was made with.
    pub fn options(&self) -> &McpOptions {
        &self.options
    }

    /// Whether `participant` is one of this server's callers.
    pub(crate) fn is_caller(&self, participant: &ModuleName) -> bool {
        participant == &self.options.caller
            || self.options.tokens.values().any(|p| p == participant)
    }

    /// A session speaking as the stdio caller ([`McpOptions::caller`]), for any transport
    /// `rmcp` offers.
    pub fn session(self: &Arc<Self>) -> McpSession {
        McpSession::new(Arc::clone(self), Some(self.options.caller.clone()))
    }

    /// A session speaking as `caller`, one of this server's callers (the stdio caller or a
    /// token's participant), for an application that serves several local clients over
    /// transports of its own. Errors: [`McpError::UnknownCaller`] for any other name.
    pub fn session_as(self: &Arc<Self>, caller: ModuleName) -> Result<McpSession, McpError> {
        if !self.is_caller(&caller) {
            return Err(McpError::UnknownCaller {
                participant: caller,
            });
        }
        Ok(McpSession::new(Arc::clone(self), Some(caller)))
    }

    /// Speaks MCP on the process's standard input and output, as [`McpOptions::caller`],
    /// until the client closes them.
    pub async fn serve_stdio(self: &Arc<Self>) -> Result<(), McpError> {
        let session_error = |e: &dyn std::fmt::Display| McpError::Session {
            peer: "stdio".into(),
            detail: e.to_string(),
        };
        let running = self
            .session()
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| session_error(&e))?;
        running.waiting().await.map_err(|e| session_error(&e))?;
        Ok(())
    }

    /// The Streamable HTTP endpoint at `/mcp` (POST, GET for the event stream, DELETE to
    /// end a session), behind the token check, for mounting in a larger axum application.
    /// `shutdown` ends every session when cancelled.
    pub fn router(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) -> Router {
        // Stateless, answered in JSON: each call stands alone (its token names its caller),
        // which is what protocol 2026-07-28 asks for, and what made `send` 0.55x -> 0.85x
        // of A2A's SendMessage in `colloquy load --via mcp` (benches/README.md). Live
        // updates over HTTP use `subscriptions/listen`.
        let mut config = StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown)
            .with_max_request_body_bytes(self.options.max_body_bytes)
            .with_legacy_session_mode(false)
            .with_json_response(true);
        // The SDK's loopback names, and the operator's.
        config
            .allowed_hosts
            .extend(self.options.allowed_hosts.iter().cloned());
        let server = Arc::clone(self);
        let service = StreamableHttpService::new(
            move || Ok(McpSession::new(Arc::clone(&server), None)),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Router::new()
            .route_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                require_token,
            ))
    }

    /// The participant an HTTP call speaks as: the one its bearer token names, or the
    /// default caller when no tokens are configured. `None`: refused.
    fn caller_of(&self, authorization: Option<&str>) -> Option<ModuleName> {
        if self.options.tokens.is_empty() {
            return Some(self.options.caller.clone());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.options.tokens.get(token).cloned()
    }
}

/// Refuses an HTTP call without a known bearer token (401, nothing else runs), and tells
/// the session which participant the call speaks as.
async fn require_token(
    State(server): State<Arc<McpServer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match server.caller_of(authorization) {
        Some(caller) => {
            request.extensions_mut().insert(CallerOf(caller));
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token this server knows is required (Authorization: Bearer <token>)",
        )
            .into_response(),
    }
}
