//! [`A2aServer`]: the hub's modules as A2A agents over HTTP (JSON-RPC 2.0).

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
    async_trait, ConversationHandle, ConversationId, ConversationSpec, CoreError, Hub, HubError,
    MessageKind, MessageRange, Module, ModuleError, ModuleInfo, ModuleName, Registration,
    Response as HubResponse, RouteError, RouteOptions, Turn,
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

/// A `SendMessage` resolved to an exchange ready to run, or already answered.
enum Prepared {
    /// Answered without running an exchange (a retried `messageId`, a rejected invitation):
    /// the `SendMessageResponse` JSON.
    Answered(Raw),
    /// The exchange to run.
    Ready(Exchange),
}

/// One exchange about to run.
struct Exchange {
    key: AnswerKey,
    /// The request's stored id, derived from the caller's `messageId` (see
    /// [`mapping::request_id`](crate::mapping::request_id)).
    request_id: colloquy_runtime::MessageId,
    conversation: ConversationHandle,
    content: Value,
    flight: Arc<Flight>,
}

/// The participant that stands for A2A callers in the hub. Callers speak through the
/// server; nobody can deliver a turn to them.
struct Caller(ModuleName);

#[async_trait]
impl Module for Caller {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::caller(self.0.clone(), "A2A callers of this hub's network front")
    }

    async fn handle(&self, _turn: Turn) -> Result<HubResponse, ModuleError> {
        Err(ModuleError::new(
            "this participant speaks over A2A and cannot be addressed; answer it with a reply",
        ))
    }
}

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
        let modules = hub.reachable_modules();
        if let Some(participant) = callers
            .iter()
            .find(|p| modules.iter().any(|m| &m.name == *p && !m.is_caller()))
        {
            return Err(A2aError::CallerIsModule {
                participant: participant.clone(),
            });
        }
        for participant in &callers {
            hub.register_with(
                Arc::new(Caller(participant.clone())),
                Registration::new().replacing(),
            )
            .await?;
        }
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

    /// One JSON-RPC call to `module`.
    async fn call(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        method: &str,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        match method {
            // A2A v1.0 names, and the v0.3 names deployed clients still send.
            "SendMessage" | "message/send" => self.send(caller, module, params).await,
            "GetTask" | "tasks/get" => self.get_task(caller, module, params).await,
            "CancelTask" | "tasks/cancel" => self.cancel_task(caller, module, params).await,
            other => Err(RpcError::new(
                error_code::METHOD_NOT_FOUND,
                format!("unknown method {other:?}"),
            )),
        }
    }

    async fn send(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        match self.prepare(caller, module, params).await? {
            Prepared::Answered(answer) => Ok(answer),
            Prepared::Ready(exchange) => {
                let (_, answer) = self.run(module, exchange).await?;
                Ok(answer)
            }
        }
    }

    /// Reads a `SendMessage`: answered already (a retried `messageId`), or the exchange to
    /// run in the conversation it opens or continues.
    async fn prepare(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Prepared, RpcError> {
        let request: SendMessageRequest = parse_params(params, "SendMessage")?;
        check_message(&request.message)?;
        let key = (
            caller.clone(),
            module.clone(),
            request.message.message_id.clone(),
        );
        if let Some(answer) = self.answered.get(&key) {
            return Ok(Prepared::Answered(answer));
        }
        let message_id = &request.message.message_id;
        let conversation = match &request.message.context_id {
            None => {
                // Derived from the messageId too: a retry through another hub (or after a
                // restart) finds the conversation the first attempt opened.
                let id = crate::mapping::context_id(caller, module, message_id);
                let spec = ConversationSpec::new(caller.clone(), [module.clone()]).id(id);
                match self.hub.start_conversation(spec).await {
                    Ok(handle) => handle,
                    Err(HubError::Store(colloquy_runtime::StoreError::AlreadyExists {
                        ..
                    })) => self
                        .hub
                        .conversation(id, caller.clone())
                        .await
                        .map_err(hub_error)?,
                    Err(HubError::Rejected {
                        conversation,
                        reason,
                        ..
                    }) => {
                        let result = rejected(conversation, &reason)?;
                        self.answered.insert(key, Arc::clone(&result));
                        return Ok(Prepared::Answered(result));
                    }
                    Err(e) => return Err(hub_error(e)),
                }
            }
            Some(context) => {
                let id: ConversationId = context
                    .parse()
                    .map_err(|_| RpcError::not_found("context"))?;
                // Not the caller's, or no such conversation: "not found". A module that is
                // not a participant is refused by the send below, also as "not found".
                self.hub
                    .conversation(id, caller.clone())
                    .await
                    .map_err(|_| RpcError::not_found("context"))?
            }
        };
        Ok(Prepared::Ready(Exchange {
            key,
            request_id: crate::mapping::request_id(caller, module, message_id),
            conversation,
            content: content_from_parts(&request.message.parts),
            flight: Flight::new(caller.clone(), module.clone()),
        }))
    }

    /// Runs one exchange through the hub: the request is stored (streams hear "submitted"
    /// and "working"), the module answers or fails or is cancelled, and the final task is
    /// remembered for retries and reported to streams.
    async fn run(&self, module: &ModuleName, exchange: Exchange) -> Result<(Task, Raw), RpcError> {
        let Exchange {
            key,
            request_id,
            conversation,
            content,
            flight,
        } = exchange;
        let started = std::time::Instant::now();
        let flights = Arc::clone(&self.flights);
        let stored = Arc::clone(&flight);
        let options = RouteOptions::default()
            .message_id(request_id)
            .cancel_on(flight.cancel.clone())
            .on_stored(move |request| flights.stored(&stored, request));
        let sent = conversation
            .send_with(module.clone(), MessageKind::Request, content, options)
            .await;
        self.flights.landed(&flight);
        if let Err(HubError::Route(RouteError::AlreadyStored {
            conversation, turn, ..
        })) = &sent
        {
            // Sent before (through another hub, or before a restart): the stored exchange
            // is the answer, as GetTask would give it.
            let (task, _) = self
                .stored_task(&flight.caller, module, &format!("{conversation}:{turn}"))
                .await?;
            let answer = to_raw(&SendMessageResponse::Task(task.clone()))?;
            self.answered.insert(key, Arc::clone(&answer));
            return Ok((task, answer));
        }
        let caller = &flight.caller;
        // `unanswered`: the exchange ended without a reply the store could show.
        let (task, unanswered) = match (sent, flight.request()) {
            (Ok(exchange), _) => {
                let outcome = match &exchange.reply {
                    Some(reply) => Outcome::Replied(reply),
                    None => Outcome::Without(TaskState::Completed),
                };
                (task(&exchange.request, outcome, caller), false)
            }
            (Err(HubError::Route(RouteError::Canceled { .. })), Some(request)) => (
                task(request, Outcome::Without(TaskState::Canceled), caller),
                true,
            ),
            (
                Err(HubError::Route(
                    failure @ (RouteError::HandlerFailed { .. }
                    | RouteError::HandlerTimedOut { .. }
                    | RouteError::HandlerPanicked { .. }
                    | RouteError::InvalidResponse { .. }),
                )),
                Some(request),
            ) => {
                // The request is stored and the exchange is over: a failed task, not an
                // HTTP or JSON-RPC error.
                let reason = failure.to_string();
                (task(request, Outcome::Failed(&reason), caller), true)
            }
            (Err(e), _) => return Err(hub_error(e)),
        };
        let outcome = match task.status.state {
            TaskState::Canceled => "canceled",
            TaskState::Failed => "failed",
            _ => "completed",
        };
        self.metrics
            .exchange(module, outcome, started.elapsed().as_secs_f64());
        if unanswered {
            self.unanswered.insert(
                task.id.clone(),
                (caller.clone(), module.clone(), task.clone()),
            );
        }
        // Serialized once: the answer, and what a retry of the same messageId gets.
        let answer = to_raw(&SendMessageResponse::Task(task.clone()))?;
        self.answered.insert(key, Arc::clone(&answer));
        if let Some(artifacts) = &task.artifacts {
            for artifact in artifacts {
                flight.emit(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                    task_id: task.id.clone(),
                    context_id: task.context_id.clone(),
                    artifact: artifact.clone(),
                    append: None,
                    last_chunk: Some(true),
                    metadata: None,
                }));
            }
        }
        if let Some(request) = flight.request() {
            flight.emit(status_update(request, task.status.clone()));
        }
        Ok((task, answer))
    }

    /// The task `id` as stored, if it is an exchange between the caller and `module`.
    async fn stored_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        id: &str,
    ) -> Result<(Task, bool), RpcError> {
        let task_ref: TaskRef = id.parse().map_err(|_| RpcError::not_found("task"))?;
        let reader = self.hub.reader();
        let conversation = reader
            .conversation(task_ref.conversation)
            .await
            .map_err(store_error)?
            .filter(|c| c.is_participant(caller) && c.is_participant(module))
            .ok_or_else(|| RpcError::not_found("task"))?;
        let messages = reader
            .messages(
                task_ref.conversation,
                MessageRange::Turns {
                    first: task_ref.turn,
                    last: task_ref.turn.saturating_add(1),
                },
            )
            .await
            .map_err(store_error)?;
        let Some(request) = messages
            .first()
            .filter(|m| m.turn == task_ref.turn && &m.source == caller)
        else {
            return Err(RpcError::not_found("task"));
        };
        let reply = messages
            .get(1)
            .filter(|m| m.in_reply_to == Some(request.id));
        let in_flight =
            conversation.busy_until().is_some() && conversation.turn_count() == task_ref.turn;
        let outcome = match reply {
            Some(reply) => Outcome::Replied(reply),
            None if in_flight => Outcome::Without(TaskState::Working),
            None => Outcome::Without(TaskState::Completed),
        };
        Ok((task(request, outcome, caller), in_flight))
    }

    async fn get_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        let request: GetTaskRequest = parse_params(params, "GetTask")?;
        to_raw(&self.known_task(caller, module, &request.id).await?)
    }

    async fn cancel_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        let request: CancelTaskRequest = parse_params(params, "CancelTask")?;
        if let Some((flight, mut events)) = self.flights.follow(&request.id, caller, module) {
            flight.cancel.cancel();
            // The exchange reports its end (canceled, or the answer that beat the cancel).
            while let Ok(event) = events.recv().await {
                if is_last(&event) {
                    break;
                }
            }
            drop(flight);
            return to_raw(&self.known_task(caller, module, &request.id).await?);
        }
        // Not in flight here: finished (not cancelable), or not found.
        let (_, in_flight) = self.stored_task(caller, module, &request.id).await?;
        if in_flight {
            Err(RpcError::new(
                error_code::TASK_NOT_CANCELABLE,
                format!(
                    "task {} is running in another process and cannot be canceled from here",
                    request.id
                ),
            ))
        } else {
            Err(RpcError::new(
                error_code::TASK_NOT_CANCELABLE,
                format!("task {} has finished and cannot be canceled", request.id),
            ))
        }
    }

    /// The task `id` between the caller and `module` as it stands: in flight here, ended
    /// without a reply the store could show (failed or canceled, remembered), or as stored.
    async fn known_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        id: &str,
    ) -> Result<Task, RpcError> {
        if let Some(working) = self
            .flights
            .follow(id, caller, module)
            .and_then(|(flight, _)| flight.working())
        {
            return Ok(working);
        }
        if let Some((_, _, task)) = self
            .unanswered
            .get(&id.to_owned())
            .filter(|(c, m, _)| c == caller && m == module)
        {
            return Ok(task);
        }
        Ok(self.stored_task(caller, module, id).await?.0)
    }

    /// A streaming call: `SendStreamingMessage` (the exchange's events as it runs) or
    /// `SubscribeToTask` (the current task, then its events). Errors found before the
    /// stream starts are plain JSON-RPC errors.
    async fn stream(
        self: Arc<Self>,
        caller: ModuleName,
        module: ModuleName,
        method: &str,
        params: &RawValue,
    ) -> Result<Events, RpcError> {
        if matches!(method, "SubscribeToTask" | "tasks/resubscribe") {
            let request: SubscribeToTaskRequest = parse_params(params, "SubscribeToTask")?;
            let Some((flight, events)) = self.flights.follow(&request.id, &caller, &module) else {
                // Known but over (or not found): a finished task cannot be followed.
                self.stored_task(&caller, &module, &request.id).await?;
                return Err(RpcError::new(
                    error_code::UNSUPPORTED_OPERATION,
                    format!("task {} has finished; read it with GetTask", request.id),
                ));
            };
            let first = flight.working().map(StreamResponse::Task);
            return Ok(Events {
                first,
                events: Some(events),
                failure: None,
            });
        }
        match self.prepare(&caller, &module, params).await? {
            Prepared::Answered(answer) => {
                let event = serde_json::from_str(answer.get())
                    .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))?;
                Ok(Events {
                    first: Some(event),
                    events: None,
                    failure: None,
                })
            }
            Prepared::Ready(exchange) => {
                let events = exchange.flight.subscribe();
                let (failed, failure) = oneshot::channel();
                // The exchange runs on its own: a client that hangs up does not stop it,
                // and GetTask finds its outcome.
                tokio::spawn(async move {
                    if let Err(e) = self.run(&module, exchange).await {
                        let _ = failed.send(e);
                    }
                });
                Ok(Events {
                    first: None,
                    events: Some(events),
                    failure: Some(failure),
                })
            }
        }
    }
}

/// The events of one stream: a first one, those of an exchange until its last, and the
/// error that ended the exchange early, if one did.
struct Events {
    first: Option<StreamResponse>,
    events: Option<broadcast::Receiver<StreamResponse>>,
    failure: Option<oneshot::Receiver<RpcError>>,
}

impl Events {
    /// The next event, or `None` after the last.
    async fn next(&mut self) -> Option<Result<StreamResponse, RpcError>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(self.passing(first)));
        }
        let events = self.events.as_mut()?;
        loop {
            match events.recv().await {
                Ok(event) => return Some(Ok(self.passing(event))),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    self.events = None;
                    let failure = self.failure.take()?;
                    return failure.await.ok().map(Err);
                }
            }
        }
    }
}

impl Events {
    /// Passes `event` on; after the last one, the stream has nothing more to wait for.
    fn passing(&mut self, event: StreamResponse) -> StreamResponse {
        if is_last(&event) {
            self.events = None;
            self.failure = None;
        }
        event
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

/// The answer to a message whose invitation the module rejected: a rejected task.
fn rejected(conversation: ConversationId, reason: &str) -> Result<Raw, RpcError> {
    let mut why = a2a::Message::new(a2a::Role::Agent, vec![a2a::Part::text(reason)]);
    why.context_id = Some(conversation.to_string());
    let task = Task {
        id: TaskRef {
            conversation,
            turn: 0,
        }
        .to_string(),
        context_id: conversation.to_string(),
        status: TaskStatus {
            state: TaskState::Rejected,
            message: Some(why),
            timestamp: None,
        },
        artifacts: None,
        history: None,
        metadata: None,
    };
    to_raw(&SendMessageResponse::Task(task))
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

async fn card(State(server): State<Arc<A2aServer>>, Path(module): Path<String>) -> Response {
    match server.module(&module) {
        Some(info) => Json(server.card(&info)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no agent named {module:?}")).into_response(),
    }
}

/// Checks the caller's token from the headers alone, before anything reads the body: a
/// call without a token this server knows is answered 401 at once, and a body it announced
/// but never sends holds nothing. The caller's participant goes on to the handler as a
/// request extension.
async fn require_token(
    State(server): State<Arc<A2aServer>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let Some(caller) = server.caller_of(authorization) else {
        server.metrics.error("unauthorized");
        return unauthorized();
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token this server knows is required",
    )
        .into_response()
}

async fn rpc(
    State(server): State<Arc<A2aServer>>,
    Path(module): Path<String>,
    // Found from the token by `require_token`, before the body was read.
    Extension(caller): Extension<ModuleName>,
    body: Bytes,
) -> Response {
    let Some(info) = server.module(&module) else {
        return (StatusCode::NOT_FOUND, format!("no agent named {module:?}")).into_response();
    };
    let answer = |id: &Value, outcome: Result<Raw, RpcError>| match outcome {
        // The result is already JSON: written as it is, never parsed again.
        Ok(result) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                Value::to_string(id),
                result.get()
            ),
        )
            .into_response(),
        Err(e) => {
            server.metrics.error(error_kind(e.code));
            Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}}))
                .into_response()
        }
    };
    let reply = |id: &Value, method: &'static str, outcome: Result<Raw, RpcError>| {
        server
            .metrics
            .request(method, outcome.as_ref().err().map(|e| e.code));
        answer(id, outcome)
    };
    let call: Call<'_> = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => {
            let (code, what) = match e.classify() {
                serde_json::error::Category::Data => {
                    (error_code::INVALID_REQUEST, "not a JSON-RPC request")
                }
                _ => (error_code::PARSE_ERROR, "not JSON"),
            };
            return reply(
                &Value::Null,
                "invalid",
                Err(RpcError::new(code, format!("{what}: {e}"))),
            );
        }
    };
    let id = call.id.unwrap_or(Value::Null);
    let valid_id = matches!(id, Value::Null | Value::String(_) | Value::Number(_));
    let (Some(Value::String(method)), true, Some("2.0")) = (
        &call.method,
        valid_id,
        call.jsonrpc.as_ref().and_then(Value::as_str),
    ) else {
        return reply(
            if valid_id { &id } else { &Value::Null },
            "invalid",
            Err(RpcError::new(
                error_code::INVALID_REQUEST,
                "a JSON-RPC 2.0 request needs \"jsonrpc\": \"2.0\", a string method and a string, number or null id",
            )),
        );
    };
    let label = crate::ops::method_label(method);
    let null = RawValue::NULL;
    let params = call.params.unwrap_or(null);
    // Clients that speak v0.3 call its method names with its JSON, and get its JSON back.
    let v03 = legacy::is_v03(method);
    let converted;
    let params = if v03 {
        let value = serde_json::from_str(params.get()).unwrap_or(Value::Null);
        converted = match serde_json::value::to_raw_value(&legacy::params_from_v03(value)) {
            Ok(raw) => raw,
            Err(e) => {
                return reply(
                    &id,
                    label,
                    Err(RpcError::new(error_code::INTERNAL_ERROR, e.to_string())),
                )
            }
        };
        &*converted
    } else {
        params
    };
    if is_streaming(method) {
        let events = Arc::clone(&server)
            .stream(caller, info.name.clone(), method, params)
            .await;
        return match events {
            Ok(events) => {
                server.metrics.request(label, None);
                sse(id, v03, events)
            }
            Err(e) => reply(&id, label, Err(e)),
        };
    }
    let outcome = server.call(&caller, &info.name, method, params).await;
    let outcome = if v03 {
        outcome.and_then(|result| {
            let value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
            to_raw(&legacy::result_to_v03(method, value))
        })
    } else {
        outcome
    };
    reply(&id, label, outcome)
}

/// A JSON-RPC request as read: each member checked after parsing, so that a request with a
/// wrong member gets "invalid request" rather than "not JSON"; params kept as raw JSON and
/// parsed once, into the method's own type.
#[derive(serde::Deserialize)]
struct Call<'a> {
    #[serde(default)]
    jsonrpc: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

async fn healthz(State(server): State<Arc<A2aServer>>) -> Response {
    let health = server.hub.health(None).await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Liveness for anyone who asks; the callers' names are not everyone's business.
    let mut health = health;
    health.modules.retain(|m| !server.callers.contains(m));
    (status, Json(health_json(&health))).into_response()
}

async fn metrics(State(server): State<Arc<A2aServer>>) -> Response {
    // Counted by the store at each scrape (an index count); a store that does not answer
    // leaves the series out of this scrape rather than failing it.
    let by_status = server.hub.reader().count_by_status().await.ok();
    let text = server.metrics.render(
        &server.hub.stats(),
        server.flights.len(),
        server.hub.timed_out_total(),
        by_status.as_ref(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn is_streaming(method: &str) -> bool {
    matches!(
        method,
        "SendStreamingMessage" | "message/stream" | "SubscribeToTask" | "tasks/resubscribe"
    )
}

/// A stream of JSON-RPC responses (all with the request's `id`) as Server-Sent Events.
fn sse(id: Value, v03: bool, events: Events) -> Response {
    let stream = futures_util::stream::unfold(events, move |mut events| {
        let id = id.clone();
        async move {
            let body = match events.next().await? {
                Ok(event) => {
                    let result = serde_json::to_value(&event).unwrap_or(Value::Null);
                    let result = if v03 {
                        legacy::event_to_v03(result)
                    } else {
                        result
                    };
                    json!({"jsonrpc": "2.0", "id": id, "result": result})
                }
                Err(e) => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
                }
            };
            Some((
                Ok::<_, Infallible>(Event::default().data(body.to_string())),
                events,
            ))
        }
    });
    Sse::new(stream).into_response()
}
