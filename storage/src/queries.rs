//! The reads both SQL backends run with the same shape, built once: a page of
//! conversations (filters, the keyset cursor, one extra row that tells whether another page
//! follows), a range of a conversation's messages, the time range of analytics, and the
//! assembly of analytics from their rows. Statements are put together from fixed
//! fragments; every value is a parameter ([`QueryValue`]), which each backend binds with
//! its driver. Where the SQL of the two differs, the backend's [`Dialect`] says how.

use colloquy_core::{ConversationId, ModuleName, StatusKind};
use uuid::Uuid;

use crate::{
    rows::{CONVERSATION_COLUMNS, MESSAGE_COLUMNS},
    Analytics, ListFilter, MessageRange, ModuleActivity, StoreError, TimeRange,
};

/// A parameter of a shared query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum QueryValue {
    /// A 64-bit integer (times in milliseconds, turns, limits).
    Int(i64),
    /// Text (a status word, a module name).
    Text(String),
    /// An id (SQLite binds its text, PostgreSQL a `uuid`).
    Id(Uuid),
    /// A list of names (PostgreSQL's `text[]`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Names(Vec<String>),
}

/// How a backend's SQL differs where the shared queries meet it.
pub(crate) trait Dialect {
    /// Where conversations are read from, with every column of [`CONVERSATION_COLUMNS`]
    /// (SQLite keeps the context in a table of its own and joins it back in a view).
    const CONVERSATIONS: &'static str = "conversations";

    /// The placeholder of the `n`th parameter, from 1 (`?1`, `$1`).
    fn placeholder(n: usize) -> String;

    /// The condition "`module` takes part in the conversation", binding what it needs.
    fn has_participant(query: &mut Query, module: &ModuleName) -> String;

    /// The keyset condition "before the cursor in (start, id) order", on the placeholders
    /// of its start time and id, in the form the backend's planner walks its index with.
    fn before_cursor(started_at: &str, id: &str) -> String {
        format!("(started_at < {started_at} OR (started_at = {started_at} AND id < {id}))")
    }
}

/// A statement and its parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// The SQL, with the dialect's placeholders.
    pub(crate) sql: String,
    /// The parameters, the first one numbered 1.
    pub(crate) values: Vec<QueryValue>,
}

impl Query {
    /// Adds `value` as the next parameter; its placeholder.
    pub(crate) fn bind<D: Dialect>(&mut self, value: QueryValue) -> String {
        self.values.push(value);
        D::placeholder(self.values.len())
    }

    /// Appends `AND column >= from AND column < until` for the bounds `range` has.
    pub(crate) fn time_range<D: Dialect>(&mut self, column: &str, range: TimeRange) {
        if let Some(from) = range.from {
            let from = self.bind::<D>(QueryValue::Int(from.as_millis_i64()));
            self.sql.push_str(&format!(" AND {column} >= {from}"));
        }
        if let Some(until) = range.until {
            let until = self.bind::<D>(QueryValue::Int(until.as_millis_i64()));
            self.sql.push_str(&format!(" AND {column} < {until}"));
        }
    }
}

fn int(n: u64) -> QueryValue {
    QueryValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// One page of conversations for `filter`, newest first, with one row more than the page
/// holds (`ConversationPage::from_candidates` tells from it whether another follows).
pub(crate) fn list<D: Dialect>(filter: &ListFilter) -> Query {
    let mut q = Query {
        sql: format!(
            "SELECT {CONVERSATION_COLUMNS} FROM {} WHERE 1 = 1",
            D::CONVERSATIONS
        ),
        values: Vec::new(),
    };
    if let Some(status) = filter.status {
        let status = q.bind::<D>(QueryValue::Text(status.as_str().to_owned()));
        q.sql.push_str(&format!(" AND status = {status}"));
    }
    if let Some(module) = &filter.participant {
        let condition = D::has_participant(&mut q, module);
        q.sql.push_str(&format!(" AND {condition}"));
    }
    q.time_range::<D>("started_at", filter.started);
    if let Some(cursor) = filter.after {
        // Keyset: strictly before the cursor in (start, id) order.
        let t = q.bind::<D>(QueryValue::Int(cursor.started_at.as_millis_i64()));
        let id = q.bind::<D>(QueryValue::Id(cursor.id.as_uuid()));
        q.sql
            .push_str(&format!(" AND {}", D::before_cursor(&t, &id)));
    }
    let limit = q.bind::<D>(int(filter.effective_limit() as u64 + 1));
    q.sql
        .push_str(&format!(" ORDER BY started_at DESC, id DESC LIMIT {limit}"));
    q
}

/// The messages of conversation `id` in `range`, in turn order.
pub(crate) fn messages<D: Dialect>(id: ConversationId, range: MessageRange) -> Query {
    let mut q = Query::default();
    let conversation = q.bind::<D>(QueryValue::Id(id.as_uuid()));
    let base =
        format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = {conversation}");
    q.sql = match range {
        MessageRange::All => format!("{base} ORDER BY turn"),
        MessageRange::After(turn) => {
            let after = q.bind::<D>(int(turn));
            format!("{base} AND turn > {after} ORDER BY turn")
        }
        MessageRange::Last(n) => {
            let n = q.bind::<D>(int(n));
            format!("SELECT * FROM ({base} ORDER BY turn DESC LIMIT {n}) AS last ORDER BY turn")
        }
        MessageRange::Turns { first, last } => {
            let first = q.bind::<D>(int(first));
            let last = q.bind::<D>(int(last));
            format!("{base} AND turn BETWEEN {first} AND {last} ORDER BY turn")
        }
    };
    q
}

/// Analytics from their totals row: conversations, those active, paused, completed, timed
/// out and failed, turns, and the summed duration in milliseconds.
pub(crate) fn analytics_totals(totals: [i64; 8]) -> Analytics {
    let [conversations, active, paused, completed, timed_out, failed, turns, duration] =
        totals.map(|n| u64::try_from(n).unwrap_or(0));
    let mut out = Analytics {
        conversations,
        total_turns: turns,
        total_duration_ms: duration,
        ..Analytics::default()
    };
    out.by_status.add(StatusKind::Active, active);
    out.by_status.add(StatusKind::Paused, paused);
    out.by_status.add(StatusKind::Completed, completed);
    out.by_status.add(StatusKind::TimedOut, timed_out);
    out.by_status.add(StatusKind::Failed, failed);
    out
}

/// One row of the per-module analytics: the module's name, the conversations it started and
/// those it took part in.
pub(crate) fn module_activity(
    name: &str,
    initiated: i64,
    participated: i64,
) -> Result<ModuleActivity, StoreError> {
    let module = name
        .parse()
        .map_err(|e: colloquy_core::CoreError| StoreError::Corrupt {
            location: format!("participants of module {name:?}"),
            detail: e.to_string(),
        })?;
    Ok(ModuleActivity {
        module,
        initiated: u64::try_from(initiated).unwrap_or(0),
        participated: u64::try_from(participated).unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ListCursor;
    use colloquy_core::Timestamp;

    struct Numbered;
    impl Dialect for Numbered {
        fn placeholder(n: usize) -> String {
            format!("${n}")
        }
        fn has_participant(query: &mut Query, module: &ModuleName) -> String {
            let names = query.bind::<Self>(QueryValue::Names(vec![module.as_str().into()]));
            format!("participants @> {names}")
        }
    }

    #[test]
    fn a_list_query_binds_every_value_in_the_order_of_its_placeholders() {
        let id = ConversationId::from_parts(Timestamp::from_millis(5), [1; 10]);
        let filter = ListFilter::new()
            .status(StatusKind::Active)
            .participant("a".parse().unwrap())
            .started(TimeRange::since(Timestamp::from_millis(1)))
            .after(ListCursor {
                started_at: Timestamp::from_millis(9),
                id,
            })
            .limit(10);
        let q = list::<Numbered>(&filter);
        assert!(
            q.sql.ends_with(
                "WHERE 1 = 1 AND status = $1 AND participants @> $2 AND started_at >= $3 \
                 AND (started_at < $4 OR (started_at = $4 AND id < $5)) \
                 ORDER BY started_at DESC, id DESC LIMIT $6"
            ),
            "{}",
            q.sql
        );
        assert_eq!(
            q.values,
            [
                QueryValue::Text("active".into()),
                QueryValue::Names(vec!["a".into()]),
                QueryValue::Int(1),
                QueryValue::Int(9),
                QueryValue::Id(id.as_uuid()),
                QueryValue::Int(11),
            ]
        );
    }

    #[test]
    fn a_message_range_binds_the_conversation_first() {
        let id = ConversationId::from_parts(Timestamp::from_millis(5), [1; 10]);
        let q = messages::<Numbered>(id, MessageRange::Turns { first: 2, last: 4 });
        assert!(q
            .sql
            .ends_with("conversation_id = $1 AND turn BETWEEN $2 AND $3 ORDER BY turn"));
        assert_eq!(
            q.values,
            [
                QueryValue::Id(id.as_uuid()),
                QueryValue::Int(2),
                QueryValue::Int(4)
            ]
        );
    }
}
