//! The pages: each reads the store through the hub's reader, checks what the reader may
//! see, and renders its template.

use std::{collections::BTreeMap, str::FromStr, sync::Arc};

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    Extension,
};
use colloquy_runtime::{
    Analytics, AnalyticsTally, Conversation, ListCursor, ListFilter, MessageRange, ModuleName,
    StatusKind, TimeRange,
};

use crate::{
    auth::Reader,
    sample,
    view::{
        bars, duration, pretty, time, Bar, Choice, ConversationRow, Filters, HealthPage, HubRow,
        ListPage, ModuleActivityRow, ModuleRow, ModulesPage,
    },
    InspectorError, Shared,
};

/// Conversations per page of the list.
const LIST_PAGE: usize = 50;
/// For a reader with a token, how many of its newest conversations the exchange times
/// are counted over (their messages are read one conversation at a time).
const SCOPED_EXCHANGES: usize = 100;
/// Turns per page of a transcript.
pub(crate) const TRANSCRIPT_PAGE: u64 = 500;

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

pub(crate) fn render(page: &impl Template) -> Result<Response, InspectorError> {
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
    let turns = sample::asked(&sample::TURNS, &filters.turns, "turns")?;
    let lasted = sample::asked(&sample::DURATIONS, &filters.lasted, "lasted")?;
    // The conversations behind a bar of the health page: those of the same sample, all on
    // one page.
    let behind_bar = turns.is_some() || lasted.is_some();
    let (conversations, next) = if behind_bar {
        let now = shared.hub.clock().now();
        let behind: Vec<Conversation> = sample::newest(&shared.hub, &reader)
            .await?
            .into_iter()
            .filter(|c| filter.matches(c) && sample::behind(c, now, turns, lasted))
            .collect();
        (behind, None)
    } else {
        if !query.after.is_empty() {
            let cursor = ListCursor::from_str(&query.after).map_err(|e| bad(e.to_string()))?;
            filter = filter.after(cursor);
        }
        let page = shared.hub.reader().list(&filter).await?;
        (page.conversations, page.next)
    };
    let bar = behind_bar.then(|| {
        let mut said = Vec::new();
        if let Some(b) = turns.and_then(|i| sample::TURNS.get(i)) {
            said.push(format!("with {} turns", b.label));
        }
        if let Some(b) = lasted.and_then(|i| sample::DURATIONS.get(i)) {
            said.push(format!("that lasted {}", b.label));
        }
        said.join(" and ")
    });
    let rows = conversations
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
        next: next.map(|cursor| cursor.to_string()),
        bar,
        sample: sample::SAMPLE,
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
    // token).
    let sample = sample::newest(hub, &reader).await?;
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
    let turns = sample::distribution(
        sample.iter().map(Conversation::turn_count),
        &sample::TURNS,
        "turns",
    );
    let durations = sample::distribution(
        sample.iter().map(|c| sample::lasted(c, now)),
        &sample::DURATIONS,
        "lasted",
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
