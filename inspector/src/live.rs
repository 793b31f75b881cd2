//! Server-Sent Events fed by the hub's own writes ([`Hub::subscribe`]):
//! `/inspect/conversations/{id}/live`, a conversation's new turns and status changes, and
//! `/inspect/live`, every visible conversation's changes for the list. On a database several
//! hubs share, other hubs' writes are not announced here: while a stream is open it also
//! reads the store every [`CLUSTER_POLL`] and sends what changed.
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
use colloquy_runtime::{ConversationEvent, ConversationId, ListFilter, MessageRange, StoreReader};
use futures_util::stream;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::{
    auth::Reader,
    transcript::{turn_hubs, visible},
    view::{ConversationRow, SharedState, StateView, TurnRow},
    InspectorError, Shared,
};

/// How often a live stream on a cluster's hub reads the store for other hubs' writes.
const CLUSTER_POLL: Duration = Duration::from_millis(500);

/// How many of the newest conversations the list's stream follows that way.
const CLUSTER_LIST: usize = 100;

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
    let hubs = turn_hubs(&shared.hub, conversation.id(), MessageRange::After(after)).await?;
    let mut first: Vec<Event> = missed
        .iter()
        .filter_map(|m| json_event("turn", &TurnRow::of(m, &turns).written_by(&hubs)))
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
        seen_version: conversation.version(),
        shared_state,
        known: turns,
        queued: first,
        this_hub: this_hub_name(&shared.hub).await,
        hub: shared.hub.clone(),
        poll: shared
            .hub
            .in_cluster()
            .then(|| Poll::new(shared.hub.reader())),
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
    /// The version of the conversation whose status was sent last.
    seen_version: u64,
    /// Message ids sent, with their turns, to name the turn a reply answers.
    known: HashMap<colloquy_runtime::MessageId, u64>,
    queued: Vec<Event>,
    /// On a cluster's hub: the store, read every [`CLUSTER_POLL`] for other hubs' writes.
    poll: Option<Poll>,
    /// On a cluster, this hub's name: the writer of the turns its own events carry.
    this_hub: Option<String>,
    /// The hub, to ask which hub wrote the turns read from the store.
    hub: colloquy_runtime::Hub,
}

/// On a cluster, the name this hub joined under (none if it is not a member right now).
async fn this_hub_name(hub: &colloquy_runtime::Hub) -> Option<String> {
    let me = hub.member()?;
    let members = hub.members().await?.ok()?;
    members.into_iter().find(|m| m.member == me).map(|m| m.name)
}

/// On a cluster's hub, a live stream also reads the store: every [`CLUSTER_POLL`], however
/// many of this hub's own events arrive in between.
struct Poll {
    store: StoreReader,
    every: tokio::time::Interval,
}

impl Poll {
    fn new(store: StoreReader) -> Self {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + CLUSTER_POLL, CLUSTER_POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { store, every }
    }
}

/// What a live stream woke for.
enum Woke {
    /// One of this hub's writes (or the channel's end, or a lag).
    Event(Result<ConversationEvent, RecvError>),
    /// Time to read the store for other hubs' writes: the store, to read.
    Poll(StoreReader),
}

/// Waits for this hub's next event, or, with `poll`, the next time to read the store.
async fn wake(events: &mut Receiver<ConversationEvent>, poll: Option<&mut Poll>) -> Woke {
    match poll {
        Some(poll) => tokio::select! {
            received = events.recv() => Woke::Event(received),
            _ = poll.every.tick() => Woke::Poll(poll.store.clone()),
        },
        None => Woke::Event(events.recv().await),
    }
}

async fn next_event(mut live: Live) -> Option<(Result<Event, Infallible>, Live)> {
    loop {
        if !live.queued.is_empty() {
            let event = live.queued.remove(0);
            return Some((Ok(event), live));
        }
        let received = match wake(&mut live.events, live.poll.as_mut()).await {
            Woke::Event(received) => received,
            Woke::Poll(store) => {
                live.catch_up(&store).await;
                continue;
            }
        };
        match received {
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
    /// Sends what the store holds beyond what was sent: turns, state changes and the
    /// status, when the conversation's version moved (another hub wrote it). A read that
    /// fails is left to the next poll.
    async fn catch_up(&mut self, store: &StoreReader) {
        let Ok(Some(conversation)) = store.conversation(self.id).await else {
            return;
        };
        if conversation.version() <= self.seen_version {
            return;
        }
        let (Ok(messages), Ok(changes)) = (
            store
                .messages(self.id, MessageRange::After(self.last_turn))
                .await,
            store.state_changes(self.id).await,
        ) else {
            return;
        };
        let range = MessageRange::After(self.last_turn);
        let hubs = turn_hubs(&self.hub, self.id, range)
            .await
            .unwrap_or_default();
        for message in &messages {
            self.known.insert(message.id, message.turn);
            if message.turn > self.last_turn {
                self.last_turn = message.turn;
                let row = TurnRow::of(message, &self.known).written_by(&hubs);
                self.queued.extend(json_event("turn", &row));
            }
        }
        let already = self.last_version;
        for change in changes.iter().filter(|c| c.version > already) {
            self.last_version = change.version;
            let row = self.shared_state.follow(change);
            self.queued.extend(json_event("change", &row));
        }
        self.seen_version = conversation.version();
        self.queued
            .extend(json_event("status", &StateView::of(&conversation)));
    }

    fn queue(&mut self, event: &ConversationEvent) {
        if let ConversationEvent::Stored { messages, .. } = event {
            for message in messages {
                self.known.insert(message.id, message.turn);
                if message.turn > self.last_turn {
                    self.last_turn = message.turn;
                    let mut row = TurnRow::of(message, &self.known);
                    row.hub = self.this_hub.clone();
                    self.queued.extend(json_event("turn", &row));
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
        self.seen_version = self.seen_version.max(event.conversation().version());
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
/// conversation the reader may see; `reload` when it fell behind. On a cluster's hub, the
/// newest [`CLUSTER_LIST`] conversations are also read every [`CLUSTER_POLL`], and those
/// whose version moved are sent.
pub(crate) async fn list_events(
    State(shared): State<Arc<Shared>>,
    Extension(reader): Extension<Reader>,
) -> Response {
    let events = shared.hub.subscribe();
    let mut listing = ListLive {
        events,
        reader,
        poll: None,
        versions: HashMap::new(),
        queued: Vec::new(),
    };
    if shared.hub.in_cluster() {
        let store = shared.hub.reader();
        // What is there now is on the page already: only later changes are sent.
        listing.read_newest(&store, false).await;
        listing.queued.clear();
        listing.poll = Some(Poll::new(store));
    }
    let stream = stream::unfold(listing, |mut listing| async move {
        let event = listing.next().await?;
        Some((Ok::<_, Infallible>(event), listing))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct ListLive {
    events: Receiver<ConversationEvent>,
    reader: Reader,
    poll: Option<Poll>,
    /// The version of each conversation last sent (or seen at the start).
    versions: HashMap<ConversationId, u64>,
    queued: Vec<Event>,
}

impl ListLive {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.queued.is_empty() {
                return Some(self.queued.remove(0));
            }
            let received = match wake(&mut self.events, self.poll.as_mut()).await {
                Woke::Event(received) => received,
                Woke::Poll(store) => {
                    self.read_newest(&store, true).await;
                    continue;
                }
            };
            match received {
                Ok(event) if self.reader.may_see(event.conversation()) => {
                    let opened = matches!(event, ConversationEvent::Opened { .. });
                    self.send(event.conversation(), opened);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    return Some(Event::default().event("reload").data("lagged"));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queues the row of `conversation` unless its version was sent already.
    /// (Versions are remembered only on a cluster's hub, where the store is read too; the
    /// map holds at most the conversations listed or announced while the stream is open.)
    fn send(&mut self, conversation: &colloquy_runtime::Conversation, opened: bool) {
        let mut first_seen = false;
        if self.poll.is_some() {
            let version = conversation.version();
            let known = self.versions.insert(conversation.id(), version);
            if known.is_some_and(|sent| sent >= version) {
                return;
            }
            first_seen = known.is_none();
        }
        let change = ListChange {
            row: ConversationRow::of(conversation),
            opened: opened || first_seen,
        };
        self.queued.extend(json_event("conversation", &change));
    }

    /// Reads the newest conversations and queues those that changed; `announce: false`
    /// only records their versions.
    async fn read_newest(&mut self, store: &StoreReader, announce: bool) {
        let mut filter = ListFilter::new().limit(CLUSTER_LIST);
        if let Some(participant) = self.reader.participant() {
            filter = filter.participant(participant.clone());
        }
        let Ok(page) = store.list(&filter).await else {
            return;
        };
        for conversation in &page.conversations {
            if !self.reader.may_see(conversation) {
                continue;
            }
            if announce {
                self.send(conversation, false);
            } else {
                self.versions
                    .insert(conversation.id(), conversation.version());
            }
        }
    }
}
