//! The [`ConversationStore`] trait and the types its methods take and return.

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use colloquy_core::{
    Conversation, ConversationId, Message, MessageId, ModuleInfo, ModuleName, StateChange,
    StatusKind, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Durable home of conversations, their messages and module registrations.
///
/// Every backend, including one written outside this workspace, must pass the conformance
/// suite in `colloquy-testkit` (`colloquy_testkit::conformance`), which pins down the exact
/// behaviour documented here.
///
/// All methods are cancel-safe in the sense that matters: a write is either committed
/// entirely or not at all, and it is acknowledged (`Ok`) only after it is durable at the
/// backend's configured level.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// A short name of the backend, for diagnostics ("memory", "sqlite").
    fn backend(&self) -> &'static str;

    /// Stores a new conversation, which must have no turns yet.
    ///
    /// Errors: [`StoreError::AlreadyExists`] if the id is taken; [`StoreError::InvalidInput`]
    /// if `turn_count` is not 0.
    async fn create(&self, conversation: &Conversation) -> Result<(), StoreError>;

    /// Appends `messages` and stores `conversation` as the conversation's new state, in one
    /// atomic transaction.
    ///
    /// The messages come behind `Arc`, as the router shares them with its history window
    /// and its subscribers: a backend that keeps messages in memory keeps the `Arc`, the
    /// others only borrow them.
    ///
    /// `messages` must belong to the conversation, have consecutive turns, and end at
    /// `conversation.turn_count()`. A message whose id is already stored at the same turn is
    /// skipped (appending is idempotent on message id); if every message is skipped the
    /// stored state is left as it is. New messages must continue the stored turns exactly.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] when a turn is taken by
    /// another message, a turn would leave a gap, or a message id is reused at another
    /// turn; [`StoreError::InvalidInput`] for an inconsistent batch. On error nothing is
    /// written.
    async fn append(
        &self,
        conversation: &Conversation,
        messages: &[Arc<Message>],
    ) -> Result<AppendOutcome, StoreError>;

    /// Stores `conversation` as the new state (status, phase, context, participants, ...)
    /// without new turns.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Conflict`] if the stored turn count
    /// differs (the given state is stale or ahead of the stored messages).
    async fn update(&self, conversation: &Conversation) -> Result<(), StoreError>;

    /// The stored message with id `id`, in whichever conversation, or `None`. (A caller
    /// that derives ids from its own keys finds out with it whether a message was stored
    /// already, by any process.)
    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// What each write of a conversation changed in its shared state (context,
    /// participants, phase, status), in version order: the whole state at its creation,
    /// then one entry per write that changed any of them ([`Conversation::state_change`],
    /// stored in the same transaction as the write; a retried write stores it once).
    ///
    /// Errors: [`StoreError::NotFound`] if the conversation is not stored.
    async fn state_changes(&self, id: ConversationId) -> Result<Vec<StateChange>, StoreError>;

    /// The stored state of a conversation, or `None`.
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// Messages of a conversation in ascending turn order.
    ///
    /// Errors: [`StoreError::NotFound`] if the conversation is not stored.
    async fn messages(
        &self,
        id: ConversationId,
        range: MessageRange,
    ) -> Result<Vec<Message>, StoreError>;

    /// Conversations matching `filter`, newest first (by start time, then id), one page at
    /// a time.
    async fn list(&self, filter: &ListFilter) -> Result<ConversationPage, StoreError>;

    /// Aggregates over the conversations started within `range`, computed by the backend.
    async fn analytics(&self, range: TimeRange) -> Result<Analytics, StoreError>;

    /// Where the time went: per module, the requests addressed to it and sent within
    /// `range`, those without a reply, and the answered ones' times by bucket.
    async fn exchanges(&self, range: TimeRange) -> Result<Vec<crate::ModuleExchanges>, StoreError>;

    /// Turns whose content holds a text, newest first (see [`TextSearch`] for how every
    /// backend compares).
    ///
    /// [`TextSearch`]: crate::TextSearch
    async fn search(&self, search: &crate::TextSearch)
        -> Result<Vec<crate::SearchHit>, StoreError>;

    /// How many conversations are in each status now: cheap enough to ask at every
    /// metrics scrape (the SQL backends count an index). The default takes it from
    /// [`analytics`](Self::analytics), which a backend may do better.
    async fn count_by_status(&self) -> Result<StatusCounts, StoreError> {
        Ok(self.analytics(TimeRange::all()).await?.by_status)
    }

    /// Deletes ended conversations (Completed, TimedOut, Failed) that ended before
    /// `ended_before`, with their messages. Returns how many conversations were deleted.
    async fn prune(&self, ended_before: Timestamp) -> Result<u64, StoreError>;

    /// Checks that the store answers (a cheap round trip to the backend).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records (or replaces, by name) a module registration.
    async fn record_module(
        &self,
        module: &ModuleInfo,
        registered_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Every recorded module registration, sorted by name.
    async fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError>;

    /// The hubs sharing this store, for a backend that several hubs write at once
    /// (PostgreSQL, and [`MemoryStore::cluster`](crate::MemoryStore::cluster) for hubs of
    /// one process); `None` (the default) for a store of one hub.
    fn membership(&self) -> Option<&dyn crate::Membership> {
        None
    }

    /// Makes everything acknowledged durable and stops accepting writes (later writes fail
    /// with [`StoreError::Closed`]; reads keep working). The default does nothing, for
    /// backends with nothing to flush.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What [`ConversationStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Messages written now.
    pub inserted: usize,
    /// Messages skipped because they were already stored (a retried append).
    pub duplicates: usize,
}

/// Which messages of a conversation to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRange {
    /// Every message.
    All,
    /// Messages with a turn greater than this one.
    After(u64),
    /// The last `n` messages (still returned in ascending turn order).
    Last(u64),
    /// Turns `first..=last`.
    Turns {
        /// First turn, inclusive.
        first: u64,
        /// Last turn, inclusive.
        last: u64,
    },
}

impl MessageRange {
    /// True if `turn` is in the range, given the conversation's `turn_count`.
    pub fn contains(&self, turn: u64, turn_count: u64) -> bool {
        match *self {
            Self::All => true,
            Self::After(after) => turn > after,
            Self::Last(n) => turn > turn_count.saturating_sub(n),
            Self::Turns { first, last } => (first..=last).contains(&turn),
        }
    }
}

/// A half-open time range `[from, until)`; a missing bound is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// All of time.
    pub fn all() -> Self {
        Self::default()
    }

    /// From `from` on.
    pub fn since(from: Timestamp) -> Self {
        Self {
            from: Some(from),
            until: None,
        }
    }

    /// `[from, until)`.
    pub fn between(from: Timestamp, until: Timestamp) -> Self {
        Self {
            from: Some(from),
            until: Some(until),
        }
    }

    /// True if `t` lies in the range.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|from| t >= from) && self.until.is_none_or(|until| t < until)
    }
}

/// The most conversations one [`ConversationStore::list`] page returns.
pub const MAX_PAGE: usize = 10_000;

/// Which conversations [`ConversationStore::list`] returns.
///
/// ```
/// use colloquy_storage::ListFilter;
/// use colloquy_core::StatusKind;
/// let filter = ListFilter::new().status(StatusKind::Active).limit(20);
/// assert_eq!(filter.limit, 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<StatusKind>,
    /// Only conversations this module takes part in.
    pub participant: Option<ModuleName>,
    /// Only conversations started in this range.
    pub started: TimeRange,
    /// Page size, at most [`MAX_PAGE`] (larger values are clamped). Default 100.
    pub limit: usize,
    /// Continue after this cursor (from [`ConversationPage::next`]).
    pub after: Option<ListCursor>,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            status: None,
            participant: None,
            started: TimeRange::all(),
            limit: 100,
            after: None,
        }
    }
}

impl ListFilter {
    /// Every conversation, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this status.
    pub fn status(mut self, status: StatusKind) -> Self {
        self.status = Some(status);
        self
    }

    /// Only conversations `module` takes part in.
    pub fn participant(mut self, module: ModuleName) -> Self {
        self.participant = Some(module);
        self
    }

    /// Only conversations started within `range`.
    pub fn started(mut self, range: TimeRange) -> Self {
        self.started = range;
        self
    }

    /// Page size (clamped to [`MAX_PAGE`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Continue after `cursor`.
    pub fn after(mut self, cursor: ListCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// The page size actually used.
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_PAGE)
    }

    /// True if `conversation` passes the status, participant and time filters (not the
    /// cursor or the limit).
    pub fn matches(&self, conversation: &Conversation) -> bool {
        self.status
            .is_none_or(|s| conversation.status().kind() == s)
            && self
                .participant
                .as_ref()
                .is_none_or(|m| conversation.is_participant(m))
            && self.started.contains(conversation.started_at())
    }
}

/// Where a listing stopped: the last conversation of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListCursor {
    /// Start time of the last conversation returned.
    pub started_at: Timestamp,
    /// Its id.
    pub id: ConversationId,
}

impl ListCursor {
    /// The cursor that continues after `conversation`.
    pub fn after(conversation: &Conversation) -> Self {
        Self {
            started_at: conversation.started_at(),
            id: conversation.id(),
        }
    }
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.started_at.as_millis(), self.id)
    }
}

impl FromStr for ListCursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let invalid = || StoreError::InvalidInput {
            reason: format!("bad list cursor {s:?}; pass the cursor a previous page returned"),
        };
        let (millis, id) = s.split_once('.').ok_or_else(invalid)?;
        Ok(Self {
            started_at: Timestamp::from_millis(millis.parse().map_err(|_| invalid())?),
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// One page of [`ConversationStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationPage {
    /// The conversations, newest first.
    pub conversations: Vec<Conversation>,
    /// Pass this as [`ListFilter::after`] for the next page; `None` on the last page.
    pub next: Option<ListCursor>,
}

impl ConversationPage {
    /// Builds a page from matching conversations in listing order: the first `limit` of
    /// them, and a cursor if `candidates` had more. For backend authors.
    pub fn from_candidates(
        limit: usize,
        candidates: impl IntoIterator<Item = Result<Conversation, StoreError>>,
    ) -> Result<Self, StoreError> {
        let mut conversations = Vec::new();
        let mut more = false;
        for candidate in candidates {
            let conversation = candidate?;
            if conversations.len() == limit {
                more = true;
                break;
            }
            conversations.push(conversation);
        }
        let next = if more {
            conversations.last().map(ListCursor::after)
        } else {
            None
        };
        Ok(Self {
            conversations,
            next,
        })
    }
}

/// Counts of conversations by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Active.
    pub active: u64,
    /// Paused.
    pub paused: u64,
    /// Completed.
    pub completed: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Failed.
    pub failed: u64,
}

impl StatusCounts {
    /// The count for `status`.
    pub fn get(&self, status: StatusKind) -> u64 {
        match status {
            StatusKind::Active => self.active,
            StatusKind::Paused => self.paused,
            StatusKind::Completed => self.completed,
            StatusKind::TimedOut => self.timed_out,
            StatusKind::Failed => self.failed,
        }
    }

    /// Adds `count` conversations of the status stored as `status` (a backend's row);
    /// an unknown status is corrupt data.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn add_stored(&mut self, status: &str, count: i64) -> Result<(), StoreError> {
        let kind = status
            .parse::<StatusKind>()
            .map_err(|e| StoreError::Corrupt {
                location: "the conversations' statuses".into(),
                detail: format!("{status:?}: {e}"),
            })?;
        self.add(kind, u64::try_from(count).unwrap_or(0));
        Ok(())
    }

    /// Adds one conversation of `status`.
    pub fn add(&mut self, status: StatusKind, n: u64) {
        let slot = match status {
            StatusKind::Active => &mut self.active,
            StatusKind::Paused => &mut self.paused,
            StatusKind::Completed => &mut self.completed,
            StatusKind::TimedOut => &mut self.timed_out,
            StatusKind::Failed => &mut self.failed,
        };
        *slot += n;
    }
}

/// How much one module took part in conversations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleActivity {
    /// The module.
    pub module: ModuleName,
    /// Conversations it opened (it is the first participant).
    pub initiated: u64,
    /// Conversations it took part in, including those it opened: it is a participant, or
    /// it sent any of their turns (a request or a reply), so a module transferred out of
    /// a conversation still counts in it.
    pub participated: u64,
}

/// Aggregates over a set of conversations, as exact sums so every backend agrees exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Analytics {
    /// Number of conversations.
    pub conversations: u64,
    /// Of which, by status.
    pub by_status: StatusCounts,
    /// Sum of their turn counts.
    pub total_turns: u64,
    /// Sum of their durations in milliseconds (end, or last activity if still open, minus
    /// start).
    pub total_duration_ms: u64,
    /// Per module, sorted by name.
    pub modules: Vec<ModuleActivity>,
}

/// [`Analytics`] counted in memory, one conversation at a time: what the memory store
/// computes, and what a reader computes over the conversations it may see.
///
/// ```
/// use colloquy_storage::AnalyticsTally;
/// let tally = AnalyticsTally::default();
/// assert_eq!(tally.finish().conversations, 0);
/// ```
#[derive(Debug, Default)]
pub struct AnalyticsTally {
    out: Analytics,
    modules: std::collections::BTreeMap<ModuleName, (u64, u64)>,
}

impl AnalyticsTally {
    /// Counts `conversation`; `speakers` are the senders of its turns, where the caller
    /// has them: a module took part if it is a participant now or sent any turn (a
    /// transfer removes it from the participants, not from what it did).
    pub fn add<'a>(
        &mut self,
        conversation: &Conversation,
        speakers: impl IntoIterator<Item = &'a ModuleName>,
    ) {
        let c = conversation;
        self.out.conversations += 1;
        self.out.by_status.add(c.status().kind(), 1);
        self.out.total_turns += c.turn_count();
        // Until the end, or the last activity of an open one.
        let end = c.ended_at().unwrap_or(c.last_activity());
        self.out.total_duration_ms +=
            colloquy_core::duration_millis(end.saturating_duration_since(c.started_at()));
        let mut took_part: std::collections::BTreeMap<&ModuleName, bool> =
            std::collections::BTreeMap::new();
        for (position, module) in c.participants().iter().enumerate() {
            *took_part.entry(module).or_default() |= position == 0;
        }
        for speaker in speakers {
            took_part.entry(speaker).or_default();
        }
        for (module, initiated) in took_part {
            let slot = self.modules.entry(module.clone()).or_default();
            slot.0 += u64::from(initiated);
            slot.1 += 1;
        }
    }

    /// The analytics of everything counted, modules sorted by name.
    pub fn finish(self) -> Analytics {
        let mut out = self.out;
        out.modules = self
            .modules
            .into_iter()
            .map(|(module, (initiated, participated))| ModuleActivity {
                module,
                initiated,
                participated,
            })
            .collect();
        out
    }
}

impl Analytics {
    /// Mean turns per conversation (0 when there are none).
    pub fn average_turns(&self) -> f64 {
        ratio(self.total_turns, self.conversations)
    }

    /// Mean duration per conversation (zero when there are none).
    pub fn average_duration(&self) -> Duration {
        Duration::from_secs_f64(ratio(self.total_duration_ms, self.conversations) / 1000.0)
    }
}

fn ratio(sum: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64
    }
}

/// A module registration as recorded in a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// What the module declared.
    pub info: ModuleInfo,
    /// When it was (last) registered.
    pub registered_at: Timestamp,
}
