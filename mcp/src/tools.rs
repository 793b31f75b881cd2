//! The tools an MCP client calls: their names, the parsing of their arguments, and what
//! each does through the hub (their descriptions and input schemas are in `schema.rs`).
//! Every outcome a caller can act on, a refusal included, is a tool result; only a tool
//! name the server does not know is a protocol error.

use std::time::Duration;

use colloquy_runtime::{
    ConversationHandle, ConversationId, ConversationSpec, Exchange, HubError, ListCursor,
    ListFilter, MessageKind, MessageRange, ModuleName, RouteOptions, TimeRange, Timestamp,
};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::McpServer;

mod schema;

pub(crate) use schema::definitions;

/// The tool names, as clients call them.
const LIST_MODULES: &str = "list_modules";
const START_CONVERSATION: &str = "start_conversation";
const SEND: &str = "send";
const HISTORY: &str = "history";
const END_CONVERSATION: &str = "end_conversation";
const FIND_CONVERSATIONS: &str = "find_conversations";

/// Whether `name` is one of this server's tools.
pub(crate) fn known(name: &str) -> bool {
    [
        LIST_MODULES,
        START_CONVERSATION,
        SEND,
        HISTORY,
        END_CONVERSATION,
        FIND_CONVERSATIONS,
    ]
    .contains(&name)
}

/// A tool call refused: the message the caller reads.
struct Refused(String);

impl From<HubError> for Refused {
    fn from(e: HubError) -> Self {
        Self(e.to_string())
    }
}

type Outcome = Result<Value, Refused>;

/// Runs tool `name` (known, see [`known`]) as `caller`; `cancel` stops a send's handler.
pub(crate) async fn call(
    server: &McpServer,
    caller: &ModuleName,
    name: &str,
    arguments: Option<JsonObject>,
    cancel: CancellationToken,
) -> CallToolResult {
    let arguments = Value::Object(arguments.unwrap_or_default());
    // Each tool's arguments are parsed into its own type first: a refusal says which.
    let outcome = async {
        match name {
            LIST_MODULES => Ok(list_modules(server, parse(name, arguments)?)),
            START_CONVERSATION => start(server, caller, parse(name, arguments)?, cancel).await,
            SEND => send(server, caller, parse(name, arguments)?, cancel).await,
            HISTORY => history(server, caller, parse(name, arguments)?).await,
            END_CONVERSATION => end(server, caller, parse(name, arguments)?).await,
            _ => find(server, caller, parse(name, arguments)?).await,
        }
    }
    .await;
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(Refused(reason)) => CallToolResult::error(vec![ContentBlock::text(reason)]),
    }
}

fn parse<T: DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, Refused> {
    serde_json::from_value(arguments).map_err(|e| {
        Refused(format!(
            "bad arguments for {tool}: {e}; see the tool's input schema"
        ))
    })
}

fn module_name(name: &str) -> Result<ModuleName, Refused> {
    name.parse()
        .map_err(|e| Refused(format!("{name:?} is not a module name: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListModulesArgs {
    capability: Option<String>,
}

fn list_modules(server: &McpServer, args: ListModulesArgs) -> Value {
    let modules: Vec<Value> = server
        .hub
        .reachable_modules()
        .iter()
        .filter(|m| !m.is_caller())
        .filter(|m| {
            args.capability
                .as_deref()
                .is_none_or(|wanted| m.capabilities.iter().any(|c| c.as_str() == wanted))
        })
        .map(|m| {
            json!({
                "name": m.name,
                "description": m.description,
                "capabilities": m.capabilities,
                "version": m.version,
                "input_schema": m.input_schema,
            })
        })
        .collect();
    json!({ "modules": modules })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    with: Vec<String>,
    intent: Option<String>,
    context: Option<Map<String, Value>>,
    idle_timeout_seconds: Option<f64>,
    max_turns: Option<u64>,
    /// A first message, sent in the same call.
    content: Option<Value>,
    to: Option<String>,
    timeout_seconds: Option<f64>,
}

async fn start(
    server: &McpServer,
    caller: &ModuleName,
    args: StartArgs,
    cancel: CancellationToken,
) -> Outcome {
    if args.with.is_empty() {
        return Err(Refused(
            "with must name at least one module (see list_modules)".into(),
        ));
    }
    let mut others = Vec::with_capacity(args.with.len());
    for name in &args.with {
        let name = module_name(name)?;
        if server.is_caller(&name) {
            return Err(Refused(format!(
                "{name} is a caller of this server, not a module; name modules from list_modules"
            )));
        }
        others.push(name);
    }
    let mut spec = ConversationSpec::new(caller.clone(), others);
    if let Some(intent) = &args.intent {
        spec = spec.intent(
            intent
                .parse()
                .map_err(|e: colloquy_runtime::CoreError| Refused(e.to_string()))?,
        );
    }
    if let Some(context) = args.context {
        spec = spec.context(context);
    }
    if let Some(seconds) = args.idle_timeout_seconds {
        spec = spec.idle_timeout(seconds_to_duration("idle_timeout_seconds", seconds)?);
    }
    if let Some(max) = args.max_turns {
        spec = spec.max_turns(max);
    }
    // Everything about the first message is checked before anything is stored.
    let first = match args.content {
        Some(content) => {
            let target =
                match (&args.to, spec.participants.get(1..)) {
                    (Some(name), _) => module_name(name)?,
                    (None, Some([only])) => only.clone(),
                    (None, _) => return Err(Refused(
                        "with names several modules; say which the first message is for with `to`"
                            .into(),
                    )),
                };
            Some((target, content, send_options(args.timeout_seconds, cancel)?))
        }
        None if args.to.is_some() || args.timeout_seconds.is_some() => {
            return Err(Refused(
                "to and timeout_seconds are for a first message: give its content too".into(),
            ))
        }
        None => None,
    };
    let opened = match first {
        None => server.hub.start_conversation(spec).await.map(|h| (h, None)),
        Some((target, content, options)) => server
            .hub
            .start_conversation_and_send(spec, target, MessageKind::Request, content, options)
            .await
            .map(|(h, sent)| (h, Some(sent))),
    };
    match opened {
        Ok((handle, sent)) => {
            let first_exchange = match sent {
                None => Value::Null,
                Some(Ok(exchange)) => exchange_json(handle.id(), &exchange),
                // Opened all the same: the id lets the caller go on, or read what was stored.
                Some(Err(e)) => {
                    return Err(Refused(format!(
                        "opened conversation {}, but its first message failed: {e}",
                        handle.id()
                    )))
                }
            };
            let state = handle.state().await?;
            Ok(json!({
                "conversation_id": handle.id(),
                "status": state.status(),
                "participants": state.participants(),
                "handshake": handle.handshake(),
                "first_exchange": first_exchange,
            }))
        }
        Err(HubError::Rejected {
            conversation,
            module,
            reason,
        }) => Err(Refused(format!(
            "{module} declined the conversation ({conversation}): {reason}"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn seconds_to_duration(field: &str, seconds: f64) -> Result<Duration, Refused> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Refused(format!(
                "{field} must be a positive number of seconds, not {seconds}"
            ))
        })
}

/// The caller's handle on conversation `id`; "not found" when there is none or the caller
/// does not take part (the two are not told apart).
async fn own_conversation(
    server: &McpServer,
    caller: &ModuleName,
    id: &str,
) -> Result<ConversationHandle, Refused> {
    let not_found = || {
        Refused(format!(
            "conversation {id} not found among yours; find_conversations lists them"
        ))
    };
    let id: ConversationId = id.parse().map_err(|_| not_found())?;
    server
        .hub
        .conversation(id, caller.clone())
        .await
        .map_err(|e| match e {
            HubError::Store(_) => Refused(e.to_string()),
            _ => not_found(),
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    conversation_id: String,
    to: Option<String>,
    content: Value,
    timeout_seconds: Option<f64>,
}

async fn send(
    server: &McpServer,
    caller: &ModuleName,
    args: SendArgs,
    cancel: CancellationToken,
) -> Outcome {
    let handle = own_conversation(server, caller, &args.conversation_id).await?;
    let target = match &args.to {
        Some(name) => module_name(name)?,
        None => {
            let state = handle.state().await?;
            let mut others = state.participants().iter().filter(|p| *p != caller);
            match (others.next(), others.next()) {
                (Some(only), None) => only.clone(),
                _ => {
                    return Err(Refused(format!(
                        "the conversation has several other participants ({}); say which with `to`",
                        ModuleName::join(state.participants())
                    )))
                }
            }
        }
    };
    let options = send_options(args.timeout_seconds, cancel)?;
    let exchange = handle
        .send_with(target, MessageKind::Request, args.content, options)
        .await?;
    Ok(exchange_json(handle.id(), &exchange))
}

/// A send's options: its deadline, and `cancel` to stop its handler.
fn send_options(
    timeout_seconds: Option<f64>,
    cancel: CancellationToken,
) -> Result<RouteOptions, Refused> {
    let options = match timeout_seconds {
        Some(seconds) => RouteOptions::deadline(seconds_to_duration("timeout_seconds", seconds)?),
        None => RouteOptions::default(),
    };
    Ok(options.cancel_on(cancel))
}

/// What a send returns: the turns it made and the reply.
fn exchange_json(conversation: ConversationId, exchange: &Exchange) -> Value {
    json!({
        "conversation_id": conversation,
        "request_turn": exchange.request.turn,
        "reply_turn": exchange.reply.as_ref().map(|r| r.turn),
        "reply": exchange.reply.as_ref().map(|r| &r.content),
        "from": exchange.reply.as_ref().map(|r| &r.source),
        "status": exchange.status,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryArgs {
    conversation_id: String,
    last: Option<u64>,
    first_turn: Option<u64>,
    last_turn: Option<u64>,
}

async fn history(server: &McpServer, caller: &ModuleName, args: HistoryArgs) -> Outcome {
    let handle = own_conversation(server, caller, &args.conversation_id).await?;
    let state = handle.state().await?;
    let range = match (args.first_turn, args.last_turn) {
        (None, None) => MessageRange::Last(args.last.unwrap_or(20).clamp(1, 1000)),
        (first, last) => {
            let first = first.unwrap_or(1);
            let last = last.unwrap_or(state.turn_count());
            if first > last || last - first >= 1000 {
                return Err(Refused(format!(
                    "turns {first}..={last} is not a range of 1 to 1000 turns; the conversation has {} turns",
                    state.turn_count()
                )));
            }
            MessageRange::Turns { first, last }
        }
    };
    let messages = server
        .hub
        .reader()
        .messages(handle.id(), range)
        .await
        .map_err(|e| Refused(e.to_string()))?;
    Ok(json!({
        "conversation": state,
        "messages": messages,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndArgs {
    conversation_id: String,
    failed: Option<String>,
}

async fn end(server: &McpServer, caller: &ModuleName, args: EndArgs) -> Outcome {
    let handle = own_conversation(server, caller, &args.conversation_id).await?;
    let state = match args.failed {
        Some(reason) => handle.fail(reason).await?,
        None => handle.end().await?,
    };
    Ok(json!({ "conversation": state }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindArgs {
    status: Option<String>,
    module: Option<String>,
    started_after: Option<String>,
    started_before: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn find(server: &McpServer, caller: &ModuleName, args: FindArgs) -> Outcome {
    // The store's filter is the caller: another participant's conversations never leave it.
    let mut filter = ListFilter::new().participant(caller.clone());
    filter.limit = args.limit.unwrap_or(20).clamp(1, 100);
    if let Some(status) = &args.status {
        filter = filter.status(
            status
                .parse()
                .map_err(|e: colloquy_runtime::CoreError| Refused(e.to_string()))?,
        );
    }
    let time = |field: &str, text: &Option<String>| -> Result<Option<Timestamp>, Refused> {
        text.as_deref()
            .map(|t| {
                let at = humantime::parse_rfc3339_weak(t)
                    .map_err(|e| Refused(format!("{field}: {t:?} is not an RFC 3339 time: {e}")))?;
                let since_epoch = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| Refused(format!("{field}: {t:?} is before 1970")))?;
                Ok(Timestamp::from_millis(
                    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
                ))
            })
            .transpose()
    };
    filter.started = TimeRange {
        from: time("started_after", &args.started_after)?,
        until: time("started_before", &args.started_before)?,
    };
    if let Some(cursor) = &args.cursor {
        filter.after = Some(parse_cursor(cursor)?);
    }
    let module = args.module.as_deref().map(module_name).transpose()?;
    let page = server
        .hub
        .reader()
        .list(&filter)
        .await
        .map_err(|e| Refused(e.to_string()))?;
    let conversations: Vec<Value> = page
        .conversations
        .iter()
        .filter(|c| module.as_ref().is_none_or(|m| c.is_participant(m)))
        .map(|c| {
            json!({
                "conversation_id": c.id(),
                "status": c.status(),
                "participants": c.participants(),
                "intent": c.intent(),
                "turns": c.turn_count(),
                "started_at": c.started_at(),
                "last_activity": c.last_activity(),
            })
        })
        .collect();
    Ok(json!({
        "conversations": conversations,
        "next_cursor": page.next.map(|c| format!("{}/{}", c.started_at.as_millis(), c.id)),
    }))
}

fn parse_cursor(text: &str) -> Result<ListCursor, Refused> {
    let bad = || {
        Refused(format!(
            "cursor {text:?} is not a next_cursor this server gave"
        ))
    };
    let (millis, id) = text.split_once('/').ok_or_else(bad)?;
    Ok(ListCursor {
        started_at: Timestamp::from_millis(millis.parse().map_err(|_| bad())?),
        id: id.parse().map_err(|_| bad())?,
    })
}
