//! What every area's checks use: the imports, and helpers shared by several areas.
#![allow(unused_imports)] // a prelude: each area takes what it needs

pub(super) use std::sync::Arc;

pub(super) use colloquy_core::{
    Conversation, ConversationId, MessageKind, ModuleInfo, Phase, Status, StatusKind, Timestamp,
};
pub(super) use colloquy_storage::{
    Analytics, AppendOutcome, ConversationStore, ListFilter, MessageRange, ModuleActivity,
    StatusCounts, StoreError, TimeRange,
};
pub(super) use serde_json::json;

pub(super) use crate::conformance::{
    ensure, ensure_eq, ensure_err,
    fixtures::{at, conversation, message_id, name, object, shared, stored_with_turns, talk},
    CheckResult, Failure, StoreFactory,
};

pub(super) fn turns_of(messages: &[colloquy_core::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.turn).collect()
}

/// Creates conversations started at the given offsets (seconds) and ends some of them.
pub(super) async fn population(
    store: &impl ConversationStore,
    plan: &[(&[&str], u64, u64, Option<StatusKind>)],
) -> Result<Vec<Conversation>, Failure> {
    let mut out = Vec::new();
    for (participants, start_s, turns, end) in plan {
        let start = at(start_s * 1_000);
        let (mut c, _) = stored_with_turns(store, participants, start, *turns).await?;
        let later = Timestamp::from_millis(c.last_activity().as_millis() + 10_000);
        match end {
            Some(StatusKind::Completed) => c.complete(later)?,
            Some(StatusKind::Failed) => c.fail("test failure", later)?,
            Some(StatusKind::Paused) => c.pause(later)?,
            Some(StatusKind::TimedOut) => c.time_out(Timestamp::from_millis(
                c.last_activity().as_millis() + 300_000,
            ))?,
            Some(StatusKind::Active) | None => {}
        }
        if end.is_some() {
            c.bump_version();
            store.update(&c).await?;
        }
        out.push(c);
    }
    Ok(out)
}

pub(super) fn ids(conversations: &[Conversation]) -> Vec<ConversationId> {
    conversations.iter().map(Conversation::id).collect()
}

/// The conversation as `store` holds it now; a failure if it is gone.
pub(super) async fn stored(
    store: &impl ConversationStore,
    id: ConversationId,
) -> Result<Conversation, Failure> {
    store
        .conversation(id)
        .await?
        .ok_or_else(|| Failure(format!("conversation {id} vanished")))
}
