//! The rows both SQL backends read, decoded once: the column lists of conversations and
//! messages, and the decoders that turn a row into the core model, naming the row in a
//! [`StoreError::Corrupt`] on any failure. Each backend says only how its driver reads a
//! column of each kind ([`SqlRow`]): SQLite keeps ids and JSON as text, PostgreSQL has
//! `uuid`, `text[]`, `json` and `jsonb`.

use std::borrow::Cow;

use colloquy_core::{
    Conversation, ConversationId, ConversationParts, Message, MessageId, MessageKind, ModuleName,
    Status, StatusKind, Timestamp,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{ModuleRecord, StoreError};

/// The columns [`decode_conversation`] reads, in order.
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, status, failure_reason, phase, intent, participants, turn_count, started_at, \
     last_activity, ended_at, idle_timeout_ms, max_turns, context, metadata, version, busy_until";

/// The columns [`decode_message`] reads, in order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, turn, source, target, kind, content, in_reply_to, sent_at";

/// The columns [`decode_module`] reads, in order.
pub(crate) const MODULE_COLUMNS: &str = "name, info, registered_at";

/// How one backend's driver reads a column of each kind. An error is the driver's
/// description of what went wrong; the decoders add the row and the column.
pub(crate) trait SqlRow {
    /// A 64-bit integer.
    fn int(&self, idx: usize) -> Result<Option<i64>, String>;
    /// Text.
    fn text(&self, idx: usize) -> Result<Option<Cow<'_, str>>, String>;
    /// An id (SQLite: its text; PostgreSQL: `uuid`).
    fn uuid(&self, idx: usize) -> Result<Option<Uuid>, String>;
    /// A list of names (SQLite: a JSON array; PostgreSQL: `text[]`).
    fn names(&self, idx: usize) -> Result<Vec<String>, String>;
    /// A JSON value (SQLite: its text; PostgreSQL: `json` or `jsonb`).
    fn json(&self, idx: usize) -> Result<Value, String>;
}

/// Reads the columns of one row, naming it (`location`) in every error.
struct Reader<'r, R: ?Sized> {
    row: &'r R,
    location: String,
}

impl<'r, R: SqlRow + ?Sized> Reader<'r, R> {
    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            location: self.location.clone(),
            detail,
        }
    }

    fn column<T>(&self, idx: usize, read: Result<T, String>) -> Result<T, StoreError> {
        read.map_err(|e| self.corrupt(format!("column {idx}: {e}")))
    }

    fn required<T>(&self, idx: usize, value: Option<T>) -> Result<T, StoreError> {
        value.ok_or_else(|| self.corrupt(format!("column {idx}: unexpected NULL")))
    }

    fn opt_int(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        self.column(idx, self.row.int(idx))
    }

    fn nonneg(&self, idx: usize, what: &str) -> Result<u64, StoreError> {
        let value = self.required(idx, self.opt_int(idx)?)?;
        self.checked(value, what)
    }

    fn checked(&self, value: i64, what: &str) -> Result<u64, StoreError> {
        u64::try_from(value).map_err(|_| self.corrupt(format!("negative {what} {value}")))
    }

    fn opt_nonneg(&self, idx: usize, what: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(idx)?
            .map(|value| self.checked(value, what))
            .transpose()
    }

    fn time(&self, idx: usize, what: &str) -> Result<Timestamp, StoreError> {
        self.nonneg(idx, what).map(Timestamp::from_millis)
    }

    fn opt_time(&self, idx: usize, what: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_nonneg(idx, what)?.map(Timestamp::from_millis))
    }

    fn opt_text(&self, idx: usize) -> Result<Option<Cow<'r, str>>, StoreError> {
        self.column(idx, self.row.text(idx))
    }

    fn parsed<T: std::str::FromStr>(&self, idx: usize, what: &str) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.required(idx, self.opt_text(idx)?)?;
        self.parse(&text, what)
    }

    fn parse<T: std::str::FromStr>(&self, text: &str, what: &str) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        text.parse()
            .map_err(|e| self.corrupt(format!("bad {what} {text:?}: {e}")))
    }

    fn opt_uuid(&self, idx: usize) -> Result<Option<Uuid>, StoreError> {
        self.column(idx, self.row.uuid(idx))
    }

    fn json(&self, idx: usize, what: &str) -> Result<Value, StoreError> {
        self.row
            .json(idx)
            .map_err(|e| self.corrupt(format!("bad {what}: {e}")))
    }

    fn object(&self, idx: usize, what: &str) -> Result<Map<String, Value>, StoreError> {
        match self.json(idx, what)? {
            Value::Object(map) => Ok(map),
            other => Err(self.corrupt(format!("{what} is not an object: {other}"))),
        }
    }
}

/// The first column of a row, its id: read once, and named in every error about the row.
fn row_id<T: std::fmt::Display>(
    kind: &str,
    read: Result<Option<T>, String>,
) -> Result<T, StoreError> {
    let unreadable = |detail: String| StoreError::Corrupt {
        location: format!("a {kind} row"),
        detail,
    };
    match read {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(unreadable("no id".into())),
        Err(e) => Err(unreadable(format!("unreadable id: {e}"))),
    }
}

/// A reader of `row`, whose errors name it as `kind id`.
fn reader<'r, R: SqlRow + ?Sized>(
    row: &'r R,
    kind: &str,
    id: &impl std::fmt::Display,
) -> Reader<'r, R> {
    Reader {
        row,
        location: format!("{kind} {id}"),
    }
}

/// A conversation row ([`CONVERSATION_COLUMNS`]).
pub(crate) fn decode_conversation<R: SqlRow + ?Sized>(row: &R) -> Result<Conversation, StoreError> {
    let id = row_id("conversation", row.uuid(0))?;
    let r = reader(row, "conversation", &id);
    let id = ConversationId::from_uuid(id).map_err(|e| r.corrupt(e.to_string()))?;
    let failure_reason = r.opt_text(2)?.map(Cow::into_owned);
    let status = match r.parsed::<StatusKind>(1, "status")? {
        StatusKind::Active => Status::Active,
        StatusKind::Paused => Status::Paused,
        StatusKind::Completed => Status::Completed,
        StatusKind::TimedOut => Status::TimedOut,
        StatusKind::Failed => Status::Failed {
            reason: failure_reason.unwrap_or_default(),
        },
    };
    let participants = r
        .column(5, row.names(5))?
        .iter()
        .map(|name| r.parse::<ModuleName>(name, "participant"))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = ConversationParts {
        id,
        participants: participants.into(),
        status,
        phase: r.parsed(3, "phase")?,
        intent: r.parsed(4, "intent")?,
        turn_count: r.nonneg(6, "turn count")?,
        started_at: r.time(7, "start time")?,
        last_activity: r.time(8, "last activity")?,
        ended_at: r.opt_time(9, "end time")?,
        idle_timeout_ms: r.nonneg(10, "idle timeout")?,
        max_turns: r.opt_nonneg(11, "max turns")?,
        context: r.object(12, "context")?.into(),
        metadata: r.object(13, "metadata")?.into(),
        version: r.nonneg(14, "version")?,
        busy_until: r.opt_time(15, "busy-until time")?,
    };
    Conversation::from_parts(parts).map_err(|e| r.corrupt(e.to_string()))
}

/// A message row ([`MESSAGE_COLUMNS`]).
pub(crate) fn decode_message<R: SqlRow + ?Sized>(row: &R) -> Result<Message, StoreError> {
    let id = row_id("message", row.uuid(0))?;
    let r = reader(row, "message", &id);
    let bad_id = |e: colloquy_core::CoreError| r.corrupt(e.to_string());
    Ok(Message {
        id: MessageId::from_uuid(id).map_err(bad_id)?,
        conversation_id: ConversationId::from_uuid(r.required(1, r.opt_uuid(1)?)?)
            .map_err(bad_id)?,
        turn: r.nonneg(2, "turn")?,
        source: r.parsed(3, "source")?,
        target: r.parsed(4, "target")?,
        kind: r.parsed::<MessageKind>(5, "kind")?,
        content: r.json(6, "content")?,
        in_reply_to: r
            .opt_uuid(7)?
            .map(MessageId::from_uuid)
            .transpose()
            .map_err(bad_id)?,
        sent_at: r.time(8, "send time")?,
    })
}

/// A module row ([`MODULE_COLUMNS`]).
pub(crate) fn decode_module<R: SqlRow + ?Sized>(row: &R) -> Result<ModuleRecord, StoreError> {
    let name = row_id("module", row.text(0))?;
    let r = reader(row, "module", &name);
    Ok(ModuleRecord {
        info: serde_json::from_value(r.json(1, "module info")?)
            .map_err(|e| r.corrupt(format!("bad module info: {e}")))?,
        registered_at: r.time(2, "registration time")?,
    })
}
