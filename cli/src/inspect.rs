//! The inspection and maintenance commands. They open an existing database only (`db.rs`);
//! none of them creates one. Those that only read also work on a file that cannot be
//! written.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Result};
use colloquy_core::{
    Conversation, ConversationId, ModuleName, StateChange, Status, StatusKind, Timestamp,
};
use colloquy_storage::{ListFilter, MessageRange, TimeRange};
use serde_json::{json, Value};

use crate::{
    args::ExportFormat,
    db::Store,
    output::{duration, summary, table, time, transcript},
    Out,
};

/// The current wall-clock time.
pub(crate) fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, colloquy_core::duration_millis);
    Timestamp::from_millis(millis)
}

fn since(window: Option<Duration>) -> TimeRange {
    window.map_or_else(TimeRange::all, |w| {
        TimeRange::since(now().saturating_sub(w))
    })
}

/// Every conversation matching `filter`, following the cursor through all pages.
async fn all(store: &Store, mut filter: ListFilter) -> Result<Vec<Conversation>> {
    filter.limit = colloquy_storage::MAX_PAGE;
    let mut out = Vec::new();
    loop {
        let page = store.list(&filter).await?;
        out.extend(page.conversations);
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => return Ok(out),
        }
    }
}

fn names(modules: &[ModuleName]) -> String {
    modules
        .iter()
        .map(ModuleName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn conversations(
    out: &mut Out,
    store: &Store,
    status: Option<StatusKind>,
    module: Option<ModuleName>,
    window: Option<Duration>,
    limit: usize,
) -> Result<()> {
    let mut filter = ListFilter::new().limit(limit).started(since(window));
    if let Some(status) = status {
        filter = filter.status(status);
    }
    if let Some(module) = module {
        filter = filter.participant(module);
    }
    let page = store.list(&filter).await?;
    if out.json {
        return out.json_value(&json!(page.conversations));
    }
    let rows: Vec<Vec<String>> = page
        .conversations
        .iter()
        .map(|c| {
            vec![
                c.id().to_string(),
                c.status().kind().to_string(),
                c.phase().to_string(),
                c.turn_count().to_string(),
                time(c.started_at()),
                names(c.participants()),
            ]
        })
        .collect();
    out.text(&table(
        &["id", "status", "phase", "turns", "started", "participants"],
        &rows,
    ))?;
    if page.next.is_some() {
        out.text(&format!(
            "(more than {limit}; raise --limit or narrow the filters)\n"
        ))?;
    }
    Ok(())
}

/// The conversation `text` names: a whole id, or a unique start or end of one (lists print
/// the last 8 characters; the command line checked its shape). An ambiguous part lists
/// the candidates.
pub(crate) async fn resolve(store: &Store, text: &str) -> Result<ConversationId> {
    if let Ok(id) = text.parse::<ConversationId>() {
        return Ok(id);
    }
    let part = text.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut filter = ListFilter::new().limit(colloquy_storage::MAX_PAGE);
    loop {
        let page = store.list(&filter).await?;
        found.extend(
            page.conversations
                .iter()
                .map(Conversation::id)
                .filter(|id| {
                    let id = id.to_string();
                    id.starts_with(&part) || id.ends_with(&part)
                }),
        );
        match page.next {
            // Enough to show that it is ambiguous.
            Some(_) if found.len() > 10 => break,
            Some(cursor) => filter = filter.after(cursor),
            None => break,
        }
    }
    match found.as_slice() {
        [id] => Ok(*id),
        [] => bail!(
            "no conversation in {} has an id that starts or ends with {text}; list them with `colloquy conversations`",
            store.describe()
        ),
        many => bail!(
            "{text} is part of {} conversation ids ({}{}); give more of the id",
            if many.len() > 10 { "more than 10".to_owned() } else { many.len().to_string() },
            many.iter().take(10).map(ToString::to_string).collect::<Vec<_>>().join(", "),
            if many.len() > 10 { ", ..." } else { "" }
        ),
    }
}

fn unknown(store: &Store, id: ConversationId) -> anyhow::Error {
    anyhow::anyhow!(
        "conversation {id} is not in {}; list them with `colloquy conversations`",
        store.describe()
    )
}

/// When and why `c` ended, in words (`None` while it has not).
pub(crate) fn why_ended(c: &Conversation) -> Option<String> {
    let at = time(c.ended_at()?);
    Some(match c.status() {
        Status::Completed => format!("completed at {at}"),
        Status::Failed { reason } => format!("failed at {at}: {reason}"),
        Status::TimedOut => format!(
            "timed out at {at}: idle for longer than its idle timeout of {}",
            duration(c.idle_timeout())
        ),
        other => format!("{other} at {at}"),
    })
}

/// What each change of the shared state did, in words, with the turn it came with.
fn described_changes(changes: &[StateChange]) -> Vec<(u64, Timestamp, String)> {
    let mut participants: Option<&[ModuleName]> = None;
    changes
        .iter()
        .map(|change| {
            let mut parts = Vec::new();
            if let Some(now) = &change.participants {
                parts.push(match participants {
                    None => format!("opened between {}", names(now)),
                    Some(before) => format!("transfer: {} -> {}", names(before), names(now)),
                });
                participants = Some(now);
            }
            if let Some(phase) = change.phase {
                parts.push(format!("phase {phase}"));
            }
            if let Some(status) = &change.status {
                parts.push(format!("status {status}"));
            }
            if let Some(context) = &change.context {
                parts.push(format!(
                    "context {}",
                    summary(&Value::Object(context.clone()), 80)
                ));
            }
            (change.turn, change.at, parts.join("; "))
        })
        .collect()
}

/// Everything stored of one conversation, as `show --json` and `export --audit` give it:
/// its state, messages, state changes and why it ended.
struct Record {
    conversation: Conversation,
    messages: Vec<colloquy_core::Message>,
    changes: Vec<StateChange>,
    ended: Option<String>,
}

impl Record {
    /// Reads it; `None` for a conversation the store does not hold.
    async fn read(store: &Store, id: ConversationId) -> Result<Option<Self>> {
        let Some(conversation) = store.conversation(id).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            messages: store.messages(id, MessageRange::All).await?,
            changes: store.state_changes(id).await?,
            ended: why_ended(&conversation),
            conversation,
        }))
    }

    fn json(&self) -> Value {
        json!({
            "conversation": self.conversation,
            "messages": self.messages,
            "state_changes": self.changes,
            "ended": self.ended,
        })
    }
}

pub(crate) async fn show(out: &mut Out, store: &Store, id: ConversationId) -> Result<()> {
    let record = Record::read(store, id)
        .await?
        .ok_or_else(|| unknown(store, id))?;
    if out.json {
        return out.json_value(&record.json());
    }
    let Record {
        conversation,
        messages,
        changes,
        ended,
    } = record;
    let c = &conversation;
    let mut head = format!(
        "conversation {}\nstatus        {}\nphase         {}\nintent        {}\nparticipants  {}\nturns         {}\nstarted       {}\nlast activity {}\n",
        c.id(),
        c.status(),
        c.phase(),
        c.intent(),
        names(c.participants()),
        c.turn_count(),
        time(c.started_at()),
        time(c.last_activity()),
    );
    if let Some(ended) = &ended {
        head.push_str(&format!("ended         {ended}\n"));
    }
    if !c.context().is_empty() {
        head.push_str(&format!(
            "context       {}\n",
            summary(&Value::Object(c.context().clone()), 100)
        ));
    }
    head.push('\n');
    out.text(&head)?;
    out.text(&transcript(&messages, 60))?;
    let rows: Vec<Vec<String>> = described_changes(&changes)
        .into_iter()
        .map(|(turn, at, what)| vec![turn.to_string(), time(at), what])
        .collect();
    if !rows.is_empty() {
        out.text("\n")?;
        out.text(&table(&["after turn", "time", "state change"], &rows))?;
    }
    Ok(())
}

/// `colloquy end`: ends one conversation through a router, as a hub would.
pub(crate) async fn end(
    out: &mut Out,
    store: &Store,
    id: ConversationId,
    reason: Option<String>,
) -> Result<()> {
    use colloquy_runtime::{HubError, RouteError};
    let ended = match colloquy_runtime::end_conversation(store.shared(), id, reason).await {
        Err(HubError::Route(RouteError::UnknownConversation { .. })) => {
            return Err(unknown(store, id))
        }
        ended => ended?,
    };
    let why = why_ended(&ended).unwrap_or_default();
    if out.json {
        return out.json_value(&json!({ "conversation": id.to_string(), "status": ended.status().kind().as_str(), "ended": why }));
    }
    out.text(&format!("conversation {id} {why}\n"))
}

/// `colloquy reap`: one pass of a hub's reaper over the whole database.
pub(crate) async fn reap(out: &mut Out, store: &Store) -> Result<()> {
    let report = colloquy_runtime::reap_stored(store.shared()).await?;
    if out.json {
        return out
            .json_value(&json!({ "checked": report.scanned, "timed_out": report.timed_out }));
    }
    out.text(&format!(
        "timed out {} of {} active conversation(s) idle past their idle timeout\n",
        report.timed_out, report.scanned
    ))
}

pub(crate) async fn analytics(
    out: &mut Out,
    store: &Store,
    window: Option<Duration>,
) -> Result<()> {
    let a = store.analytics(since(window)).await?;
    if out.json {
        let mut value = json!(a);
        value["average_turns"] = json!(a.average_turns());
        value["average_duration_ms"] = json!(a.average_duration().as_millis() as u64);
        return out.json_value(&value);
    }
    out.text(&analytics_text(&a))
}

/// The analytics as aligned text (shared with the demo's report).
pub(crate) fn analytics_text(a: &colloquy_storage::Analytics) -> String {
    let s = &a.by_status;
    let mut text = table(
        &[
            "conversations",
            "active",
            "paused",
            "completed",
            "timed out",
            "failed",
            "avg turns",
            "avg duration",
        ],
        &[vec![
            a.conversations.to_string(),
            s.active.to_string(),
            s.paused.to_string(),
            s.completed.to_string(),
            s.timed_out.to_string(),
            s.failed.to_string(),
            format!("{:.1}", a.average_turns()),
            duration(a.average_duration()),
        ]],
    );
    text.push('\n');
    let rows: Vec<Vec<String>> = a
        .modules
        .iter()
        .map(|m| {
            vec![
                m.module.to_string(),
                m.initiated.to_string(),
                m.participated.to_string(),
            ]
        })
        .collect();
    text.push_str(&table(&["module", "initiated", "participated"], &rows));
    text
}

pub(crate) async fn prune(
    out: &mut Out,
    store: &Store,
    older_than: Duration,
    dry_run: bool,
) -> Result<()> {
    let cutoff = now().saturating_sub(older_than);
    let count = if dry_run {
        let mut n = 0;
        for status in [
            StatusKind::Completed,
            StatusKind::TimedOut,
            StatusKind::Failed,
        ] {
            let ended = all(store, ListFilter::new().status(status)).await?;
            n += ended
                .iter()
                .filter(|c| c.ended_at().is_some_and(|t| t < cutoff))
                .count() as u64;
        }
        n
    } else {
        store.prune(cutoff).await?
    };
    if out.json {
        return out.json_value(
            &json!({ "dry_run": dry_run, "pruned": count, "ended_before": time(cutoff) }),
        );
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    out.text(&format!(
        "{verb} {count} conversation(s) that ended before {}\n",
        time(cutoff)
    ))
}

pub(crate) async fn export(
    out: &mut Out,
    store: &Store,
    id: Option<ConversationId>,
    format: ExportFormat,
    audit: bool,
) -> Result<()> {
    let ids: Vec<ConversationId> = match id {
        Some(id) => {
            if store.conversation(id).await?.is_none() {
                return Err(unknown(store, id));
            }
            vec![id]
        }
        // Oldest first, so an export reads in the order things happened.
        None => all(store, ListFilter::new())
            .await?
            .iter()
            .rev()
            .map(Conversation::id)
            .collect(),
    };
    let mut first = true;
    if format == ExportFormat::Json {
        out.raw(b"[")?;
    }
    let mut item = |out: &mut Out, line: String| -> Result<()> {
        match format {
            ExportFormat::Jsonl => {
                out.raw(line.as_bytes())?;
                out.raw(b"\n")?;
            }
            ExportFormat::Json => {
                if !first {
                    out.raw(b",")?;
                }
                out.raw(b"\n  ")?;
                out.raw(line.as_bytes())?;
            }
        }
        first = false;
        Ok(())
    };
    for id in ids {
        if audit {
            // A conversation pruned since it was listed is left out.
            if let Some(record) = Record::read(store, id).await? {
                item(out, serde_json::to_string(&record.json())?)?;
            }
            continue;
        }
        for message in store.messages(id, MessageRange::All).await? {
            item(out, serde_json::to_string(&message)?)?;
        }
    }
    if format == ExportFormat::Json {
        out.raw(if first { b"]\n" } else { b"\n]\n" })?;
    }
    out.flush()
}

impl Out {
    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes)?;
        Ok(())
    }
}
