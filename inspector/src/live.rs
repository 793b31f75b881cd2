//! Server-Sent Events fed by the hub's own writes ([`Hub::subscribe`]):
//! `/inspect/conversations/{id}/live`, a conversation's new turns and status changes, and
//! `/inspect/live`, every visible conversation's changes for the list.
//!
//! Events: `turn` (a [`TurnRow`] as JSON), `change` (a change of the shared state, a
//! `ChangeRow`), `status` (a [`StateView`]), and `reload` when
//! the stream fell too far behind to be trusted (the page then reloads itself). The page
//! says which turn it shows last (`?after=`); turns stored between the page's render and the
//! stream's start are read from the store first, so none is missed or shown twice.
//!
//! [`Hub::subscribe`]: colloquy_runtime::Hub::subscribe

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Path, Query, State},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Extension,
};
use colloquy_runtime::{ConversationEvent, MessageRange};
use futures_util::stream;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::{
    auth::Reader,
    pages::visible,
    view::{ConversationRow, SharedState, StateView, TurnRow},
    InspectorError, Shared,
};

/// The last turn the page shows, and the version of the conversation it showed.
#[derive(serde::Deserialize)]
pub(crate) struct After {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    version: u64,
}

/// The stream of one conversation.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
    Path(id): Path<String>,
    Query(After { after, version }): Query<After>,
) -> Result<Response, InspectorError> {
    // Subscribed before reading, so that nothing stored in between is lost.
    let events = shared.hub.subscribe();
    let conversation = visible(&shared, &reader, &id).await?;
    let missed = if conversation.turn_count() > after {
        shared
            .hub
            .reader()
            .messages(conversation.id(), MessageRange::After(after))
            .await?
    } else {
        Vec::new()
    };
    let turns: HashMap<_, _> = missed.iter().map(|m| (m.id, m.turn)).collect();
    let mut first: Vec<Event> = missed
        .iter()
        .filter_map(|m| json_event("turn", &TurnRow::of(m, &turns)))
        .collect();
    // The shared state followed from its first change; those after the page's version are
    // sent (after the turns they came with: the page places them).
    let mut shared_state = SharedState::default();
    let mut last_version = version;
    for change in shared.hub.reader().state_changes(conversation.id()).await? {
        let row = shared_state.follow(&change);
        if change.version > version {
            first.extend(json_event("change", &row));
            last_version = change.version;
        }
    }
    first.extend(json_event("status", &StateView::of(&conversation)));
    let state = Live {
        id: conversation.id(),
        events,
        last_turn: conversation.turn_count().max(after),
        last_version,
        shared_state,
        known: turns,
        queued: first,
    };
    let stream = stream::unfold(state, next_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Live {
    id: colloquy_runtime::ConversationId,
    events: Receiver<ConversationEvent>,
    /// The last turn sent: later events of earlier turns are not sent again.
    last_turn: u64,
    /// The version of the last state change sent, and the shared state it left.
    last_version: u64,
    shared_state: SharedState,
    /// Message ids sent, with their turns, to name the turn a reply answers.
    known: HashMap<colloquy_runtime::MessageId, u64>,
    queued: Vec<Event>,
}

async fn next_event(mut live: Live) -> Option<(Result<Event, Infallible>, Live)> {
    loop {
        if !live.queued.is_empty() {
            let event = live.queued.remove(0);
            return Some((Ok(event), live));
        }
        match live.events.recv().await {
            Ok(event) if event.conversation_id() == live.id => live.queue(&event),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                live.queued
                    .push(Event::default().event("reload").data("lagged"));
            }
            // The hub shut down: the stream ends.
            Err(RecvError::Closed) => return None,
        }
    }
}

impl Live {
    fn queue(&mut self, event: &ConversationEvent) {
        if let ConversationEvent::Stored { messages, .. } = event {
            for message in messages {
                self.known.insert(message.id, message.turn);
                if message.turn > self.last_turn {
                    self.last_turn = message.turn;
                    self.queued
                        .extend(json_event("turn", &TurnRow::of(message, &self.known)));
                }
            }
        }
        if let Some(change) = event.conversation().state_change() {
            if change.version > self.last_version {
                self.last_version = change.version;
                let row = self.shared_state.follow(&change);
                self.queued.extend(json_event("change", &row));
            }
        }
        self.queued
            .extend(json_event("status", &StateView::of(event.conversation())));
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Option<Event> {
    // Serializing these plain structs cannot fail; a failure would only skip the event.
    serde_json::to_string(value)
        .ok()
        .map(|data| Event::default().event(name).data(data))
}

/// A conversation in the list's stream: its row, and whether it was just opened.
#[derive(serde::Serialize)]
struct ListChange {
    #[serde(flatten)]
    row: ConversationRow,
    opened: bool,
}

/// The list's stream: a `conversation` event (a row, and `opened`) for each change of a
/// conversation the reader may see; `reload` when it fell behind.
pub(crate) async fn list_events(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
) -> Response {
    let events = shared.hub.subscribe();
    let stream = stream::unfold((events, reader), |(mut events, reader)| async move {
        loop {
            let event = match events.recv().await {
                Ok(event) if reader.may_see(event.conversation()) => {
                    let change = ListChange {
                        row: ConversationRow::of(event.conversation()),
                        opened: matches!(event, ConversationEvent::Opened { .. }),
                    };
                    match json_event("conversation", &change) {
                        Some(event) => event,
                        None => continue,
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => Event::default().event("reload").data("lagged"),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<_, Infallible>(event), (events, reader)));
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
