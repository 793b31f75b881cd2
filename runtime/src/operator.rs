//! One-shot operator work on a store that no hub may be running on: end a conversation,
//! time out the idle ones. Both go through a router (turn lock, conditional writes), as a
//! hub's own calls and reaper do, so a hub running at the same time is never undone.

use std::sync::Arc;

use colloquy_core::{Conversation, ConversationId};
use colloquy_registry::Registry;
use colloquy_router::{Change, Clock, ReapReport, Router, RouterConfig};
use colloquy_storage::ConversationStore;

use crate::HubError;

/// A router on `store` with no modules and no background task.
fn bare_router(store: Arc<dyn ConversationStore>) -> Router {
    Router::new(
        store,
        Arc::new(Registry::new()),
        RouterConfig::default(),
        Clock::system(),
    )
}

/// Ends conversation `id`: Completed, or Failed with `reason`. An ended conversation is
/// final, so ending one that already ended is an error naming its status.
///
/// Errors: [`HubError::Route`] with `UnknownConversation`, or a core error when the
/// conversation has ended already; storage errors.
pub async fn end_conversation(
    store: Arc<dyn ConversationStore>,
    id: ConversationId,
    reason: Option<String>,
) -> Result<Conversation, HubError> {
    let change = match reason {
        Some(reason) => Change::Fail(reason),
        None => Change::Complete,
    };
    Ok(bare_router(store).apply(id, change).await?)
}

/// Times out every active conversation of `store` that is idle past its idle timeout, once,
/// as a hub's reaper would: for a store whose conversations no running hub is timing out
/// (they were opened by a hub that stopped). Returns how many were checked and timed out.
///
/// Errors: storage errors.
pub async fn reap_stored(store: Arc<dyn ConversationStore>) -> Result<ReapReport, HubError> {
    Ok(bare_router(store).reap_stored().await?)
}
