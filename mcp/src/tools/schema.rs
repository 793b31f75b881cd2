//! What `tools/list` tells a client of each tool: its description and input schema,
//! written for an LLM to act on, and hints (read-only, destructive).

use std::sync::Arc;

use colloquy_runtime::{Intent, StatusKind};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Value};

use super::{
    END_CONVERSATION, FIND_CONVERSATIONS, HISTORY, LIST_MODULES, SEND, START_CONVERSATION,
};

/// The tools, as `tools/list` describes them.
pub(crate) fn definitions() -> Vec<Tool> {
    let intents: Vec<&str> = Intent::ALL.iter().map(|i| i.as_str()).collect();
    let statuses: Vec<&str> = StatusKind::ALL.iter().map(|s| s.as_str()).collect();
    let conversation_id = json!({
        "type": "string",
        "description": "The conversation's id, as start_conversation or find_conversations gave it."
    });
    vec![
        tool(
            LIST_MODULES,
            "List the modules of this hub that you can converse with: each one's name, what it \
             does, its capabilities and the JSON schema of the content it accepts. Call this \
             first to choose whom to address.",
            json!({
                "type": "object",
                "properties": {
                    "capability": {"type": "string", "description": "Only modules with this capability."}
                },
                "additionalProperties": false
            }),
            read_only(),
        ),
        tool(
            START_CONVERSATION,
            "Open a conversation between you and one or more modules. Returns its id, which \
             send, history and end_conversation take. A module may decline; then the result \
             says why and nothing can be sent. Give content to send the first message in the \
             same call: the result then also holds what send returns (first_exchange).",
            json!({
                "type": "object",
                "properties": {
                    "with": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                             "description": "The modules to converse with (names from list_modules)."},
                    "intent": {"type": "string", "enum": intents, "description": "Why the conversation is held. Default collaborate."},
                    "context": {"type": "object", "description": "Shared context every turn of the conversation carries."},
                    "idle_timeout_seconds": {"type": "number", "exclusiveMinimum": 0,
                             "description": "End the conversation after this long without a turn. Default: the hub's."},
                    "max_turns": {"type": "integer", "minimum": 1, "description": "The most turns it may hold."},
                    "content": {"description": "A first message to send right away, as send would (any JSON value the module accepts)."},
                    "to": {"type": "string", "description": "Whom the first message is for. May be left out when with names one module."},
                    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0,
                             "description": "With content: give up waiting for the reply after this long. Default: the module's own deadline."}
                },
                "required": ["with"],
                "additionalProperties": false
            }),
            ToolAnnotations::new().read_only(false).destructive(false),
        ),
        tool(
            SEND,
            "Send content to a module in a conversation and wait for its reply. The request \
             and the reply are stored as the conversation's next two turns. When the module \
             fails or does not answer in time, the result is an error saying so; the request \
             stays stored and the conversation stays usable.",
            json!({
                "type": "object",
                "properties": {
                    "conversation_id": conversation_id,
                    "to": {"type": "string", "description": "The module to address. May be left out when the conversation has only one module."},
                    "content": {"description": "What to send: any JSON value the module accepts (see its input schema in list_modules)."},
                    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0,
                             "description": "Give up waiting after this long. Default: the module's own deadline."}
                },
                "required": ["conversation_id", "content"],
                "additionalProperties": false
            }),
            ToolAnnotations::new().read_only(false).destructive(false),
        ),
        tool(
            HISTORY,
            "Read a conversation: its state (status, participants, shared context) and its \
             turns, oldest first. By default the last 20 turns; give first_turn and last_turn \
             for a range.",
            json!({
                "type": "object",
                "properties": {
                    "conversation_id": conversation_id,
                    "last": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "How many of the latest turns. Default 20."},
                    "first_turn": {"type": "integer", "minimum": 1, "description": "First turn of a range (inclusive)."},
                    "last_turn": {"type": "integer", "minimum": 1, "description": "Last turn of a range (inclusive). Default: the latest."}
                },
                "required": ["conversation_id"],
                "additionalProperties": false
            }),
            read_only(),
        ),
        tool(
            END_CONVERSATION,
            "End a conversation: completed, or failed with a reason. An ended conversation \
             takes no more turns; its transcript stays readable.",
            json!({
                "type": "object",
                "properties": {
                    "conversation_id": conversation_id,
                    "failed": {"type": "string", "description": "End it as failed, for this reason. Left out: completed."}
                },
                "required": ["conversation_id"],
                "additionalProperties": false
            }),
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(false),
        ),
        tool(
            FIND_CONVERSATIONS,
            "Find your conversations, newest first: by status, by a module taking part, by \
             when they started. Returns a page and, when there are more, a cursor for the next.",
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": statuses},
                    "module": {"type": "string", "description": "Only conversations this module takes part in."},
                    "started_after": {"type": "string", "description": "RFC 3339 time, e.g. 2026-12-07T10:00:00Z."},
                    "started_before": {"type": "string", "description": "RFC 3339 time."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Page size. Default 20."},
                    "cursor": {"type": "string", "description": "The next_cursor of the previous page."}
                },
                "additionalProperties": false
            }),
            read_only(),
        ),
    ]
}

fn tool(
    name: &'static str,
    description: &'static str,
    schema: Value,
    hints: ToolAnnotations,
) -> Tool {
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        // Every schema above is an object literal.
        _ => JsonObject::new(),
    };
    let mut tool = Tool::new(name, description, Arc::new(schema));
    tool.annotations = Some(hints);
    tool
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new().read_only(true).idempotent(true)
}
