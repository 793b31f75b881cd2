//! Conversions between the core model and SQLite rows. Encoding happens on the caller's
//! task (so the writer thread only executes SQL); for decoding, how SQLite's column types
//! are read for the decoders both SQL backends share (`crate::rows`): ids and JSON are
//! text.

use std::borrow::Cow;

use colloquy_core::{Conversation, Message, ModuleInfo, Timestamp};
use rusqlite::{types::ValueRef, Row};
use serde_json::Value;
use uuid::Uuid;

pub(crate) use crate::rows::{
    decode_conversation, decode_message, decode_module, CONVERSATION_COLUMNS, MESSAGE_COLUMNS,
    MODULE_COLUMNS,
};
use crate::{
    batch::{to_i64, StateColumns},
    rows::SqlRow,
    StoreError,
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

impl SqlRow for Row<'_> {
    fn int(&self, idx: usize) -> Result<Option<i64>, String> {
        self.get(idx).map_err(|e| e.to_string())
    }

    fn text(&self, idx: usize) -> Result<Option<Cow<'_, str>>, String> {
        match self.get_ref(idx).map_err(|e| e.to_string())? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(|text| Some(Cow::Borrowed(text)))
                .map_err(|e| e.to_string()),
            other => Err(format!("expected text, found {:?}", other.data_type())),
        }
    }

    fn uuid(&self, idx: usize) -> Result<Option<Uuid>, String> {
        self.text(idx)?
            .map(|text| Uuid::parse_str(&text).map_err(|e| format!("bad id {text:?}: {e}")))
            .transpose()
    }

    fn names(&self, idx: usize) -> Result<Vec<String>, String> {
        let text = self.text(idx)?.ok_or("unexpected NULL")?;
        serde_json::from_str(&text).map_err(|e| format!("bad participants {text:?}: {e}"))
    }

    fn json(&self, idx: usize) -> Result<Value, String> {
        let text = self.text(idx)?.ok_or("unexpected NULL")?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}
