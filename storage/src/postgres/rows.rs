//! Conversions between the core model and PostgreSQL rows: parameters going in (ids as
//! `uuid`, times as milliseconds, JSON as `jsonb`), rows coming out (naming the row on any
//! failure).

use colloquy_core::{
    Conversation, ConversationId, ConversationParts, Intent, Message, MessageId, MessageKind,
    ModuleName, Phase, Status, StatusKind, Timestamp,
};
use serde_json::{Map, Value};
use tokio_postgres::Row;

use super::named::Param;
use uuid::Uuid;

use crate::{
    batch::{to_i64, StateColumns},
    ModuleRecord, StoreError,
};

/// The columns [`decode_conversation`] reads, in order.
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, status, failure_reason, phase, intent, participants, turn_count, started_at, \
     last_activity, ended_at, idle_timeout_ms, max_turns, context, metadata, version, busy_until";

/// The columns [`decode_message`] reads, in order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at";

/// A conversation's state as statement parameters, named as [`CONVERSATION_COLUMNS`]: the
/// scalar columns every SQL backend writes, and PostgreSQL's own types for the rest.
pub(crate) struct ConvParams {
    pub(crate) id: Uuid,
    columns: StateColumns,
    participants: Vec<String>,
    context: Value,
    metadata: Value,
    /// What the write changes in the shared state (`StateChange` as JSON), if anything.
    pub(crate) change: Option<Value>,
}

impl ConvParams {
    /// The parameters, each named as its column.
    pub(crate) fn named(&self) -> [(&'static str, Param<'_>); 16] {
        [
            ("id", &self.id),
            ("status", &self.columns.status),
            ("failure_reason", &self.columns.failure_reason),
            ("phase", &self.columns.phase),
            ("intent", &self.columns.intent),
            ("participants", &self.participants),
            ("turn_count", &self.columns.turn_count),
            ("started_at", &self.columns.started_at),
            ("last_activity", &self.columns.last_activity),
            ("ended_at", &self.columns.ended_at),
            ("idle_timeout_ms", &self.columns.idle_timeout_ms),
            ("max_turns", &self.columns.max_turns),
            ("context", &self.context),
            ("metadata", &self.metadata),
            ("version", &self.columns.version),
            ("busy_until", &self.columns.busy_until),
        ]
    }
}

/// Messages as column arrays (`unnest`ed by the insert): one statement, one round trip,
/// however many messages.
#[derive(Default)]
pub(crate) struct MessageColumns {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) turns: Vec<i64>,
    pub(crate) sources: Vec<String>,
    pub(crate) targets: Vec<String>,
    pub(crate) kinds: Vec<&'static str>,
    pub(crate) contents: Vec<Value>,
    pub(crate) in_reply_to: Vec<Option<Uuid>>,
    pub(crate) sent_at: Vec<i64>,
}

impl MessageColumns {
    /// The eight column arrays, named as the insert unnests them.
    pub(crate) fn named(&self) -> [(&'static str, Param<'_>); 8] {
        [
            ("message_ids", &self.ids),
            ("message_turns", &self.turns),
            ("message_sources", &self.sources),
            ("message_targets", &self.targets),
            ("message_kinds", &self.kinds),
            ("message_contents", &self.contents),
            ("message_replies_to", &self.in_reply_to),
            ("message_sent_at", &self.sent_at),
        ]
    }
}

pub(crate) fn encode_conversation(c: &Conversation) -> Result<ConvParams, StoreError> {
    let p = c.parts();
    Ok(ConvParams {
        id: p.id.as_uuid(),
        columns: StateColumns::of(c)?,
        participants: p
            .participants
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        context: Value::Object(Map::clone(&p.context)),
        metadata: Value::Object(Map::clone(&p.metadata)),
        change: c
            .state_change()
            .map(|change| {
                serde_json::to_value(change).map_err(|e| StoreError::InvalidInput {
                    reason: format!("the state change cannot be serialized: {e}"),
                })
            })
            .transpose()?,
    })
}

pub(crate) fn encode_messages<M: std::borrow::Borrow<Message>>(
    messages: &[M],
) -> Result<MessageColumns, StoreError> {
    let mut out = MessageColumns::default();
    for m in messages.iter().map(std::borrow::Borrow::borrow) {
        out.ids.push(m.id.as_uuid());
        out.turns.push(to_i64("turn", m.turn)?);
        out.sources.push(m.source.as_str().to_owned());
        out.targets.push(m.target.as_str().to_owned());
        out.kinds.push(m.kind.as_str());
        out.contents.push(m.content.clone());
        out.in_reply_to.push(m.in_reply_to.map(|id| id.as_uuid()));
        out.sent_at.push(m.sent_at.as_millis_i64());
    }
    Ok(out)
}

fn corrupt(location: String, detail: String) -> StoreError {
    StoreError::Corrupt { location, detail }
}

/// Reads column `idx`, turning any failure into a `Corrupt` error that names the row.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    location: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| corrupt(location(), format!("column {idx}: {e}")))
}

fn nonneg(value: i64, what: &str, location: &dyn Fn() -> String) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(location(), format!("negative {what} {value}")))
}

fn time(value: i64, what: &str, location: &dyn Fn() -> String) -> Result<Timestamp, StoreError> {
    nonneg(value, what, location).map(Timestamp::from_millis)
}

fn parse<T: std::str::FromStr>(
    text: &str,
    what: &str,
    location: &dyn Fn() -> String,
) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| corrupt(location(), format!("bad {what} {text:?}: {e}")))
}

fn object(
    value: Value,
    what: &str,
    location: &dyn Fn() -> String,
) -> Result<Map<String, Value>, StoreError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(corrupt(
            location(),
            format!("{what} is not an object: {other}"),
        )),
    }
}

pub(crate) fn decode_conversation(row: &Row) -> Result<Conversation, StoreError> {
    let id: Uuid = row
        .try_get(0)
        .map_err(|e| corrupt("a conversation row".into(), format!("unreadable id: {e}")))?;
    let here = || format!("conversation {id}");
    let loc: &dyn Fn() -> String = &here;
    let id = ConversationId::from_uuid(id).map_err(|e| corrupt(here(), e.to_string()))?;
    let failure_reason: Option<String> = col(row, 2, loc)?;
    let status = match parse::<StatusKind>(col(row, 1, loc)?, "status", loc)? {
        StatusKind::Active => Status::Active,
        StatusKind::Paused => Status::Paused,
        StatusKind::Completed => Status::Completed,
        StatusKind::TimedOut => Status::TimedOut,
        StatusKind::Failed => Status::Failed {
            reason: failure_reason.unwrap_or_default(),
        },
    };
    let phase: Phase = parse(col(row, 3, loc)?, "phase", loc)?;
    let intent: Intent = parse(col(row, 4, loc)?, "intent", loc)?;
    let names: Vec<String> = col(row, 5, loc)?;
    let participants = names
        .iter()
        .map(|name| parse::<ModuleName>(name, "participant", loc))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = ConversationParts {
        id,
        participants: participants.into(),
        status,
        phase,
        intent,
        turn_count: nonneg(col(row, 6, loc)?, "turn count", loc)?,
        started_at: time(col(row, 7, loc)?, "start time", loc)?,
        last_activity: time(col(row, 8, loc)?, "last activity", loc)?,
        ended_at: col::<Option<i64>>(row, 9, loc)?
            .map(|t| time(t, "end time", loc))
            .transpose()?,
        idle_timeout_ms: nonneg(col(row, 10, loc)?, "idle timeout", loc)?,
        max_turns: col::<Option<i64>>(row, 11, loc)?
            .map(|t| nonneg(t, "max turns", loc))
            .transpose()?,
        context: object(col(row, 12, loc)?, "context", loc)?.into(),
        metadata: object(col(row, 13, loc)?, "metadata", loc)?.into(),
        version: nonneg(col(row, 14, loc)?, "version", loc)?,
        busy_until: col::<Option<i64>>(row, 15, loc)?
            .map(|t| time(t, "busy-until time", loc))
            .transpose()?,
    };
    Conversation::from_parts(parts).map_err(|e| corrupt(here(), e.to_string()))
}

pub(crate) fn decode_message(row: &Row) -> Result<Message, StoreError> {
    let id: Uuid = row
        .try_get(0)
        .map_err(|e| corrupt("a message row".into(), format!("unreadable id: {e}")))?;
    let here = || format!("message {id}");
    let loc: &dyn Fn() -> String = &here;
    let bad_id = |e: colloquy_core::CoreError| corrupt(here(), e.to_string());
    Ok(Message {
        id: MessageId::from_uuid(id).map_err(bad_id)?,
        conversation_id: ConversationId::from_uuid(col(row, 1, loc)?).map_err(bad_id)?,
        turn: nonneg(col(row, 2, loc)?, "turn", loc)?,
        source: parse(col(row, 3, loc)?, "source", loc)?,
        target: parse(col(row, 4, loc)?, "target", loc)?,
        kind: parse::<MessageKind>(col(row, 5, loc)?, "kind", loc)?,
        content: col(row, 6, loc)?,
        in_reply_to: col::<Option<Uuid>>(row, 7, loc)?
            .map(MessageId::from_uuid)
            .transpose()
            .map_err(bad_id)?,
        sent_at: time(col(row, 8, loc)?, "send time", loc)?,
    })
}

pub(crate) fn decode_module(row: &Row) -> Result<ModuleRecord, StoreError> {
    let name: String = row
        .try_get(0)
        .map_err(|e| corrupt("a module row".into(), format!("unreadable name: {e}")))?;
    let here = || format!("module {name}");
    let loc: &dyn Fn() -> String = &here;
    let info: Value = col(row, 1, loc)?;
    Ok(ModuleRecord {
        info: serde_json::from_value(info)
            .map_err(|e| corrupt(here(), format!("bad module info: {e}")))?,
        registered_at: time(col(row, 2, loc)?, "registration time", loc)?,
    })
}
