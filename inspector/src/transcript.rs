//! One conversation's pages: the transcript with its diagram and search
//! (`/inspect/conversations/{id}`), the diagram alone for the live page, a turn's JSON, and
//! the visibility check every page of one conversation starts with.

use std::{collections::HashMap, str::FromStr, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    Extension,
};
use colloquy_runtime::{Conversation, ConversationId, MessageRange};

use crate::{
    auth::Reader,
    pages::{render, TRANSCRIPT_PAGE},
    view::{duration, pretty, time, ConversationPage, SharedState, StateView, TurnRow},
    InspectorError, Shared,
};

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

/// On a cluster's hub, the name of the hub that stored each of `id`'s turns in `range`
/// (its id and epoch if its record is gone); outside a cluster, none.
pub(crate) async fn turn_hubs(
    hub: &colloquy_runtime::Hub,
    id: ConversationId,
    range: MessageRange,
) -> Result<HashMap<u64, String>, InspectorError> {
    let Some(writers) = hub.turn_writers(id, range).await else {
        return Ok(HashMap::new());
    };
    Ok(writers?
        .into_iter()
        .map(|w| {
            let name = w
                .name
                .unwrap_or_else(|| format!("{} epoch {}", w.member.id, w.member.epoch));
            (w.turn, name)
        })
        .collect())
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
    let hubs = turn_hubs(
        &shared.hub,
        conversation.id(),
        MessageRange::Turns { first, last },
    )
    .await?;
    let rows = shown
        .iter()
        .map(|m| TurnRow::of(m, &turns).written_by(&hubs))
        .collect();
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
