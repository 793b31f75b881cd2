//! Conversions between the core model and PostgreSQL rows: parameters going in (ids as
//! `uuid`, times as milliseconds, JSON as `jsonb`), and how the driver reads each kind of
//! column for the decoders both SQL backends share (`crate::rows`).

use std::borrow::Cow;

use colloquy_core::{Conversation, Message};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::named::Param;
pub(crate) use crate::rows::{
    decode_conversation, decode_message, decode_module, CONVERSATION_COLUMNS, MESSAGE_COLUMNS,
    MODULE_COLUMNS,
};
use crate::{
    batch::{to_i64, StateColumns},
    rows::SqlRow,
    StoreError,
};

/// A conversation's state as statement parameters, named as [`CONVERSATION_COLUMNS`]: the
/// scalar columns every SQL backend writes, and PostgreSQL's own types for the rest.
pub(crate) struct ConvParams {
    pub(crate) id: Uuid,
    columns: StateColumns,
    participants: Vec<String>,
    /// `None`: the stored context is already this conversation's (the write keeps it).
    context: Option<Value>,
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
    encode_state(c, true)
}

/// Encodes `c`; without `with_context` the context is left out (not even copied), and the
/// write keeps the stored one.
pub(crate) fn encode_state(c: &Conversation, with_context: bool) -> Result<ConvParams, StoreError> {
    let p = c.parts();
    Ok(ConvParams {
        id: p.id.as_uuid(),
        columns: StateColumns::of(c)?,
        participants: p
            .participants
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        context: with_context.then(|| Value::Object(Map::clone(&p.context))),
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

impl SqlRow for Row {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }

    fn text(&self, idx: usize) -> Result<Option<Cow<'_, str>>, String> {
        self.try_get::<_, Option<&str>>(idx)
            .map(|text| text.map(Cow::Borrowed))
            .map_err(|e| e.to_string())
    }

    fn uuid(&self, idx: usize) -> Result<Option<Uuid>, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }

    fn names(&self, idx: usize) -> Result<Vec<String>, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }

    fn json(&self, idx: usize) -> Result<Value, String> {
        self.try_get(idx).map_err(|e| e.to_string())
    }
}
