//! What each page shows, as plain values for its template (askama escapes every one of
//! them when it renders), and the few conversions they share.

use std::{collections::HashMap, time::Duration};

use askama::Template;
use colloquy_runtime::{
    Conversation, Message, MessageId, MessageKind, ModuleName, StateChange, Status, Timestamp,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// A page that could not be shown.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) title: String,
    pub(crate) message: String,
    /// Offer a form to give a token.
    pub(crate) ask_token: bool,
}

/// The conversations list.
#[derive(Template)]
#[template(path = "list.html")]
pub(crate) struct ListPage {
    pub(crate) rows: Vec<ConversationRow>,
    pub(crate) filters: Filters,
    /// The statuses the filter offers.
    pub(crate) status_choices: Vec<Choice>,
    /// The start-time choices the filter offers.
    pub(crate) since_choices: Vec<Choice>,
    /// The cursor of the next page, if there is one.
    pub(crate) next: Option<String>,
    /// The health page's bar the list shows the conversations of, as words.
    pub(crate) bar: Option<String>,
    /// How many of the newest conversations the health page's bars cover.
    pub(crate) sample: usize,
    /// The participant the reader is, if the inspector has tokens.
    pub(crate) reader: Option<String>,
}

/// The search across conversations.
#[derive(Template)]
#[template(path = "search.html")]
pub(crate) struct SearchPage {
    pub(crate) query: String,
    pub(crate) hits: Vec<HitRow>,
    pub(crate) limit: usize,
    /// The participant the reader is, if the inspector has tokens.
    pub(crate) reader: Option<String>,
}

/// A turn found: where it is, and the transcript page that shows it.
pub(crate) struct HitRow {
    pub(crate) conversation: String,
    pub(crate) turn: u64,
    pub(crate) time: String,
    pub(crate) page: u64,
}

/// An option of a filter.
pub(crate) struct Choice {
    pub(crate) value: &'static str,
    pub(crate) label: &'static str,
    pub(crate) selected: bool,
}

impl Choice {
    /// The options `(value, label)`, the one equal to `current` selected.
    pub(crate) fn all(options: &[(&'static str, &'static str)], current: &str) -> Vec<Self> {
        options
            .iter()
            .map(|(value, label)| Self {
                value,
                label,
                selected: *value == current,
            })
            .collect()
    }
}

/// The filters a list was asked for, as given (empty: none).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) module: String,
    #[serde(default)]
    pub(crate) since: String,
    /// A bucket of the health page's turns per conversation ([`crate::sample::TURNS`]).
    #[serde(default)]
    pub(crate) turns: String,
    /// A bucket of the health page's durations ([`crate::sample::DURATIONS`]).
    #[serde(default)]
    pub(crate) lasted: String,
}

/// One conversation in the list: on the page, and in the list's live `conversation`
/// events.
#[derive(Serialize)]
pub(crate) struct ConversationRow {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) turns: u64,
    pub(crate) participants: String,
    pub(crate) started: String,
    pub(crate) last_activity: String,
}

impl ConversationRow {
    pub(crate) fn of(conversation: &Conversation) -> Self {
        Self {
            id: conversation.id().to_string(),
            status: conversation.status().kind().as_str(),
            reason: failure(conversation.status()),
            turns: conversation.turn_count(),
            participants: participants(conversation),
            started: time(conversation.started_at()),
            last_activity: time(conversation.last_activity()),
        }
    }
}

/// One conversation and (a page of) its transcript.
#[derive(Template)]
#[template(path = "conversation.html")]
pub(crate) struct ConversationPage {
    pub(crate) state: StateView,
    pub(crate) phase: &'static str,
    pub(crate) intent: &'static str,
    pub(crate) participants: String,
    pub(crate) initiator: String,
    pub(crate) started: String,
    pub(crate) ended: Option<String>,
    pub(crate) idle_timeout: String,
    pub(crate) max_turns: Option<u64>,
    pub(crate) metadata: String,
    pub(crate) rows: Vec<TurnRow>,
    /// The changes of the shared state, by the turn they came with.
    pub(crate) changes: Vec<ChangeRow>,
    /// The conversation's version when the page was read (the live stream sends the
    /// changes after it).
    pub(crate) version: u64,
    /// The first turn shown (transcripts are shown a page at a time).
    pub(crate) first: u64,
    /// The last turn shown.
    pub(crate) last: u64,
    /// The first turn of the previous and next pages, if any.
    pub(crate) previous_page: Option<u64>,
    pub(crate) next_page: Option<u64>,
    /// True when the page ends at the last stored turn: new turns are appended live.
    pub(crate) live: bool,
    /// The sequence diagram of the page's turns (SVG, every text escaped).
    pub(crate) timeline: String,
    /// The search within the conversation, as given (empty: none).
    pub(crate) query: String,
    /// How many turns matched the search, when there is one.
    pub(crate) matches: Option<usize>,
}

/// What changes as a conversation goes on: on the page, and in the live stream's
/// `status` events (its row, as the list shows it, and its context).
#[derive(Serialize)]
pub(crate) struct StateView {
    #[serde(flatten)]
    pub(crate) row: ConversationRow,
    pub(crate) context: String,
}

impl StateView {
    pub(crate) fn of(conversation: &Conversation) -> Self {
        Self {
            row: ConversationRow::of(conversation),
            context: pretty(&Value::Object(conversation.context().clone())),
        }
    }
}

/// One turn of a transcript: on the page, and in the live stream's `turn` events.
#[derive(Serialize)]
pub(crate) struct TurnRow {
    pub(crate) turn: u64,
    pub(crate) time: String,
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) kind: &'static str,
    /// The turn this one answers, when it is known.
    pub(crate) reply_to: Option<u64>,
    /// Indented JSON.
    pub(crate) content: String,
    /// For long content, shown folded: the content on one line, cut, and its size.
    pub(crate) folded: Option<String>,
    /// A control turn (handshake, transfer, end): marked on the page.
    pub(crate) control: bool,
    /// On a cluster, the hub that stored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hub: Option<String>,
}

impl TurnRow {
    /// `message` as a row; `turns` maps the ids of messages it may answer to their turns.
    pub(crate) fn of(message: &Message, turns: &HashMap<MessageId, u64>) -> Self {
        Self {
            turn: message.turn,
            time: time(message.sent_at),
            source: message.source.to_string(),
            target: message.target.to_string(),
            kind: message.kind.as_str(),
            reply_to: message.in_reply_to.and_then(|id| turns.get(&id).copied()),
            content: pretty(&message.content),
            folded: folded(&message.content),
            control: message.kind == MessageKind::Control,
            hub: None,
        }
    }

    /// The row, naming the hub that stored it when `hubs` (turn to hub) knows it.
    pub(crate) fn written_by(mut self, hubs: &HashMap<u64, String>) -> Self {
        self.hub = hubs.get(&self.turn).cloned();
        self
    }
}

/// The modules page.
#[derive(Template)]
#[template(path = "modules.html")]
pub(crate) struct ModulesPage {
    pub(crate) modules: Vec<ModuleRow>,
    /// True on a database several hubs share.
    pub(crate) cluster: bool,
}

/// One module.
pub(crate) struct ModuleRow {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) version: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) input_schema: String,
    pub(crate) output_schema: String,
    /// Where it runs: "this hub", other hubs' names, or nowhere now.
    pub(crate) hosts: Vec<String>,
    pub(crate) registered: Option<String>,
    /// The endpoint, for a remote A2A agent.
    pub(crate) remote: Option<String>,
}

/// The health and analytics page.
#[derive(Template)]
#[template(path = "health.html")]
pub(crate) struct HealthPage {
    pub(crate) healthy: bool,
    pub(crate) problems: Vec<String>,
    pub(crate) backend: &'static str,
    pub(crate) store_latency: Option<String>,
    pub(crate) stale: usize,
    pub(crate) hot: usize,
    pub(crate) in_flight: usize,
    pub(crate) timed_out_total: u64,
    pub(crate) hubs: Vec<HubRow>,
    /// For a reader with a token: the participant whose conversations the figures cover.
    pub(crate) scope: Option<String>,
    pub(crate) conversations: u64,
    pub(crate) average_turns: String,
    pub(crate) average_duration: String,
    pub(crate) by_status: Vec<Bar>,
    pub(crate) modules: Vec<ModuleActivityRow>,
    /// How many of the newest conversations the distributions cover.
    pub(crate) sample: usize,
    pub(crate) turns: Vec<Bar>,
    pub(crate) durations: Vec<Bar>,
    /// Where the time went: the exchanges of each module.
    pub(crate) exchanges: Vec<ExchangeRow>,
    /// What the exchanges cover: the period, and for a reader with a token its newest
    /// conversations.
    pub(crate) exchanges_cover: String,
    /// The period, as given (`24h` by default).
    pub(crate) since: String,
}

/// One module's exchanges: requests addressed to it, those without a reply, and its answer
/// times (the upper bound of the bucket of each percentile), with a bar of its p95.
pub(crate) struct ExchangeRow {
    pub(crate) name: String,
    pub(crate) requests: u64,
    pub(crate) unanswered: u64,
    pub(crate) p50: String,
    pub(crate) p95: String,
    pub(crate) p99: String,
    pub(crate) p95_bar: Bar,
}

impl ExchangeRow {
    /// The rows of `modules`, their p95 bars scaled to the slowest.
    pub(crate) fn all(modules: &[colloquy_runtime::ModuleExchanges]) -> Vec<Self> {
        let slowest = modules
            .iter()
            .filter_map(|m| m.percentile(0.95))
            .max()
            .unwrap_or(1);
        let bound = |ms: Option<u64>, m: &colloquy_runtime::ModuleExchanges| match ms {
            Some(ms) if ms < 1_000 => format!("< {ms} ms"),
            Some(ms) => format!("< {} s", ms as f64 / 1e3),
            None if m.buckets.iter().sum::<u64>() > 0 => "> 30 s".to_owned(),
            None => "-".to_owned(),
        };
        modules
            .iter()
            .map(|m| Self {
                name: m.module.to_string(),
                requests: m.requests,
                unanswered: m.unanswered,
                p50: bound(m.percentile(0.5), m),
                p95: bound(m.percentile(0.95), m),
                p99: bound(m.percentile(0.99), m),
                p95_bar: Bar::scaled("p95", m.percentile(0.95).unwrap_or(slowest), slowest),
            })
            .collect()
    }
}

/// A hub sharing the database.
pub(crate) struct HubRow {
    pub(crate) name: String,
    /// alive, silent, left or lost.
    pub(crate) state: &'static str,
    pub(crate) heartbeat: String,
    pub(crate) modules: usize,
}

/// One module's activity, with its bars.
pub(crate) struct ModuleActivityRow {
    pub(crate) name: String,
    pub(crate) initiated: Bar,
    pub(crate) participated: Bar,
}

/// A bar of a chart: its label, its value and its length in percent of the longest.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: u64,
    pub(crate) percent: u64,
    /// Where the bar's conversations are listed, if anywhere.
    pub(crate) link: Option<String>,
}

impl Bar {
    /// A bar of `value`, its length in percent of `max` (taken as at least 1).
    pub(crate) fn scaled(label: impl Into<String>, value: u64, max: u64) -> Self {
        Self {
            label: label.into(),
            value,
            percent: value.saturating_mul(100) / max.max(1),
            link: None,
        }
    }
}

/// Bars for `values`, scaled to the largest.
pub(crate) fn bars(values: Vec<(String, u64)>) -> Vec<Bar> {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0);
    values
        .into_iter()
        .map(|(label, value)| Bar::scaled(label, value, max))
        .collect()
}

/// A time as UTC, to the millisecond.
pub(crate) fn time(t: Timestamp) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(t.as_millis());
    humantime::format_rfc3339_millis(at)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_owned()
}

/// A duration as people read it (`1m 30s`), to the second, or to the millisecond under one.
pub(crate) fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// Indented JSON.
pub(crate) fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings).
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn failure(status: &Status) -> Option<String> {
    match status {
        Status::Failed { reason } => Some(reason.clone()),
        _ => None,
    }
}

fn participants(conversation: &Conversation) -> String {
    conversation
        .participants()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A change of the shared state: on the page (after the turn it came with), and in the
/// live stream's `change` events.
#[derive(Serialize)]
pub(crate) struct ChangeRow {
    pub(crate) version: u64,
    pub(crate) turn: u64,
    pub(crate) time: String,
    /// What changed, one line each (`context +found = 7`, `transfer beta -> gamma`, ...).
    pub(crate) items: Vec<String>,
    /// The context after the change, when it changed (indented JSON).
    pub(crate) context: Option<String>,
}

/// The shared state as a reader follows it from change to change.
#[derive(Default, Clone)]
pub(crate) struct SharedState {
    context: Map<String, Value>,
    participants: Vec<ModuleName>,
}

impl SharedState {
    /// `change` as a row, said against this state; then the state moves on.
    pub(crate) fn follow(&mut self, change: &StateChange) -> ChangeRow {
        let mut items = Vec::new();
        if let Some(status) = &change.status {
            items.push(match status {
                Status::Failed { reason } => format!("status failed: {reason}"),
                other => format!("status {}", other.kind().as_str()),
            });
        }
        if let Some(phase) = change.phase {
            items.push(format!("phase {}", phase.as_str()));
        }
        if let Some(participants) = &change.participants {
            let gone: Vec<_> = self
                .participants
                .iter()
                .filter(|p| !participants.contains(p))
                .collect();
            let new: Vec<_> = participants
                .iter()
                .filter(|p| !self.participants.contains(p))
                .collect();
            items.push(match (gone.as_slice(), new.as_slice()) {
                ([from], [to]) if !self.participants.is_empty() => {
                    format!("transfer {from} -> {to}")
                }
                _ => format!("participants {}", join(participants)),
            });
            self.participants = participants.clone();
        }
        let mut context = None;
        if let Some(after) = &change.context {
            for (key, value) in after {
                match self.context.get(key) {
                    None => items.push(format!("context +{key} = {}", short(value))),
                    Some(before) if before != value => {
                        items.push(format!("context ~{key} = {}", short(value)));
                    }
                    Some(_) => {}
                }
            }
            for key in self.context.keys().filter(|k| !after.contains_key(*k)) {
                items.push(format!("context -{key}"));
            }
            context = Some(pretty(&Value::Object(after.clone())));
            self.context = after.clone();
        }
        ChangeRow {
            version: change.version,
            turn: change.turn,
            time: time(change.at),
            items,
            context,
        }
    }
}

fn join(names: &[ModuleName]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Content longer than a glance (over 8 lines or 400 characters indented) is shown folded
/// behind this line: the value on one line, cut, and its size.
fn folded(value: &Value) -> Option<String> {
    let compact = value.to_string();
    let long = compact.len() > 400 || pretty(value).lines().nth(8).is_some();
    long.then(|| {
        let size = match compact.len() {
            n if n < 1_000 => format!("{n} B"),
            n if n < 1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
            n => format!("{:.1} MB", n as f64 / 1e6),
        };
        format!("{} · {size}", short(value))
    })
}

/// A value on one line, cut to 80 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
