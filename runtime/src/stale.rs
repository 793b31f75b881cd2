//! [`find_stale`]: the active conversations nobody is timing out, for `Hub::health` and
//! `colloquy health` alike.

use std::time::Duration;

use colloquy_core::{Conversation, StatusKind, Timestamp};
use colloquy_storage::{ConversationStore, ListFilter, StoreError, MAX_PAGE};

/// What [`find_stale`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleScan {
    /// Active conversations in the store.
    pub active: u64,
    /// How many of them are stale.
    pub stale_count: u64,
    /// The stale ones, newest first, at most the `keep` asked for.
    pub stale: Vec<Conversation>,
}

/// Walks every active conversation of `store` (page by page, never all at once) and
/// returns those stale at `now` by [`Conversation::is_stale`]: idle for `stale_after`, or
/// past their own idle timeout when it is `None`. Keeps at most `keep` of them.
pub async fn find_stale(
    store: &dyn ConversationStore,
    now: Timestamp,
    stale_after: Option<Duration>,
    keep: usize,
) -> Result<StaleScan, StoreError> {
    let mut filter = ListFilter::new().status(StatusKind::Active).limit(MAX_PAGE);
    let mut scan = StaleScan {
        active: 0,
        stale_count: 0,
        stale: Vec::new(),
    };
    loop {
        let page = store.list(&filter).await?;
        scan.active += page.conversations.len() as u64;
        for conversation in page.conversations {
            if conversation.is_stale(now, stale_after) {
                scan.stale_count += 1;
                if scan.stale.len() < keep {
                    scan.stale.push(conversation);
                }
            }
        }
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => return Ok(scan),
        }
    }
}
