//! The protocol mapping, in one place: A2A messages, parts, tasks and task ids to and from
//! colloquy's messages and turns. Pure functions; the server (`server.rs`) does the IO.
//!
//! - `contextId` is the conversation id.
//! - A request is stored under an id derived from the caller, the module and the client's
//!   `messageId` ([`request_id`]; a send without `contextId` opens the conversation
//!   [`context_id`]), so that the same send arriving again, at any hub, after any restart,
//!   is recognised by the store instead of becoming a new turn.
//! - One `SendMessage` is one exchange: the request is turn N, the module's reply turn N+1.
//!   The task is that exchange; its id is `<conversation id>:<N>` ([`TaskRef`]), so a task
//!   is found again in the store after any restart, without a table of its own.
//! - Content: a message with a single text part is stored as a JSON string, a single data
//!   part as its JSON value; anything else as the array of its parts in A2A's JSON.
//!   Content going out becomes the parts it came from, or one data part.

use std::{fmt, str::FromStr};

use a2a::{Artifact, Message as A2aMessage, Part, PartContent, Role, Task, TaskState, TaskStatus};
use colloquy_runtime::{ConversationId, Message, ModuleName};
use serde_json::Value;

/// A task's id: the exchange that started with turn `turn` of `conversation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// The conversation (the A2A `contextId`).
    pub conversation: ConversationId,
    /// The request's turn.
    pub turn: u64,
}

impl TaskRef {
    /// The task a stored message belongs to: a request starts one, a reply belongs to the
    /// request before it.
    pub fn of(message: &Message) -> Self {
        let turn = match message.in_reply_to {
            Some(_) => message.turn.saturating_sub(1),
            None => message.turn,
        };
        Self {
            conversation: message.conversation_id,
            turn,
        }
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.conversation, self.turn)
    }
}

impl FromStr for TaskRef {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (conversation, turn) = s.rsplit_once(':').ok_or(())?;
        Ok(Self {
            conversation: conversation.parse().map_err(|_| ())?,
            turn: turn.parse().map_err(|_| ())?,
        })
    }
}

/// The content a message with these parts is stored as.
pub fn content_from_parts(parts: &[Part]) -> Value {
    match parts {
        [only] if only.metadata.is_none() && only.filename.is_none() => match &only.content {
            PartContent::Text(text) if only.media_type.is_none() => Value::String(text.clone()),
            PartContent::Data(data) if only.media_type.is_none() => data.clone(),
            _ => parts_json(parts),
        },
        _ => parts_json(parts),
    }
}

fn parts_json(parts: &[Part]) -> Value {
    // Serializing the protocol's own types cannot fail (no maps with non-string keys).
    serde_json::to_value(parts).unwrap_or(Value::Null)
}

/// The parts stored `content` goes out as (the inverse of [`content_from_parts`]).
pub fn parts_from_content(content: &Value) -> Vec<Part> {
    match content {
        Value::String(text) => vec![Part::text(text.clone())],
        Value::Array(items) if !items.is_empty() && items.iter().all(is_part) => {
            serde_json::from_value(content.clone())
                .unwrap_or_else(|_| vec![Part::data(content.clone())])
        }
        other => vec![Part::data(other.clone())],
    }
}

/// True if `value` is an A2A part in JSON: an object with exactly one content member.
fn is_part(value: &Value) -> bool {
    value.as_object().is_some_and(|part| {
        ["text", "raw", "url", "data"]
            .iter()
            .filter(|key| part.contains_key(**key))
            .count()
            == 1
    })
}

/// A stored message as an A2A message, seen by `caller`: its own messages are the user's,
/// the module's are the agent's.
pub fn to_a2a(message: &Message, caller: &ModuleName) -> A2aMessage {
    let role = if &message.source == caller {
        Role::User
    } else {
        Role::Agent
    };
    let mut out = A2aMessage::new(role, parts_from_content(&message.content));
    out.message_id = message.id.to_string();
    out.context_id = Some(message.conversation_id.to_string());
    out.task_id = Some(TaskRef::of(message).to_string());
    out
}

/// How an exchange stands.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// The module replied.
    Replied(&'a Message),
    /// The module failed (error, deadline, panic, or an answer that could not be applied).
    Failed(&'a str),
    /// No reply (yet), and the task in this state: submitted or working while the module
    /// runs, completed when the turn ended without a reply, canceled when it was stopped.
    Without(TaskState),
}

/// The task of one exchange: completed with the reply (as its status message and its
/// artifact), failed with the reason, or in a state without a reply.
pub fn task(request: &Message, outcome: Outcome<'_>, caller: &ModuleName) -> Task {
    let id = TaskRef {
        conversation: request.conversation_id,
        turn: request.turn,
    };
    let mut history = vec![to_a2a(request, caller)];
    let (state, message, artifacts) = match outcome {
        Outcome::Replied(reply) => {
            let answer = to_a2a(reply, caller);
            history.push(answer.clone());
            let artifact = Artifact {
                artifact_id: reply.id.to_string(),
                name: Some("reply".into()),
                description: None,
                parts: answer.parts.clone(),
                metadata: None,
                extensions: None,
            };
            (TaskState::Completed, Some(answer), Some(vec![artifact]))
        }
        Outcome::Failed(reason) => {
            let mut why = A2aMessage::new(Role::Agent, vec![Part::text(reason)]);
            why.context_id = Some(request.conversation_id.to_string());
            why.task_id = Some(id.to_string());
            (TaskState::Failed, Some(why), None)
        }
        Outcome::Without(state) => (state, None, None),
    };
    Task {
        id: id.to_string(),
        context_id: request.conversation_id.to_string(),
        status: TaskStatus {
            state,
            message,
            timestamp: None,
        },
        artifacts,
        history: Some(history),
        metadata: None,
    }
}

/// The namespace of the ids derived from A2A `messageId`s (a fixed random UUID).
const DERIVED: uuid::Uuid = uuid::Uuid::from_u128(0x6d1f_4c1e_8a0b_4f5e_9c37_2b8e_51d4_a903);

/// The time field and the ten random bytes of a derived id, all from a SHA-1 name hash of
/// `parts`: the same on every hub and after every restart, and as varied as a minted id in
/// every digit (a zero time field made ids read as nil placeholders, `00000000-0000-7...`).
fn derived(parts: &[&str]) -> (colloquy_runtime::Timestamp, [u8; 10]) {
    let name = parts.join("\n");
    let hash = uuid::Uuid::new_v5(&DERIVED, name.as_bytes());
    let hash = hash.as_bytes();
    // Bytes 0-5 of a version 5 UUID are hash bits only: the 48-bit time field.
    let time = hash[..6]
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash[6..]);
    (colloquy_runtime::Timestamp::from_millis(time), random)
}

/// The stored id of the request a caller sends to `module` with `message_id`: the same
/// wherever and whenever it is sent, so that a retry (through another hub, or after a
/// restart) is recognised by the store instead of becoming a new turn. A version 7 UUID
/// whose bits, its time field included, come from a SHA-1 name hash of the three: it is
/// derived, not minted, so its time field means no time.
pub fn request_id(
    caller: &ModuleName,
    module: &ModuleName,
    message_id: &str,
) -> colloquy_runtime::MessageId {
    let (time, random) = derived(&["request", caller.as_str(), module.as_str(), message_id]);
    colloquy_runtime::MessageId::from_parts(time, random)
}

/// The conversation a caller's `message_id` opens when it names no context, derived the
/// same way (see [`request_id`]).
pub fn context_id(
    caller: &ModuleName,
    module: &ModuleName,
    message_id: &str,
) -> colloquy_runtime::ConversationId {
    let (time, random) = derived(&["context", caller.as_str(), module.as_str(), message_id]);
    colloquy_runtime::ConversationId::from_parts(time, random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_text_or_data_part_is_stored_as_plain_json_and_comes_back() {
        let text = vec![Part::text("hello")];
        assert_eq!(content_from_parts(&text), Value::String("hello".into()));
        assert_eq!(parts_from_content(&content_from_parts(&text)), text);
        let data = vec![Part::data(serde_json::json!({"n": 1}))];
        assert_eq!(content_from_parts(&data), serde_json::json!({"n": 1}));
        assert_eq!(parts_from_content(&content_from_parts(&data)), data);
    }

    #[test]
    fn several_parts_round_trip_as_parts() {
        let parts = vec![
            Part::text("see"),
            Part::url("https://example.invalid/a").with_media_type("text/html"),
        ];
        let stored = content_from_parts(&parts);
        assert!(stored.is_array());
        assert_eq!(parts_from_content(&stored), parts);
    }

    #[test]
    fn content_that_is_not_parts_goes_out_as_one_data_part() {
        let content = serde_json::json!([1, 2, {"x": true}]);
        assert_eq!(
            parts_from_content(&content),
            vec![Part::data(content.clone())]
        );
    }

    #[test]
    fn task_ids_name_the_exchange_and_parse_back() {
        let id: ConversationId = "0190a8f2-7c3e-7b5a-9f1e-2d4c6b8a0e13"
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid UUID v7"));
        let task = TaskRef {
            conversation: id,
            turn: 7,
        };
        assert_eq!(task.to_string().parse::<TaskRef>(), Ok(task));
        assert!("nonsense".parse::<TaskRef>().is_err());
        assert!("0190a8f2-7c3e-7b5a-9f1e-2d4c6b8a0e13:x"
            .parse::<TaskRef>()
            .is_err());
    }

    #[test]
    fn derived_ids_depend_on_caller_module_and_message_id_only(
    ) -> Result<(), colloquy_runtime::CoreError> {
        let (a, b): (ModuleName, ModuleName) = ("alice".parse()?, "bob".parse()?);
        let echo: ModuleName = "echo".parse()?;
        assert_eq!(request_id(&a, &echo, "m-1"), request_id(&a, &echo, "m-1"));
        assert_ne!(request_id(&a, &echo, "m-1"), request_id(&a, &echo, "m-2"));
        assert_ne!(request_id(&a, &echo, "m-1"), request_id(&b, &echo, "m-1"));
        assert_ne!(request_id(&a, &echo, "m-1"), request_id(&a, &a, "m-1"));
        assert_eq!(context_id(&a, &echo, "m-1"), context_id(&a, &echo, "m-1"));
        assert_ne!(
            context_id(&a, &echo, "m-1").as_uuid(),
            request_id(&a, &echo, "m-1").as_uuid()
        );
        // Version 7, so every store and parser takes them.
        assert_eq!(request_id(&a, &echo, "m-1").as_uuid().get_version_num(), 7);
        // Not nil-looking: the time field is hash bits too, not zeros.
        for id in [
            request_id(&a, &echo, "m-1").as_uuid(),
            context_id(&a, &echo, "m-1").as_uuid(),
            context_id(&b, &echo, "m-2").as_uuid(),
        ] {
            assert!(!id.to_string().starts_with("0000"), "{id}");
            assert_ne!(id.as_u128() >> 80, 0, "{id} has a zero time field");
        }
        Ok(())
    }
}
