//! [`A2aServer`]: the hub's modules as A2A agents over HTTP (JSON-RPC 2.0): its options,
//! cards and callers here; `send.rs` (`SendMessage`), `tasks.rs` (`GetTask`, `CancelTask`),
//! `stream.rs` (the streaming methods) and `routes.rs` (the HTTP routes, the token check,
//! `/healthz`, `/metrics`).

use std::{collections::HashMap, convert::Infallible, sync::Arc};

use a2a::{
    error_code, AgentCapabilities, AgentCard, AgentInterface, AgentSkill, CancelTaskRequest,
    GetTaskRequest, SendMessageRequest, SendMessageResponse, StreamResponse,
    SubscribeToTaskRequest, Task, TaskArtifactUpdateEvent, TaskState, TaskStatus,
};
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{
        sse::{Event, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Extension, Json, Router,
};
use colloquy_runtime::{
    ConversationHandle, ConversationId, ConversationSpec, CoreError, Hub, HubError, MessageKind,
    MessageRange, ModuleInfo, ModuleName, RouteError, RouteOptions,
};
use serde_json::{json, value::RawValue, Value};
use tokio::sync::{broadcast, oneshot};

use crate::{
    flight::{is_last, status_update, Flight, Flights, Remembered},
    legacy,
    mapping::{content_from_parts, task, Outcome, TaskRef},
    ops::{error_kind, health_json, Limits, Metrics},
    A2aError,
};

mod routes;
mod send;
mod stream;
mod tasks;

use routes::*;
use send::*;
use stream::*;

/// How many answered `messageId`s are remembered for retries (the oldest go first).
const REMEMBERED: usize = 10_000;

/// Settings of an [`A2aServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct A2aOptions {
    /// The address clients reach the server at, for the URLs in agent cards
    /// (e.g. `http://127.0.0.1:8080`).
    pub base_url: String,
    /// The participant A2A callers speak as when no tokens are configured. Default
    /// `a2a-client`.
    pub caller: ModuleName,
    /// Bearer tokens and the participant each names. When any is set, every call must
    /// carry one (`Authorization: Bearer <token>`), and a caller sees and continues only
    /// the conversations of its own participant.
    pub tokens: HashMap<String, ModuleName>,
    /// Limits on every call (body size, deadline, calls at once).
    pub limits: Limits,
}

impl A2aOptions {
    /// Cards name `base_url`; callers speak as `a2a-client`.
    pub fn new(base_url: impl Into<String>) -> Result<Self, A2aError> {
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            caller: "a2a-client".parse().map_err(HubError::from)?,
            tokens: HashMap::new(),
            limits: Limits::default(),
        })
    }

    /// Holds every call to `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Callers without tokens speak as `caller`.
    pub fn caller(mut self, caller: ModuleName) -> Self {
        self.caller = caller;
        self
    }

    /// Requires bearer tokens: a call carrying `token` speaks as `participant`.
    pub fn token(mut self, token: impl Into<String>, participant: ModuleName) -> Self {
        self.tokens.insert(token.into(), participant);
        self
    }

    /// The participants callers can speak as: one per token, or the anonymous caller.
    pub fn participants(&self) -> Vec<ModuleName> {
        if self.tokens.is_empty() {
            vec![self.caller.clone()]
        } else {
            let mut all: Vec<ModuleName> = self.tokens.values().cloned().collect();
            all.sort();
            all.dedup();
            all
        }
    }
}

/// The hub's modules as A2A agents: `GET /agents/{module}/.well-known/agent-card.json` is a
/// module's card, `POST /agents/{module}` its JSON-RPC endpoint.
///
/// ```no_run
/// # async fn run(hub: colloquy_runtime::Hub) -> Result<(), colloquy_a2a::A2aError> {
/// use colloquy_a2a::{A2aOptions, A2aServer};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.map_err(colloquy_a2a::A2aError::io)?;
/// let server = A2aServer::new(hub, A2aOptions::new("http://127.0.0.1:8080")?).await?;
/// server.serve(listener).await
/// # }
/// ```
#[derive(Debug)]
pub struct A2aServer {
    hub: Hub,
    options: A2aOptions,
    /// Results already sent, by (caller, module, client `messageId`): a retried message
    /// gets the same answer and makes no new turn.
    answered: Remembered<AnswerKey, Raw>,
    /// Recent tasks that ended failed or canceled, by task id, with their caller and module
    /// (the store keeps the request, not why no reply followed).
    unanswered: Remembered<String, (ModuleName, ModuleName, Task)>,
    flights: Arc<Flights>,
    metrics: Metrics,
    /// The caller participants (`A2aOptions::participants`), computed once: they are not
    /// agents, and every call asks.
    callers: Vec<ModuleName>,
}

type AnswerKey = (ModuleName, ModuleName, String);

/// A JSON-RPC error: code and message.
#[derive(Debug)]
struct RpcError {
    code: i32,
    message: String,
}

impl RpcError {
    fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> Self {
        Self::new(error_code::TASK_NOT_FOUND, format!("{what} not found"))
    }
}

impl A2aServer {
    /// A server for `hub`'s modules. Registers the caller participants in the hub.
    ///
    /// Errors: [`A2aError::CallerIsModule`] when a caller participant has the name of a
    /// module of the hub.
    pub async fn new(hub: Hub, options: A2aOptions) -> Result<Arc<Self>, A2aError> {
        let callers = options.participants();
        hub.register_callers(&callers, "A2A callers of this hub's network front")
            .await?;
        let metrics = Metrics::new();
        // The hub's own series (every exchange, handler times, store errors) are recorded
        // into this server's registry too.
        hub.observe(Arc::new(metrics.clone()));
        Ok(Arc::new(Self {
            hub,
            options,
            answered: Remembered::new(REMEMBERED),
            unanswered: Remembered::new(REMEMBERED),
            flights: Arc::default(),
            metrics,
            callers,
        }))
    }

    /// The routes, for mounting in a larger axum application: the agents, `GET /healthz`
    /// and `GET /metrics`, held to the [`Limits`] of the options.
    pub fn router(self: &Arc<Self>) -> Router {
        let limits = self.options.limits;
        let server = Arc::clone(self);
        let overloaded = move |_: tower::BoxError| {
            server.metrics.error("overloaded");
            std::future::ready((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} calls are in progress, the most this server takes at once; retry shortly",
                    limits.max_in_flight
                ),
            ))
        };
        Router::new()
            .route("/agents/{module}/.well-known/agent-card.json", get(card))
            .route(
                "/agents/{module}",
                post(rpc).route_layer(axum::middleware::from_fn_with_state(
                    Arc::clone(self),
                    require_token,
                )),
            )
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(self))
            .layer(
                tower::ServiceBuilder::new()
                    .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                    .load_shed()
                    .concurrency_limit(limits.max_in_flight),
            )
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.call_timeout,
            ))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                limits.max_body_bytes,
            ))
    }

    /// Serves on `listener` until the process ends (see [`serve_until`](crate::serve_until)
    /// for a server that stops, and the header timeout every connection is held to).
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<(), A2aError> {
        let header_timeout = self.options.limits.header_timeout;
        crate::serve_until(
            listener,
            self.router(),
            header_timeout,
            std::future::pending(),
        )
        .await
    }

    /// The module `name` if it is registered and is not a caller participant.
    fn module(&self, name: &str) -> Option<Arc<ModuleInfo>> {
        let name: ModuleName = name.parse().ok()?;
        if self.callers.contains(&name) {
            return None;
        }
        self.hub
            .reachable_modules()
            .into_iter()
            .find(|info| info.name == name)
    }

    fn card(&self, info: &ModuleInfo) -> AgentCard {
        let skills = if info.capabilities.is_empty() {
            vec![skill(info.name.as_str(), &info.description)]
        } else {
            info.capabilities
                .iter()
                .map(|capability| skill(capability.as_str(), &info.description))
                .collect()
        };
        AgentCard {
            name: info.name.to_string(),
            description: info.description.clone(),
            version: if info.version.is_empty() {
                env!("CARGO_PKG_VERSION").to_owned()
            } else {
                info.version.clone()
            },
            supported_interfaces: vec![AgentInterface::new(
                format!("{}/agents/{}", self.options.base_url, info.name),
                a2a::TRANSPORT_PROTOCOL_JSONRPC,
            )],
            capabilities: AgentCapabilities {
                streaming: Some(true),
                push_notifications: Some(false),
                extensions: None,
                extended_agent_card: None,
            },
            default_input_modes: vec!["text/plain".into(), "application/json".into()],
            default_output_modes: vec!["text/plain".into(), "application/json".into()],
            skills,
            provider: None,
            documentation_url: None,
            icon_url: None,
            security_schemes: (!self.options.tokens.is_empty()).then(|| {
                HashMap::from([(
                    "bearer".to_owned(),
                    a2a::SecurityScheme::HttpAuth(a2a::HttpAuthSecurityScheme {
                        scheme: "Bearer".into(),
                        description: Some(
                            "a token naming the participant the caller speaks as".into(),
                        ),
                        bearer_format: None,
                    }),
                )])
            }),
            security_requirements: (!self.options.tokens.is_empty())
                .then(|| vec![HashMap::from([("bearer".to_owned(), Vec::new())])]),
            signatures: None,
        }
    }

    /// The participant a call speaks as: the one its bearer token names, or the default
    /// caller when no tokens are configured. `None`: refused.
    fn caller_of(&self, authorization: Option<&str>) -> Option<ModuleName> {
        if self.options.tokens.is_empty() {
            return Some(self.options.caller.clone());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.options.tokens.get(token).cloned()
    }
}

/// A result serialized once: kept for retries and written into each answer as it is.
type Raw = Arc<RawValue>;

fn to_raw<T: serde::Serialize>(value: &T) -> Result<Raw, RpcError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from)
        .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))
}

/// The members A2A requires of a message that its JSON shape alone does not enforce:
/// a message id, a role, at least one part. A message without them is refused before
/// anything is stored.
fn check_message(message: &a2a::Message) -> Result<(), RpcError> {
    let refuse = |what: &str| Err(RpcError::new(error_code::INVALID_PARAMS, what));
    if message.message_id.trim().is_empty() {
        return refuse("message.messageId must not be empty: it identifies the message, and a retry with the same id is recognised");
    }
    if message.parts.is_empty() {
        return refuse("message.parts must hold at least one part (text, data, file or url)");
    }
    if message.role == a2a::Role::Unspecified {
        return refuse("message.role must be ROLE_USER or ROLE_AGENT");
    }
    Ok(())
}

/// The params of `method`, or `InvalidParams` saying what is wrong with them.
fn parse_params<T: serde::de::DeserializeOwned>(
    params: &RawValue,
    method: &str,
) -> Result<T, RpcError> {
    serde_json::from_str(params.get()).map_err(|e| {
        RpcError::new(
            error_code::INVALID_PARAMS,
            format!("bad {method} params: {e}"),
        )
    })
}

fn skill(id: &str, description: &str) -> AgentSkill {
    AgentSkill {
        id: id.to_owned(),
        name: id.to_owned(),
        description: description.to_owned(),
        tags: vec![id.to_owned()],
        examples: None,
        input_modes: None,
        output_modes: None,
        security_requirements: None,
    }
}

/// A hub error as a JSON-RPC error: the conversation model's refusals are the caller's
/// mistake (invalid params, or an operation the conversation no longer takes), a missing
/// conversation is "not found", anything else an internal error.
fn hub_error(e: HubError) -> RpcError {
    match e {
        HubError::Refused(
            refusal @ (CoreError::ContentTooLarge { .. } | CoreError::ContentTooDeep { .. }),
        ) => RpcError::new(error_code::INVALID_PARAMS, refusal.to_string()),
        HubError::Refused(CoreError::NotParticipant { .. })
        | HubError::Route(RouteError::UnknownConversation { .. }) => RpcError::not_found("context"),
        HubError::Refused(refusal) => {
            RpcError::new(error_code::UNSUPPORTED_OPERATION, refusal.to_string())
        }
        other => RpcError::new(error_code::INTERNAL_ERROR, other.to_string()),
    }
}

fn store_error(e: colloquy_runtime::StoreError) -> RpcError {
    RpcError::new(error_code::INTERNAL_ERROR, e.to_string())
}
