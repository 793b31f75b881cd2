//! The pages: each reads the store through the hub's reader, checks what the reader may
//! see, and renders its template.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    Extension,
};
use colloquy_runtime::{
    Analytics, AnalyticsTally, Conversation, ConversationId, ListCursor, ListFilter, MessageRange,
    ModuleName, StatusKind, TimeRange,
};

use crate::{
    auth::Reader,
    view::{
        bars, distribution, duration, pretty, time, Bar, Choice, ConversationPage, ConversationRow,
        Filters, HealthPage, HubRow, ListPage, ModuleActivityRow, ModuleRow, ModulesPage,
        SharedState, StateView, TurnRow,
    },
    InspectorError, Shared,
};

/// Conversations per page of the list.
const LIST_PAGE: usize = 50;
/// For a reader with a token, how many of its newest conversations the exchange times
/// are counted over (their messages are read one conversation at a time).
const SCOPED_EXCHANGES: usize = 100;
/// Turns per page of a transcript.
const TRANSCRIPT_PAGE: u64 = 500;
/// How many of the newest conversations the health page's distributions cover.
const SAMPLE: usize = 1_000;

const STATUSES: &[(&str, &str)] = &[
    ("active", "active"),
    ("paused", "paused"),
    ("completed", "completed"),
    ("timed_out", "timed out"),
    ("failed", "failed"),
];
const PERIODS: &[(&str, &str)] = &[
    ("15m", "last 15 minutes"),
    ("1h", "last hour"),
    ("24h", "last day"),
    ("7d", "last week"),
];

fn render(page: &impl Template) -> Result<Response, InspectorError> {
    Ok(Html(page.render()?).into_response())
}

fn bad(reason: String) -> InspectorError {
    InspectorError::BadRequest { reason }
}

/// The health page's query: the period of the exchange times (`15m`, `1h`, `7d`; a day
/// when empty).
#[derive(serde::Deserialize)]
pub(crate) struct HealthQuery {
    #[serde(default)]
    since: String,
}

/// The list's query: the filters and the cursor of the page.
#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    #[serde(flatten)]
    filters: Filters,
    #[serde(default)]
    after: String,
}

/// `/inspect`: conversations, newest first, a page at a time.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Query(query): Query<ListQuery>,
) -> Result<Response, InspectorError> {
    let filters = query.filters;
    let mut filter = ListFilter::new().limit(LIST_PAGE);
    if !filters.status.is_empty() {
        let status = StatusKind::from_str(&filters.status)
            .map_err(|e| bad(format!("status {:?}: {e}", filters.status)))?;
        filter = filter.status(status);
    }
    let module = if filters.module.is_empty() {
        None
    } else {
        Some(
            ModuleName::from_str(&filters.module)
                .map_err(|e| bad(format!("module {:?}: {e}", filters.module)))?,
        )
    };
    // The store narrows to the reader's conversations; a module filter on top of that is
    // applied to the page.
    match (reader.participant(), &module) {
        (Some(me), _) => filter = filter.participant(me.clone()),
        (None, Some(module)) => filter = filter.participant(module.clone()),
        (None, None) => {}
    }
    if !filters.since.is_empty() {
        let period = humantime::parse_duration(&filters.since)
            .map_err(|e| bad(format!("since {:?}: {e}; use 15m, 1h, 7d", filters.since)))?;
        let now = shared.hub.clock().now();
        filter = filter.started(TimeRange::since(now.saturating_sub(period)));
    }
    if !query.after.is_empty() {
        let cursor = ListCursor::from_str(&query.after).map_err(|e| bad(e.to_string()))?;
        filter = filter.after(cursor);
    }
    let page = shared.hub.reader().list(&filter).await?;
    let rows = page
        .conversations
        .iter()
        .filter(|c| {
            module
                .as_ref()
                .is_none_or(|module| c.participants().contains(module))
        })
        .map(ConversationRow::of)
        .collect();
    render(&ListPage {
        rows,
        status_choices: Choice::all(STATUSES, &filters.status),
        since_choices: Choice::all(PERIODS, &filters.since),
        filters,
        next: page.next.map(|cursor| cursor.to_string()),
        reader: reader.participant().map(ToString::to_string),
    })
}

/// The search across conversations asked for.
#[derive(serde::Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Turns a search across conversations shows.
const SEARCH_HITS: usize = 100;

/// `/inspect/search`: turns found across the reader's conversations by a text of their
/// content, newest first.
pub(crate) async fn search(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, InspectorError> {
    let text = query.q.trim().to_owned();
    let mut search = colloquy_runtime::TextSearch::new(text.clone()).limit(SEARCH_HITS);
    if let Some(me) = reader.participant() {
        search = search.participant(me.clone());
    }
    let hits = if text.is_empty() {
        Vec::new()
    } else {
        shared.hub.reader().search(&search).await?
    };
    render(&crate::view::SearchPage {
        query: text,
        hits: hits
            .iter()
            .map(|h| crate::view::HitRow {
                conversation: h.conversation.to_string(),
                turn: h.turn,
                time: time(h.sent_at),
                page: h.turn.saturating_sub(1) / TRANSCRIPT_PAGE * TRANSCRIPT_PAGE + 1,
            })
            .collect(),
        limit: SEARCH_HITS,
        reader: reader.participant().map(ToString::to_string),
    })
}

/// The transcript page asked for.
#[derive(serde::Deserialize)]
pub(crate) struct TranscriptQuery {
    from: Option<u64>,
    /// Turns whose content, sender or receiver hold this text (any case).
    #[serde(default)]
    q: String,
}

/// The most turns a search within one conversation reads.
const SEARCHED: u64 = 10_000;

/// Reads conversation `id` if the reader may see it.
pub(crate) async fn visible(
    shared: &Shared,
    reader: &Reader,
    id: &str,
) -> Result<Conversation, InspectorError> {
    let not_found = || InspectorError::NotFound { id: id.to_owned() };
    let parsed = ConversationId::from_str(id).map_err(|_| not_found())?;
    match shared.hub.reader().conversation(parsed).await? {
        Some(conversation) if reader.may_see(&conversation) => Ok(conversation),
        _ => Err(not_found()),
    }
}

/// `/inspect/conversations/{id}`: one conversation and a page of its transcript.
pub(crate) async fn conversation(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Path(id): Path<String>,
    Query(query): Query<TranscriptQuery>,
) -> Result<Response, InspectorError> {
    let conversation = visible(&shared, &reader, &id).await?;
    let total = conversation.turn_count();
    let search = query_text(&query.q);
    let (first, last) = match &search {
        // A search reads the whole conversation (up to SEARCHED turns).
        Some(_) => (1, total.min(SEARCHED)),
        None => {
            let first = query.from.unwrap_or(1).clamp(1, total.max(1));
            (first, first.saturating_add(TRANSCRIPT_PAGE - 1).min(total))
        }
    };
    let (messages, changes) = turns_and_changes(&shared, &conversation, first, last).await?;
    let turns: HashMap<_, _> = messages.iter().map(|m| (m.id, m.turn)).collect();
    let shown: Vec<&colloquy_runtime::Message> = messages
        .iter()
        .filter(|m| m.turn >= first)
        .filter(|m| search.as_ref().is_none_or(|q| matches(m, q)))
        .collect();
    let matches_found = search.as_ref().map(|_| shown.len());
    let rows = shown.iter().map(|m| TurnRow::of(m, &turns)).collect();
    let page_messages: Vec<colloquy_runtime::Message> = messages
        .iter()
        .filter(|m| m.turn >= first)
        .cloned()
        .collect();
    let timeline = timeline_of(&conversation, &page_messages, &changes);
    let live = last == total && search.is_none();
    render(&ConversationPage {
        state: StateView::of(&conversation),
        phase: conversation.phase().as_str(),
        intent: conversation.intent().as_str(),
        participants: conversation
            .participants()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        initiator: conversation.initiator().to_string(),
        started: time(conversation.started_at()),
        ended: conversation.ended_at().map(time),
        idle_timeout: duration(conversation.idle_timeout()),
        max_turns: conversation.max_turns(),
        metadata: pretty(&serde_json::Value::Object(conversation.metadata().clone())),
        rows,
        changes,
        version: conversation.version(),
        first,
        last,
        previous_page: (search.is_none() && first > 1)
            .then(|| first.saturating_sub(TRANSCRIPT_PAGE).max(1)),
        next_page: (search.is_none() && last < total).then_some(last + 1),
        live,
        timeline,
        query: query.q.trim().to_owned(),
        matches: matches_found,
    })
}

/// `/inspect/conversations/{id}/timeline`: the sequence diagram of the last page of turns
/// alone, for the live page to redraw it as turns arrive.
pub(crate) async fn timeline(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Path(id): Path<String>,
) -> Result<Response, InspectorError> {
    let conversation = visible(&shared, &reader, &id).await?;
    let total = conversation.turn_count();
    let first = total.saturating_sub(TRANSCRIPT_PAGE - 1).max(1);
    let (mut messages, changes) = turns_and_changes(&shared, &conversation, first, total).await?;
    messages.retain(|m| m.turn >= first);
    let svg = timeline_of(&conversation, &messages, &changes);
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        svg,
    )
        .into_response())
}

/// `/inspect/conversations/{id}/turns/{turn}`: one stored turn as JSON, to copy or save.
pub(crate) async fn turn_json(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Path((id, turn)): Path<(String, u64)>,
) -> Result<Response, InspectorError> {
    let conversation = visible(&shared, &reader, &id).await?;
    let message = shared
        .hub
        .reader()
        .messages(
            conversation.id(),
            MessageRange::Turns {
                first: turn,
                last: turn,
            },
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| InspectorError::NotFound {
            id: format!("{id} turn {turn}"),
        })?;
    Ok(axum::Json(message).into_response())
}

/// Turns `first..=last` of `conversation` (and the one before, so that a reply at the top
/// still names its request), and the shared state's history said change by change, those
/// of these turns kept (with the creation's and the handshake's, at turn 0, from the first).
async fn turns_and_changes(
    shared: &Shared,
    conversation: &Conversation,
    first: u64,
    last: u64,
) -> Result<(Vec<colloquy_runtime::Message>, Vec<crate::view::ChangeRow>), InspectorError> {
    let reader = shared.hub.reader();
    let messages = if conversation.turn_count() == 0 {
        Vec::new()
    } else {
        let range = MessageRange::Turns {
            first: first.saturating_sub(1).max(1),
            last,
        };
        reader.messages(conversation.id(), range).await?
    };
    let mut shared_state = SharedState::default();
    let lowest = if first == 1 { 0 } else { first };
    let changes = reader
        .state_changes(conversation.id())
        .await?
        .iter()
        .map(|change| shared_state.follow(change))
        .filter(|row| (lowest..=last).contains(&row.turn))
        .collect();
    Ok((messages, changes))
}

/// The diagram of `messages` of `conversation`, its changes marked.
fn timeline_of(
    conversation: &Conversation,
    messages: &[colloquy_runtime::Message],
    changes: &[crate::view::ChangeRow],
) -> String {
    let marks: Vec<(u64, String)> = changes
        .iter()
        .map(|c| (c.turn, c.items.join("; ")))
        .collect();
    crate::timeline::render(
        &crate::timeline::Shape {
            participants: conversation.participants(),
            changes: &marks,
            in_flight: conversation
                .busy_until()
                .is_some()
                .then(|| conversation.turn_count()),
        },
        messages,
    )
}

/// The search text, trimmed; `None` when there is none.
fn query_text(q: &str) -> Option<String> {
    let q = q.trim();
    (!q.is_empty()).then(|| q.to_lowercase())
}

/// Whether `message` holds `needle` (lowercase) in its content, sender or receiver.
fn matches(message: &colloquy_runtime::Message, needle: &str) -> bool {
    message.source.as_str().to_lowercase().contains(needle)
        || message.target.as_str().to_lowercase().contains(needle)
        || message.content.to_string().to_lowercase().contains(needle)
}

/// `/inspect/modules`: the modules this hub reaches and those the store has on record.
pub(crate) async fn modules(
    State(shared): State<Arc<Shared>>,
    Extension(_reader): Extension<Reader>,
) -> Result<Response, InspectorError> {
    let hub = &shared.hub;
    let local: Vec<ModuleName> = hub.modules().iter().map(|m| m.name.clone()).collect();
    let members = match hub.members().await {
        Some(members) => Some(members.map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    // Callers (the participants that network clients speak as) are not modules: their
    // names are the callers' own business, and nobody can address them.
    let mut rows: BTreeMap<String, ModuleRow> = BTreeMap::new();
    for info in hub
        .reachable_modules()
        .into_iter()
        .filter(|m| !m.is_caller())
    {
        rows.insert(info.name.to_string(), module_row(&info));
    }
    let recorded = hub.reader().modules().await?;
    for record in recorded.into_iter().filter(|r| !r.info.is_caller()) {
        rows.entry(record.info.name.to_string())
            .or_insert_with(|| module_row(&record.info))
            .registered = Some(time(record.registered_at));
    }
    for (name, row) in &mut rows {
        row.remote = shared
            .options
            .remote
            .iter()
            .find(|(module, _)| module.as_str() == name)
            .map(|(_, endpoint)| endpoint.clone());
        if local.iter().any(|m| m.as_str() == name) {
            row.hosts.push("this hub".to_owned());
        }
        for member in members.iter().flatten() {
            let hosts = member.alive
                && Some(member.member) != hub.member()
                && member.modules.iter().any(|m| m.name.as_str() == name);
            if hosts {
                row.hosts.push(member.name.clone());
            }
        }
    }
    render(&ModulesPage {
        modules: rows.into_values().collect(),
        cluster: members.is_some(),
    })
}

fn module_row(info: &colloquy_runtime::ModuleInfo) -> ModuleRow {
    ModuleRow {
        name: info.name.to_string(),
        description: info.description.clone(),
        version: info.version.clone(),
        capabilities: info.capabilities.iter().map(ToString::to_string).collect(),
        input_schema: pretty(&info.input_schema),
        output_schema: pretty(&info.output_schema),
        hosts: Vec::new(),
        registered: None,
        remote: None,
    }
}

/// `/inspect/health`: the hub's health and the store's analytics.
pub(crate) async fn health(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Query(query): Query<HealthQuery>,
) -> Result<Response, InspectorError> {
    let hub = &shared.hub;
    // The period the exchange times cover (requests sent within it): a day by default,
    // so that the page reads a day of messages, not the whole database.
    let since = if query.since.is_empty() {
        "24h"
    } else {
        query.since.as_str()
    };
    let period = humantime::parse_duration(since)
        .map_err(|e| bad(format!("since {since:?}: {e}; use 15m, 1h, 7d")))?;
    let recent = TimeRange::since(hub.clock().now().saturating_sub(period));
    let health = hub.health(None).await;
    let hubs = match hub.members().await {
        Some(Ok(members)) => members
            .iter()
            .map(|m| HubRow {
                name: m.name.clone(),
                state: m.state(),
                heartbeat: time(m.heartbeat_at),
                modules: m.hosted().count(),
            })
            .collect(),
        _ => Vec::new(),
    };
    // Distributions over the newest conversations (the reader's own, for a reader with a
    // token), read a page at a time.
    let mut sample = Vec::new();
    let mut filter = ListFilter::new().limit(colloquy_runtime::MAX_PAGE);
    if let Some(me) = reader.participant() {
        filter = filter.participant(me.clone());
    }
    while sample.len() < SAMPLE {
        let page = hub.reader().list(&filter).await?;
        sample.extend(page.conversations);
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => break,
        }
    }
    sample.truncate(SAMPLE);
    let now = hub.clock().now();
    // A reader with a token sees figures of its own conversations only (the newest of
    // them): the database's totals and the names in them are other callers' business.
    let analytics = match reader.participant() {
        None => hub.reader().analytics(TimeRange::all()).await?,
        Some(_) => analytics_of(&sample),
    };
    // Where the time went: the store counts every exchange; for a reader with a token,
    // those of its newest conversations are counted here from their messages.
    let (exchanges, exchanges_cover) = match reader.participant() {
        None => (
            hub.reader().exchanges(recent).await?,
            format!("the requests of the last {since}"),
        ),
        Some(_) => {
            let mut tally = colloquy_runtime::ExchangeTally::default();
            let newest = sample.iter().take(SCOPED_EXCHANGES);
            for c in newest {
                let messages = hub.reader().messages(c.id(), MessageRange::All).await?;
                tally.add(&messages, |m| recent.contains(m.sent_at));
            }
            (
                tally.finish(),
                format!(
                    "the requests of the last {since} in your newest {} conversations",
                    sample.len().min(SCOPED_EXCHANGES)
                ),
            )
        }
    };
    // Upper bounds, exclusive.
    let turns = distribution(
        sample.iter().map(Conversation::turn_count),
        &[
            (1, "0"),
            (3, "1-2"),
            (6, "3-5"),
            (11, "6-10"),
            (51, "11-50"),
            (u64::MAX, "more than 50"),
        ],
    );
    let durations = distribution(
        sample.iter().map(|c| {
            c.ended_at()
                .unwrap_or(now)
                .saturating_duration_since(c.started_at())
        }),
        &[
            (Duration::from_secs(1), "under 1 s"),
            (Duration::from_secs(10), "1-10 s"),
            (Duration::from_secs(60), "10 s-1 min"),
            (Duration::from_secs(600), "1-10 min"),
            (Duration::from_secs(3_600), "10 min-1 h"),
            (Duration::MAX, "over 1 h"),
        ],
    );
    let most = analytics
        .modules
        .iter()
        .map(|m| m.participated)
        .max()
        .unwrap_or(0);
    render(&HealthPage {
        healthy: health.healthy,
        problems: health.problems.clone(),
        backend: hub.reader().backend(),
        store_latency: health
            .store_latency
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1e3)),
        stale: health.stale_conversations.len(),
        hot: health.router.hot,
        in_flight: health.router.in_flight,
        timed_out_total: health.timed_out_total,
        hubs,
        scope: reader.participant().map(ToString::to_string),
        conversations: analytics.conversations,
        average_turns: format!("{:.1}", analytics.average_turns()),
        average_duration: duration(analytics.average_duration()),
        by_status: bars(
            STATUSES
                .iter()
                .filter_map(|(s, _)| StatusKind::from_str(s).ok())
                .map(|s| (s.as_str().to_owned(), analytics.by_status.get(s)))
                .collect(),
        ),
        modules: analytics
            .modules
            .iter()
            .map(|m| ModuleActivityRow {
                name: m.module.to_string(),
                initiated: Bar::scaled("opened", m.initiated, most),
                participated: Bar::scaled("took part", m.participated, most),
            })
            .collect(),
        sample: sample.len(),
        turns,
        durations,
        exchanges: crate::view::ExchangeRow::all(&exchanges),
        exchanges_cover,
        since: since.to_owned(),
    })
}

/// The analytics of `conversations`, counted here (the store counts a whole database only;
/// without each one's messages, a module took part where it is a participant).
fn analytics_of(conversations: &[Conversation]) -> Analytics {
    let mut tally = AnalyticsTally::default();
    for c in conversations {
        tally.add(c, []);
    }
    tally.finish()
}

/// `/inspect/assets/{file}`: the stylesheet and the live transcript's script.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "inspector.css" => (
            include_str!("../assets/inspector.css"),
            "text/css; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../assets/live.js"),
            "text/javascript; charset=utf-8",
        ),
        "list.js" => (
            include_str!("../assets/list.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
