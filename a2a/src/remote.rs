//! [`RemoteAgent`]: an A2A agent elsewhere, registered in the hub as a module.

use std::time::Duration;

use a2a::{
    AgentCard, CancelTaskRequest, GetTaskRequest, ListTasksRequest, ListTasksResponse,
    Message as A2aMessage, Role, SendMessageRequest, SendMessageResponse, Task, TaskState,
};
use colloquy_runtime::{
    async_trait, Capability, Module, ModuleError, ModuleInfo, ModuleName, Response, Turn,
};
use serde_json::{json, Value};

use crate::{
    mapping::{content_from_parts, parts_from_content},
    A2aError,
};

/// Where A2A agents publish their card, below their base URL.
const WELL_KNOWN_CARD: &str = "/.well-known/agent-card.json";

/// How long reading a card may take.
const CARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest wait between two `GetTask` polls of a task the agent runs in the background.
const MAX_POLL: Duration = Duration::from_secs(1);

/// How long each call that cancels a given-up task may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a cancel lists the context's tasks when it finds none yet: a call given
/// up right after it was sent may reach the agent's task store a moment later.
const CANCEL_LOOKS: u32 = 5;

/// The pause before the second look; it doubles for each next one (50 + 100 + 200 + 400 ms).
const CANCEL_LOOK_AGAIN: Duration = Duration::from_millis(50);

/// A delivery in progress: dropped before it was answered (the hub gave up on it), it
/// cancels the agent's unfinished tasks of its context, in the background.
struct InFlight {
    /// Set until the agent answered.
    agent: Option<RemoteAgent>,
    context: String,
    /// The id of the message the call sent (the stored request's).
    message: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        // No runtime (the process is ending): nothing can be sent.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let context = std::mem::take(&mut self.context);
        let message = std::mem::take(&mut self.message);
        runtime.spawn(async move {
            match agent.cancel_context(context.clone(), &message).await {
                Ok(canceled) => tracing::debug!(agent = %agent.info.name, %context, canceled, "given-up call canceled at the agent"),
                Err(e) => tracing::debug!(agent = %agent.info.name, %context, error = %e, "given-up call could not be canceled at the agent"),
            }
        });
    }
}

/// An A2A agent reached over HTTP, as a hub module: each turn addressed to it is one
/// `SendMessage` (`contextId` = the conversation id, `messageId` = the stored message id,
/// so a retried delivery is idempotent at the agent too), and its answer is the reply turn.
///
/// - A `Message` answer, or a completed task (its artifacts, else its status message), is
///   the reply; content maps as in [`crate::mapping`], both directions.
/// - A task the agent keeps working on is polled with `GetTask` until it ends, within the
///   module's deadline; `input-required` and `auth-required` answer with the agent's
///   question as the reply.
/// - A call the hub gives up on (its deadline passed, its caller canceled it, the hub shuts
///   down) is canceled at the agent too: the agent's tasks of that context that have not
///   ended are found with `ListTasks` and canceled with `CancelTask`, in the background;
///   when none is listed yet (the call was given up before the agent stored its task), it
///   looks again for up to 750 ms for the task that holds the call's own message (an agent
///   without `ListTasks` keeps working; the hub has stopped waiting either way).
/// - A failed, rejected or canceled task, a JSON-RPC error, an HTTP error or the network
///   failing are [`A2aError`]s ([`A2aError::AgentFailed`], [`A2aError::AgentError`],
///   [`A2aError::AgentUnreachable`], ...): the hub reports them to the sender as the
///   module's failure with that message, and stores nothing for them.
///
/// ```no_run
/// # async fn run(hub: colloquy_runtime::Hub) -> Result<(), Box<dyn std::error::Error>> {
/// use colloquy_a2a::RemoteAgent;
/// use colloquy_runtime::Module;
/// let agent = RemoteAgent::connect("http://127.0.0.1:9999").await?;
/// println!("{} can {:?}", agent.info().name, agent.info().capabilities);
/// hub.register(agent).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteAgent {
    info: ModuleInfo,
    endpoint: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl RemoteAgent {
    /// Reads the agent card at `url` (the card's own URL, or the agent's base URL, below
    /// which `/.well-known/agent-card.json` is read) and makes a module of it: the card's
    /// name (made a valid module name) and description, its skills as capabilities, and
    /// its JSON-RPC endpoint.
    pub async fn connect(url: &str) -> Result<Self, A2aError> {
        Self::connect_with(url, None).await
    }

    /// As [`RemoteAgent::connect`], sending `Authorization: Bearer <token>` to the agent
    /// (for the card too).
    pub async fn connect_with(url: &str, token: Option<String>) -> Result<Self, A2aError> {
        let card_url = if url.ends_with(".json") {
            url.to_owned()
        } else {
            format!("{}{WELL_KNOWN_CARD}", url.trim_end_matches('/'))
        };
        let http = reqwest::Client::new();
        let mut request = http.get(&card_url).timeout(CARD_TIMEOUT);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| A2aError::AgentUnreachable {
            url: card_url.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(A2aError::BadCard {
                url: card_url,
                reason: format!("HTTP {}", response.status()),
            });
        }
        let card: AgentCard = response.json().await.map_err(|e| A2aError::BadCard {
            url: card_url.clone(),
            reason: e.to_string(),
        })?;
        Self::from_card(&card_url, &card, token, http)
    }

    fn from_card(
        card_url: &str,
        card: &AgentCard,
        token: Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, A2aError> {
        let bad = |reason: String| A2aError::BadCard {
            url: card_url.to_owned(),
            reason,
        };
        let interface = card
            .supported_interfaces
            .iter()
            .find(|i| i.protocol_binding == a2a::TRANSPORT_PROTOCOL_JSONRPC)
            .ok_or_else(|| {
                bad(
                    "it lists no JSONRPC interface (only A2A v1.0 JSON-RPC agents are supported)"
                        .into(),
                )
            })?;
        let name: ModuleName = name_of(&card.name).parse().map_err(|e| {
            bad(format!(
                "its name {:?} cannot be a module name: {e}",
                card.name
            ))
        })?;
        let mut info = ModuleInfo::new(name).with_description(card.description.clone());
        info.version = card.version.clone();
        for skill in &card.skills {
            if let Ok(capability) = name_of(&skill.id).parse::<Capability>() {
                info = info.with_capability(capability);
            }
        }
        Ok(Self {
            info,
            endpoint: interface.url.clone(),
            token,
            http,
        })
    }

    /// Registers the agent under `name` instead of the name on its card.
    pub fn named(mut self, name: ModuleName) -> Self {
        self.info.name = name;
        self
    }

    /// The agent's JSON-RPC endpoint, from its card.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Delivers `turn` to the agent and returns the reply's content (`None`: the agent
    /// completed the task without output).
    pub async fn deliver(&self, turn: &Turn) -> Result<Option<Value>, A2aError> {
        let mut in_flight = InFlight {
            agent: Some(self.clone()),
            context: turn.message.conversation_id.to_string(),
            message: turn.message.id.to_string(),
        };
        let delivered = self.deliver_once(turn).await;
        // Answered (or failed) by the agent: nothing to cancel there.
        in_flight.agent = None;
        delivered
    }

    async fn deliver_once(&self, turn: &Turn) -> Result<Option<Value>, A2aError> {
        let mut message = A2aMessage::new(Role::User, parts_from_content(&turn.message.content));
        message.message_id = turn.message.id.to_string();
        message.context_id = Some(turn.message.conversation_id.to_string());
        let request = SendMessageRequest {
            message,
            configuration: None,
            metadata: None,
            tenant: None,
        };
        let started = tokio::time::Instant::now();
        let result = self.call("SendMessage", &request, turn.deadline).await?;
        let answer: SendMessageResponse =
            serde_json::from_value(result).map_err(|e| self.bad_answer(e.to_string()))?;
        let mut task = match answer {
            SendMessageResponse::Message(message) => {
                return Ok(Some(content_from_parts(&message.parts)))
            }
            SendMessageResponse::Task(task) => task,
        };
        // A task still running: poll it until it ends, within what is left of the deadline.
        let mut pause = Duration::from_millis(20);
        while matches!(task.status.state, TaskState::Submitted | TaskState::Working) {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            let left = turn.deadline.saturating_sub(started.elapsed());
            let request = GetTaskRequest {
                id: task.id.clone(),
                history_length: Some(0),
                tenant: None,
            };
            let result = self.call("GetTask", &request, left).await?;
            task = serde_json::from_value(result).map_err(|e| self.bad_answer(e.to_string()))?;
        }
        self.outcome(task)
    }

    /// Cancels the agent's tasks of `context` that have not ended (the hub gave up on them).
    /// The first look cancels every such task of the context. When it finds none, the
    /// given-up call may not have reached the agent's task store yet: later looks (see
    /// [`CANCEL_LOOKS`]) cancel only a task whose history holds `message`, the call's own
    /// message, so that a next turn's task in the same context is never taken for it.
    async fn cancel_context(&self, context: String, message: &str) -> Result<usize, A2aError> {
        let mut pause = CANCEL_LOOK_AGAIN;
        for look in 1..=CANCEL_LOOKS {
            let open: Vec<Task> =
                self.open_tasks(&context)
                    .await?
                    .into_iter()
                    .filter(|task| {
                        look == 1
                            || task.history.as_ref().is_some_and(|history| {
                                history.iter().any(|m| m.message_id == message)
                            })
                    })
                    .collect();
            if !open.is_empty() {
                let mut canceled = 0;
                for task in open {
                    let request = CancelTaskRequest {
                        id: task.id,
                        metadata: None,
                        tenant: None,
                    };
                    self.call("CancelTask", &request, CANCEL_TIMEOUT).await?;
                    canceled += 1;
                }
                return Ok(canceled);
            }
            if look < CANCEL_LOOKS {
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
        }
        Ok(0)
    }

    /// The agent's tasks of `context` that have not ended, each with the latest messages of
    /// its history (a task just started holds the message that started it).
    async fn open_tasks(&self, context: &str) -> Result<Vec<Task>, A2aError> {
        let request = ListTasksRequest {
            context_id: Some(context.to_owned()),
            status: None,
            page_size: Some(20),
            page_token: None,
            history_length: Some(4),
            status_timestamp_after: None,
            include_artifacts: Some(false),
            tenant: None,
        };
        let listed = self.call("ListTasks", &request, CANCEL_TIMEOUT).await?;
        let listed: ListTasksResponse =
            serde_json::from_value(listed).map_err(|e| self.bad_answer(e.to_string()))?;
        Ok(listed
            .tasks
            .into_iter()
            .filter(|t| {
                matches!(
                    t.status.state,
                    TaskState::Submitted
                        | TaskState::Working
                        | TaskState::InputRequired
                        | TaskState::AuthRequired
                )
            })
            .collect())
    }

    /// The reply an ended task gives, or why it gives none.
    fn outcome(&self, task: Task) -> Result<Option<Value>, A2aError> {
        let said = task
            .status
            .message
            .as_ref()
            .map(|m| content_from_parts(&m.parts));
        match task.status.state {
            TaskState::Completed => {
                let parts: Vec<a2a::Part> = task
                    .artifacts
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|artifact| artifact.parts)
                    .collect();
                if parts.is_empty() {
                    Ok(said)
                } else {
                    Ok(Some(content_from_parts(&parts)))
                }
            }
            TaskState::InputRequired | TaskState::AuthRequired => Ok(said),
            state => Err(A2aError::AgentFailed {
                agent: self.info.name.clone(),
                task: task.id,
                state: format!("{state:?}").to_lowercase(),
                reason: said
                    .map(|content| match content {
                        Value::String(text) => text,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "no reason given".into()),
            }),
        }
    }

    /// One JSON-RPC call to the agent within `deadline`: its `result`, or a typed error.
    async fn call<P: serde::Serialize>(
        &self,
        method: &str,
        params: &P,
        deadline: Duration,
    ) -> Result<Value, A2aError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("A2A-Version", "1.0")
            .timeout(deadline)
            .json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(&e, deadline))?;
        let status = response.status();
        if !status.is_success() {
            return Err(A2aError::AgentUnreachable {
                url: self.endpoint.clone(),
                reason: format!("HTTP {status}"),
            });
        }
        let mut answer: Value = response
            .json()
            .await
            .map_err(|e| self.unreachable(&e, deadline))?;
        if let Some(error) = answer.get("error") {
            return Err(A2aError::AgentError {
                agent: self.info.name.clone(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        answer
            .get_mut("result")
            .map(Value::take)
            .ok_or_else(|| self.bad_answer("neither result nor error".into()))
    }

    fn unreachable(&self, e: &reqwest::Error, deadline: Duration) -> A2aError {
        if e.is_timeout() {
            A2aError::AgentTimedOut {
                agent: self.info.name.clone(),
                deadline,
            }
        } else {
            A2aError::AgentUnreachable {
                url: self.endpoint.clone(),
                reason: e.to_string(),
            }
        }
    }

    fn bad_answer(&self, reason: String) -> A2aError {
        A2aError::BadAnswer {
            agent: self.info.name.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Module for RemoteAgent {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        match self.deliver(&turn).await {
            Ok(Some(content)) => Ok(Response::reply(content)),
            Ok(None) => Ok(Response::NoReply),
            Err(e) => Err(ModuleError::new(e.to_string())),
        }
    }
}

/// `text` as a module or capability name: lowercase, runs of other characters as one `-`,
/// at most the longest name allowed.
fn name_of(text: &str) -> String {
    let mut name = String::with_capacity(text.len());
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_matches('-');
    name.chars().take(colloquy_runtime::MAX_NAME_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_names_become_module_names() {
        assert_eq!(name_of("Currency Agent (beta)"), "currency-agent-beta");
        assert_eq!(name_of("echo"), "echo");
        assert_eq!(name_of("  Ünïcode  name "), "n-code-name");
        assert!(name_of(&"x".repeat(500)).len() <= colloquy_runtime::MAX_NAME_LEN);
    }
}
