//! Conversions between the core model and SQLite rows. Encoding happens on the caller's
//! task (so the writer thread only executes SQL); decoding names the row on any failure.

use colloquy_core::{
    Conversation, ConversationId, ConversationParts, Intent, Message, MessageId, MessageKind,
    ModuleInfo, ModuleName, Phase, Status, StatusKind, Timestamp,
};
use rusqlite::Row;
use serde_json::{Map, Value};

use crate::{
    batch::{to_i64, StateColumns},
    ModuleRecord, StoreError,
};

/// A conversation ready to be written.
#[derive(Debug)]
pub(crate) struct ConvRow {
    pub id: String,
    pub status: &'static str,
    pub failure_reason: Option<String>,
    pub phase: &'static str,
    pub intent: &'static str,
    pub participants: String,
    pub modules: Vec<String>,
    pub turn_count: i64,
    pub started_at: i64,
    pub last_activity: i64,
    pub ended_at: Option<i64>,
    pub idle_timeout_ms: i64,
    pub max_turns: Option<i64>,
    /// `None`: the stored context is already this conversation's (writes keep it).
    pub context: Option<String>,
    pub metadata: String,
    pub version: i64,
    pub busy_until: Option<i64>,
    /// What the write changes in the shared state, as JSON (`None`: nothing).
    pub change: Option<String>,
}

/// A message ready to be written.
#[derive(Debug)]
pub(crate) struct MsgRow {
    pub id: String,
    pub turn: i64,
    pub source: String,
    pub target: String,
    pub kind: &'static str,
    pub content: String,
    pub in_reply_to: Option<String>,
    pub sent_at: i64,
}

/// A module registration ready to be written.
#[derive(Debug)]
pub(crate) struct ModuleRow {
    pub name: String,
    pub info: String,
    pub registered_at: i64,
}

fn json_text(what: &str, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::InvalidInput {
        reason: format!("{what} cannot be serialized: {e}"),
    })
}

pub(crate) fn encode_conversation(c: &Conversation) -> Result<ConvRow, StoreError> {
    encode_state(c, true)
}

/// Encodes `c`; without `with_context` the context is left out (not even serialized), and
/// writes of the row keep the stored one.
pub(crate) fn encode_state(c: &Conversation, with_context: bool) -> Result<ConvRow, StoreError> {
    let p = c.parts();
    let columns = StateColumns::of(c)?;
    Ok(ConvRow {
        id: p.id.to_string(),
        status: columns.status,
        failure_reason: columns.failure_reason,
        phase: columns.phase,
        intent: columns.intent,
        participants: json_text("participants", &p.participants)?,
        modules: p
            .participants
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        turn_count: columns.turn_count,
        started_at: columns.started_at,
        last_activity: columns.last_activity,
        ended_at: columns.ended_at,
        idle_timeout_ms: columns.idle_timeout_ms,
        max_turns: columns.max_turns,
        context: if with_context {
            Some(json_text("context", &p.context)?)
        } else {
            None
        },
        metadata: json_text("metadata", &p.metadata)?,
        version: columns.version,
        busy_until: columns.busy_until,
        change: c
            .state_change()
            .map(|change| json_text("state change", &change))
            .transpose()?,
    })
}

pub(crate) fn encode_message(m: &Message) -> Result<MsgRow, StoreError> {
    Ok(MsgRow {
        id: m.id.to_string(),
        turn: to_i64("turn", m.turn)?,
        source: m.source.as_str().to_owned(),
        target: m.target.as_str().to_owned(),
        kind: m.kind.as_str(),
        content: json_text("message content", &m.content)?,
        in_reply_to: m.in_reply_to.map(|id| id.to_string()),
        sent_at: m.sent_at.as_millis_i64(),
    })
}

pub(crate) fn encode_module(
    info: &ModuleInfo,
    registered_at: Timestamp,
) -> Result<ModuleRow, StoreError> {
    Ok(ModuleRow {
        name: info.name.as_str().to_owned(),
        info: json_text("module info", info)?,
        registered_at: registered_at.as_millis_i64(),
    })
}

/// The columns `decode_conversation` reads, in order.
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, status, failure_reason, phase, intent, participants, turn_count, \
     started_at, last_activity, ended_at, idle_timeout_ms, max_turns, context, metadata, \
     version, busy_until";

/// The columns `decode_message` reads, in order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at";

/// Reads one column, turning any failure into a `Corrupt` error that names the row.
fn col<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    idx: usize,
    location: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.get(idx)
        .map_err(|e| corrupt(location(), format!("column {idx}: {e}")))
}

fn corrupt(location: String, detail: String) -> StoreError {
    StoreError::Corrupt { location, detail }
}

fn parse_with<T, E: std::fmt::Display>(
    text: &str,
    what: &str,
    location: &dyn Fn() -> String,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    parse(text).map_err(|e| corrupt(location(), format!("bad {what} {text:?}: {e}")))
}

/// `serde_json::from_str` for owned results, usable where any input lifetime is expected.
fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

fn nonneg(value: i64, what: &str, location: &dyn Fn() -> String) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(location(), format!("negative {what} {value}")))
}

pub(crate) fn decode_conversation(row: &Row<'_>) -> Result<Conversation, StoreError> {
    let id_text: String = row
        .get(0)
        .map_err(|e| corrupt("a conversation row".into(), format!("unreadable id: {e}")))?;
    let here = || format!("conversation {id_text}");
    let loc: &dyn Fn() -> String = &here;
    let id: ConversationId = parse_with(&id_text, "id", loc, str::parse)?;
    let status_text: String = col(row, 1, loc)?;
    let failure_reason: Option<String> = col(row, 2, loc)?;
    let status = match parse_with(&status_text, "status", loc, str::parse::<StatusKind>)? {
        StatusKind::Active => Status::Active,
        StatusKind::Paused => Status::Paused,
        StatusKind::Completed => Status::Completed,
        StatusKind::TimedOut => Status::TimedOut,
        StatusKind::Failed => Status::Failed {
            reason: failure_reason.unwrap_or_default(),
        },
    };
    let phase: Phase = parse_with(&col::<String>(row, 3, loc)?, "phase", loc, str::parse)?;
    let intent: Intent = parse_with(&col::<String>(row, 4, loc)?, "intent", loc, str::parse)?;
    let participants: Vec<ModuleName> =
        parse_with(&col::<String>(row, 5, loc)?, "participants", loc, json)?;
    let context: Map<String, Value> =
        parse_with(&col::<String>(row, 12, loc)?, "context", loc, json)?;
    let metadata: Map<String, Value> =
        parse_with(&col::<String>(row, 13, loc)?, "metadata", loc, json)?;
    let parts = ConversationParts {
        id,
        participants: participants.into(),
        status,
        phase,
        intent,
        turn_count: nonneg(col(row, 6, loc)?, "turn count", loc)?,
        started_at: Timestamp::from_millis(nonneg(col(row, 7, loc)?, "start time", loc)?),
        last_activity: Timestamp::from_millis(nonneg(col(row, 8, loc)?, "last activity", loc)?),
        ended_at: col::<Option<i64>>(row, 9, loc)?
            .map(|t| nonneg(t, "end time", loc).map(Timestamp::from_millis))
            .transpose()?,
        idle_timeout_ms: nonneg(col(row, 10, loc)?, "idle timeout", loc)?,
        max_turns: col::<Option<i64>>(row, 11, loc)?
            .map(|t| nonneg(t, "max turns", loc))
            .transpose()?,
        context: context.into(),
        metadata: metadata.into(),
        version: nonneg(col(row, 14, loc)?, "version", loc)?,
        busy_until: col::<Option<i64>>(row, 15, loc)?
            .map(|t| nonneg(t, "busy-until time", loc).map(Timestamp::from_millis))
            .transpose()?,
    };
    Conversation::from_parts(parts).map_err(|e| corrupt(here(), e.to_string()))
}

pub(crate) fn decode_message(row: &Row<'_>) -> Result<Message, StoreError> {
    let id_text: String = row
        .get(0)
        .map_err(|e| corrupt("a message row".into(), format!("unreadable id: {e}")))?;
    let here = || format!("message {id_text}");
    let loc: &dyn Fn() -> String = &here;
    let in_reply_to: Option<String> = col(row, 7, loc)?;
    Ok(Message {
        id: parse_with(&id_text, "id", loc, str::parse::<MessageId>)?,
        conversation_id: parse_with(
            &col::<String>(row, 1, loc)?,
            "conversation id",
            loc,
            str::parse,
        )?,
        turn: nonneg(col(row, 2, loc)?, "turn", loc)?,
        source: parse_with(&col::<String>(row, 3, loc)?, "source", loc, str::parse)?,
        target: parse_with(&col::<String>(row, 4, loc)?, "target", loc, str::parse)?,
        kind: parse_with(
            &col::<String>(row, 5, loc)?,
            "kind",
            loc,
            str::parse::<MessageKind>,
        )?,
        content: parse_with(&col::<String>(row, 6, loc)?, "content", loc, json)?,
        in_reply_to: in_reply_to
            .map(|text| parse_with(&text, "in_reply_to", loc, str::parse))
            .transpose()?,
        sent_at: Timestamp::from_millis(nonneg(col(row, 8, loc)?, "send time", loc)?),
    })
}

pub(crate) fn decode_module(row: &Row<'_>) -> Result<ModuleRecord, StoreError> {
    let name: String = row
        .get(0)
        .map_err(|e| corrupt("a module row".into(), format!("unreadable name: {e}")))?;
    let here = || format!("module {name}");
    let loc: &dyn Fn() -> String = &here;
    Ok(ModuleRecord {
        info: parse_with(&col::<String>(row, 1, loc)?, "module info", loc, json)?,
        registered_at: Timestamp::from_millis(nonneg(col(row, 2, loc)?, "registration time", loc)?),
    })
}
