//! Read queries of the SQLite backend, run on pooled query-only connections.

use colloquy_core::{ConversationId, Message, ModuleName};
use rusqlite::{types::Value as Sql, Connection, Transaction, TransactionBehavior};

use super::{
    rows::{
        decode_conversation, decode_message, decode_module, CONVERSATION_COLUMNS, MESSAGE_COLUMNS,
        MODULE_COLUMNS,
    },
    Site,
};
use crate::{
    queries::{self, Dialect, Query, QueryValue},
    Analytics, ConversationPage, ListFilter, MessageRange, ModuleRecord, StatusCounts, StoreError,
    TimeRange,
};

pub(crate) fn conversation(
    conn: &Connection,
    site: &Site,
    id: ConversationId,
) -> Result<Option<colloquy_core::Conversation>, StoreError> {
    let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversation_rows WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| site.err(e))?;
    let mut rows = stmt.query([id.to_string()]).map_err(|e| site.err(e))?;
    match rows.next().map_err(|e| site.err(e))? {
        Some(row) => decode_conversation(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn message(
    conn: &Connection,
    site: &Site,
    id: colloquy_core::MessageId,
) -> Result<Option<Message>, StoreError> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| site.err(e))?;
    let mut rows = stmt.query([id.to_string()]).map_err(|e| site.err(e))?;
    match rows.next().map_err(|e| site.err(e))? {
        Some(row) => decode_message(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn state_changes(
    conn: &Connection,
    site: &Site,
    id: ConversationId,
) -> Result<Vec<colloquy_core::StateChange>, StoreError> {
    let err = |e| site.err(e);
    let mut stmt = conn
        .prepare_cached(
            "SELECT change FROM state_changes WHERE conversation_id = ?1 ORDER BY version",
        )
        .map_err(err)?;
    let mut rows = stmt.query([id.to_string()]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let text: String = row.get(0).map_err(err)?;
        out.push(
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                location: format!("a state change of conversation {id}"),
                detail: e.to_string(),
            })?,
        );
    }
    drop(rows);
    drop(stmt);
    if out.is_empty() && !exists(conn, site, id)? {
        return Err(StoreError::NotFound { conversation: id });
    }
    Ok(out)
}

pub(crate) fn messages(
    conn: &Connection,
    site: &Site,
    id: ConversationId,
    range: MessageRange,
) -> Result<Vec<Message>, StoreError> {
    let err = |e| site.err(e);
    let query = queries::messages::<Sqlite>(id, range);
    let mut stmt = conn.prepare_cached(&query.sql).map_err(err)?;
    let mut rows = stmt.query(params(query.values)).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        out.push(decode_message(row)?);
    }
    drop(rows);
    drop(stmt);
    // Only an empty result needs telling apart from a missing conversation.
    if out.is_empty() && !exists(conn, site, id)? {
        return Err(StoreError::NotFound { conversation: id });
    }
    Ok(out)
}

/// SQLite's side of the shared queries: `?n` placeholders, participants in their own
/// table, ids as text.
struct Sqlite;

impl Dialect for Sqlite {
    const CONVERSATIONS: &'static str = "conversation_rows";

    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn has_participant(query: &mut Query, module: &ModuleName) -> String {
        let module = query.bind::<Self>(QueryValue::Text(module.as_str().to_owned()));
        // A correlated EXISTS lets SQLite walk the start-time index in order and stop at
        // the page size, instead of first collecting every conversation of the module.
        format!(
            "EXISTS (SELECT 1 FROM participants p \
             WHERE p.conversation_id = {}.id AND p.module = {module})",
            Self::CONVERSATIONS
        )
    }
}

/// The shared queries' values as SQLite's.
fn params(values: Vec<QueryValue>) -> rusqlite::ParamsFromIter<Vec<Sql>> {
    rusqlite::params_from_iter(
        values
            .into_iter()
            .map(|value| match value {
                QueryValue::Int(n) => Sql::Integer(n),
                QueryValue::Text(text) => Sql::Text(text),
                QueryValue::Id(id) => Sql::Text(id.to_string()),
                QueryValue::Names(names) => Sql::Text(serde_json::Value::from(names).to_string()),
            })
            .collect(),
    )
}

fn exists(conn: &Connection, site: &Site, id: ConversationId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM conversations WHERE id = ?1")
        .and_then(|mut s| s.exists([id.to_string()]))
        .map_err(|e| site.err(e))
}

pub(crate) fn list(
    conn: &Connection,
    site: &Site,
    filter: &ListFilter,
) -> Result<ConversationPage, StoreError> {
    let err = |e| site.err(e);
    let query = queries::list::<Sqlite>(filter);
    let mut stmt = conn.prepare_cached(&query.sql).map_err(err)?;
    let mut rows = stmt.query(params(query.values)).map_err(err)?;
    let candidates = std::iter::from_fn(|| match rows.next() {
        Ok(Some(row)) => Some(decode_conversation(row)),
        Ok(None) => None,
        Err(e) => Some(Err(site.err(e))),
    });
    ConversationPage::from_candidates(filter.effective_limit(), candidates)
}

pub(crate) fn analytics(
    conn: &Connection,
    site: &Site,
    range: TimeRange,
) -> Result<Analytics, StoreError> {
    let err = |e| site.err(e);
    // One read transaction, so both aggregates see the same snapshot.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred).map_err(err)?;
    let mut totals = Query {
        sql: "SELECT count(*), \
         coalesce(sum(status = 'active'), 0), coalesce(sum(status = 'paused'), 0), \
         coalesce(sum(status = 'completed'), 0), coalesce(sum(status = 'timed_out'), 0), \
         coalesce(sum(status = 'failed'), 0), coalesce(sum(turn_count), 0), \
         coalesce(sum(max(coalesce(ended_at, last_activity) - started_at, 0)), 0) \
         FROM conversations WHERE 1 = 1"
            .to_owned(),
        values: Vec::new(),
    };
    totals.time_range::<Sqlite>("started_at", range);
    let counts: [i64; 8] = tx
        .prepare_cached(&totals.sql)
        .and_then(|mut s| {
            s.query_row(params(totals.values), |r| {
                Ok([
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ])
            })
        })
        .map_err(err)?;
    let mut out = queries::analytics_totals(counts);

    // A module took part in a conversation if it is a participant now or sent any of its
    // turns (a request or a reply): a transfer removes a module from the participants,
    // not from what it did. Only a conversation whose participants changed after it opened
    // (a state change after version 0 that names them) can have a sender who is no longer
    // a participant, so only those conversations' messages are read (through their
    // (conversation, turn) index), never the whole table. One row per (module,
    // conversation), then counted per module.
    let mut modules = Query {
        sql: String::from(
            "WITH moved AS (SELECT DISTINCT conversation_id FROM state_changes \
           WHERE version > 0 AND change LIKE '%\"participants\"%'), \
         took_part (module, conversation_id, initiated) AS ( \
           SELECT module, conversation_id, position = 0 FROM participants \
           UNION ALL SELECT m.source, m.conversation_id, 0 FROM moved \
             JOIN messages m ON m.conversation_id = moved.conversation_id) \
         SELECT module, sum(initiated), count(*) FROM ( \
           SELECT t.module AS module, max(t.initiated) AS initiated FROM took_part t \
           JOIN conversations c ON c.id = t.conversation_id WHERE 1 = 1",
        ),
        values: Vec::new(),
    };
    modules.time_range::<Sqlite>("c.started_at", range);
    modules
        .sql
        .push_str(" GROUP BY t.module, t.conversation_id) GROUP BY module ORDER BY module");
    let mut stmt = tx.prepare_cached(&modules.sql).map_err(err)?;
    let mut rows = stmt.query(params(modules.values)).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let name: String = row.get(0).map_err(err)?;
        out.modules.push(queries::module_activity(
            &name,
            row.get(1).map_err(err)?,
            row.get(2).map_err(err)?,
        )?);
    }
    Ok(out)
}

/// Where the time went, per module (see [`crate::ConversationStore::exchanges`]).
pub(crate) fn exchanges(
    conn: &Connection,
    site: &Site,
    range: TimeRange,
) -> Result<Vec<crate::ModuleExchanges>, StoreError> {
    let err = |e| site.err(e);
    let mut query = Query {
        sql: crate::exchanges::exchanges_sql(),
        values: Vec::new(),
    };
    query.time_range::<Sqlite>("q.sent_at", range);
    query.sql.push_str(crate::exchanges::EXCHANGES_GROUP);
    let mut stmt = conn.prepare_cached(&query.sql).map_err(err)?;
    let mut rows = stmt.query(params(query.values)).map_err(err)?;
    let rows = std::iter::from_fn(|| match rows.next() {
        Ok(Some(row)) => Some(
            (|| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))()
                .map_err(|e: rusqlite::Error| site.err(e)),
        ),
        Ok(None) => None,
        Err(e) => Some(Err(site.err(e))),
    });
    crate::exchanges::fold_rows(rows)
}

/// Turns holding a text (see [`crate::TextSearch`]).
pub(crate) fn search(
    conn: &Connection,
    site: &Site,
    search: &crate::TextSearch,
) -> Result<Vec<crate::SearchHit>, StoreError> {
    let Some(needle) = search.needle() else {
        return Ok(Vec::new());
    };
    let err = |e| site.err(e);
    let mut query = Query {
        sql: "SELECT conversation_id, turn, sent_at FROM messages WHERE instr(lower(content), ?1) > 0"
            .to_owned(),
        values: vec![QueryValue::Text(needle)],
    };
    if let Some(participant) = &search.participant {
        let module = query.bind::<Sqlite>(QueryValue::Text(participant.to_string()));
        query.sql.push_str(&format!(
            " AND conversation_id IN (SELECT conversation_id FROM participants WHERE module = {module})"
        ));
    }
    let limit = query.bind::<Sqlite>(QueryValue::Int(
        i64::try_from(search.effective_limit()).unwrap_or(500),
    ));
    query.sql.push_str(&format!(
        " ORDER BY sent_at DESC, conversation_id DESC, turn DESC LIMIT {limit}"
    ));
    let mut stmt = conn.prepare_cached(&query.sql).map_err(err)?;
    let mut rows = stmt.query(params(query.values)).map_err(err)?;
    let mut hits = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let id: String = row.get(0).map_err(err)?;
        let turn: i64 = row.get(1).map_err(err)?;
        let sent_at: i64 = row.get(2).map_err(err)?;
        let corrupt = |detail: String| StoreError::Corrupt {
            location: format!("message {id} turn {turn}"),
            detail,
        };
        hits.push(crate::SearchHit {
            conversation: id.parse().map_err(|e| corrupt(format!("bad id: {e}")))?,
            turn: u64::try_from(turn).map_err(|_| corrupt("negative turn".into()))?,
            sent_at: colloquy_core::Timestamp::from_millis(
                u64::try_from(sent_at).map_err(|_| corrupt("negative time".into()))?,
            ),
        });
    }
    Ok(hits)
}

/// Conversations per status, counted on the status index.
pub(crate) fn count_by_status(conn: &Connection, site: &Site) -> Result<StatusCounts, StoreError> {
    let err = |e| site.err(e);
    let mut stmt = conn
        .prepare_cached("SELECT status, count(*) FROM conversations GROUP BY status")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    let mut out = StatusCounts::default();
    while let Some(row) = rows.next().map_err(err)? {
        let status: String = row.get(0).map_err(err)?;
        out.add_stored(&status, row.get(1).map_err(err)?)?;
    }
    Ok(out)
}

pub(crate) fn modules(conn: &Connection, site: &Site) -> Result<Vec<ModuleRecord>, StoreError> {
    let err = |e| site.err(e);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {MODULE_COLUMNS} FROM modules ORDER BY name"
        ))
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        out.push(decode_module(row)?);
    }
    Ok(out)
}
