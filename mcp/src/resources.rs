//! The resources: the module list (`colloquy://modules`) and each conversation's
//! transcript (`colloquy://conversations/{id}`), read as JSON; and the following of
//! conversations for clients subscribed to their transcripts.

use std::collections::HashSet;

use colloquy_runtime::{ConversationEvent, ConversationId, MessageRange, ModuleName};
use rmcp::model::{
    CacheScope, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::McpServer;

/// The module list's URI.
pub(crate) const MODULES_URI: &str = "colloquy://modules";
/// What a transcript's URI starts with; the conversation id follows.
const CONVERSATION_PREFIX: &str = "colloquy://conversations/";
/// How many of the caller's latest conversations `resources/list` names.
const LISTED: usize = 50;

/// The URI of conversation `id`'s transcript.
pub(crate) fn conversation_uri(id: ConversationId) -> String {
    format!("{CONVERSATION_PREFIX}{id}")
}

/// The conversation a transcript URI names.
pub(crate) fn conversation_of(uri: &str) -> Option<ConversationId> {
    uri.strip_prefix(CONVERSATION_PREFIX)?.parse().ok()
}

/// The module list and the caller's latest conversations.
pub(crate) async fn list(
    server: &McpServer,
    caller: &ModuleName,
) -> Result<ListResourcesResult, String> {
    let mut filter = colloquy_runtime::ListFilter::new().participant(caller.clone());
    filter.limit = LISTED;
    let page = server
        .hub
        .reader()
        .list(&filter)
        .await
        .map_err(|e| e.to_string())?;
    let mut resources = vec![Resource::new(MODULES_URI, "modules")
        .with_description(
            "The modules of this hub: names, descriptions, capabilities, input schemas.",
        )
        .with_mime_type("application/json")];
    resources.extend(page.conversations.iter().map(|c| {
        Resource::new(conversation_uri(c.id()), format!("conversation {}", c.id()))
            .with_description(format!(
                "{} with {}: {} turns, {}",
                c.intent(),
                ModuleName::join(c.participants()),
                c.turn_count(),
                c.status()
            ))
            .with_mime_type("application/json")
    }));
    Ok(ListResourcesResult::with_all_items(resources)
        .with_ttl_ms(0)
        .with_cache_scope(CacheScope::Private))
}

/// The transcript template.
pub(crate) fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![ResourceTemplate::new(
        format!("{CONVERSATION_PREFIX}{{id}}"),
        "conversation",
    )
    .with_description(
        "A conversation's state and every turn, oldest first. Subscribe to hear of each new turn.",
    )
    .with_mime_type("application/json")])
}

/// Reads `uri` as `caller`: `Err` with the reason when it names nothing the caller may read.
pub(crate) async fn read(
    server: &McpServer,
    caller: &ModuleName,
    uri: &str,
) -> Result<ReadResourceResult, String> {
    let text = if uri == MODULES_URI {
        let modules: Vec<_> = server
            .hub
            .reachable_modules()
            .into_iter()
            .filter(|m| !m.is_caller())
            .collect();
        serde_json::to_string(&json!({ "modules": modules }))
    } else {
        let not_found = || format!("no resource {uri} among yours; resources/list names them");
        let id = conversation_of(uri).ok_or_else(not_found)?;
        let reader = server.hub.reader();
        let conversation = reader
            .conversation(id)
            .await
            .map_err(|e| e.to_string())?
            .filter(|c| c.is_participant(caller))
            .ok_or_else(not_found)?;
        let messages = reader
            .messages(id, MessageRange::All)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_string(&json!({ "conversation": conversation, "messages": messages }))
    }
    .map_err(|e| e.to_string())?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type("application/json")
    ])
    .with_ttl_ms(0)
    .with_cache_scope(CacheScope::Private))
}

/// Follows the hub's conversation events and calls `updated` with the URI of each
/// transcript `wanted` names that changed (a new turn, an end, a context patch), for as
/// long as `updated` succeeds and the hub runs. A follower that fell behind calls it for
/// every wanted conversation it knows of, since any of them may have changed.
pub(crate) async fn follow<W, U, F>(
    mut events: tokio::sync::broadcast::Receiver<ConversationEvent>,
    caller: &ModuleName,
    wanted: W,
    mut updated: U,
) where
    W: Fn(ConversationId) -> bool,
    U: FnMut(String) -> F,
    F: std::future::Future<Output = bool>,
{
    let mut seen: HashSet<ConversationId> = HashSet::new();
    loop {
        let ids = match events.recv().await {
            Ok(event) => {
                let conversation = match &event {
                    ConversationEvent::Stored { conversation, .. }
                    | ConversationEvent::Changed { conversation } => conversation,
                    _ => continue,
                };
                let id = conversation.id();
                if !conversation.is_participant(caller) || !wanted(id) {
                    continue;
                }
                seen.insert(id);
                vec![id]
            }
            Err(RecvError::Lagged(_)) => seen.iter().copied().collect(),
            Err(RecvError::Closed) => return,
        };
        for id in ids {
            if !updated(conversation_uri(id)).await {
                return;
            }
        }
    }
}
