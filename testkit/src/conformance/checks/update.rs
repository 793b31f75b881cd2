//! Updating a conversation's state: versions, conflicts, ended conversations, the shared state's changes.

use super::prelude::*;

/// `update` stores status, phase and context changes.
pub async fn update_stores_state<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    c.apply_context_patch(&object(json!({"schema": {"name": "string"}})), at(3_000))?;
    c.advance_phase(Phase::Confirmation, at(3_000))?;
    c.pause(at(4_000))?;
    c.bump_version();
    store.update(&c).await?;
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c.clone()),
        "paused state"
    );
    c.resume(at(5_000))?;
    c.complete(at(6_000))?;
    c.bump_version();
    store.update(&c).await?;
    let stored = stored(&store, c.id()).await?;
    ensure_eq!(stored.status(), &Status::Completed, "status");
    ensure_eq!(stored.ended_at(), Some(at(6_000)), "end time");
    ensure_eq!(stored, c, "completed state");
    Ok(())
}

/// Updating a conversation that was never created is `NotFound`.
pub async fn update_unknown_is_not_found<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = conversation(&["a", "b"], at(0))?;
    ensure_err!(
        store.update(&c).await,
        StoreError::NotFound { .. },
        "update without create"
    );
    Ok(())
}

/// An update whose turn count differs from the stored one is a `Conflict`, whether the
/// given state is behind the store or ahead of it.
pub async fn stale_update_is_conflict<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let mut stale = c.clone();
    let messages = talk(&mut c, 2, at(1_000))?;
    store.append(&c, &shared(&messages)).await?;
    stale.pause(at(5_000))?;
    stale.bump_version();
    ensure_err!(
        store.update(&stale).await,
        StoreError::Conflict { turn: 2, .. },
        "update from a state without the last 2 turns"
    );
    // Ahead: a state with a turn the store never saw.
    let mut ahead = c.clone();
    let unsent = talk(&mut ahead, 1, at(3_000))?;
    ensure_eq!(unsent.len(), 1, "one turn accepted locally");
    ensure_err!(
        store.update(&ahead).await,
        StoreError::Conflict { turn: 2, .. },
        "update from a state with a turn the store does not hold"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c),
        "stored state unchanged"
    );
    Ok(())
}

/// Two writers read the same state; the first write wins and the second, computed from
/// what is now stale, is a `Conflict` (compare-and-set on the version), whether it is an
/// update or an append. Nothing of the loser is stored.
pub async fn write_from_a_stale_read_is_conflict<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    let (mut first, mut second) = (c.clone(), c.clone());
    first.apply_context_patch(&object(json!({"by": "first"})), at(3_000))?;
    first.bump_version();
    store.update(&first).await?;
    second.apply_context_patch(&object(json!({"by": "second"})), at(3_500))?;
    second.bump_version();
    ensure_err!(
        store.update(&second).await,
        StoreError::Conflict { .. },
        "update computed from a stale state"
    );
    let mut third = c.clone();
    let batch = talk(&mut third, 1, at(4_000))?;
    ensure_err!(
        store.append(&third, &shared(&batch)).await,
        StoreError::Conflict { .. },
        "append computed from a stale state"
    );
    // A state whose version skips writes the store never saw is refused too.
    let mut skipping = first.clone();
    skipping.bump_version();
    skipping.bump_version();
    ensure_err!(
        store.update(&skipping).await,
        StoreError::Conflict { .. },
        "update with a version ahead of the store"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(first.clone()),
        "the first write stands"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?.len(),
        2,
        "no message of the stale append"
    );
    Ok(())
}

/// After a conflict, the writer reloads the stored state, applies its change again and
/// succeeds: "reload and retry" is always enough.
pub async fn conflict_then_reload_succeeds<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    let mut other = c.clone();
    other.apply_context_patch(&object(json!({"other": 1})), at(3_000))?;
    other.bump_version();
    store.update(&other).await?;
    let mut mine = c.clone();
    let batch = talk(&mut mine, 1, at(4_000))?;
    ensure_err!(
        store.append(&mine, &shared(&batch)).await,
        StoreError::Conflict { .. },
        "append from the state before the other writer's"
    );
    let mut reloaded = stored(&store, c.id()).await?;
    let batch = talk(&mut reloaded, 1, at(4_000))?;
    store.append(&reloaded, &shared(&batch)).await?;
    let stored = stored(&store, c.id()).await?;
    ensure_eq!(stored.turn_count(), 3, "the retried turn is stored");
    ensure_eq!(
        stored.context().get("other"),
        Some(&json!(1)),
        "the other writer's patch is kept"
    );
    ensure_eq!(stored, reloaded, "stored state is the retried one");
    Ok(())
}

/// An ended conversation is final: no writer, however current its version, can append
/// to it or write it back to an active state.
pub async fn an_ended_conversation_is_final<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    let before_end = c.clone();
    c.complete(at(5_000))?;
    c.bump_version();
    store.update(&c).await?;
    // An append computed from the active state before the end, at the stored version + 1.
    let mut late = before_end.clone();
    let batch = talk(&mut late, 1, at(6_000))?;
    let mut late = Conversation::from_parts(colloquy_core::ConversationParts {
        version: c.version() + 1,
        ..late.into_parts()
    })?;
    ensure_err!(
        store.append(&late, &shared(&batch)).await,
        StoreError::Conflict { .. },
        "append to an ended conversation"
    );
    // The same, as a state change: reopening it.
    late = Conversation::from_parts(colloquy_core::ConversationParts {
        version: c.version() + 1,
        ..before_end.into_parts()
    })?;
    ensure_err!(
        store.update(&late).await,
        StoreError::Conflict { .. },
        "update that reopens an ended conversation"
    );
    // Even a terminal state at the right version cannot be written again.
    let mut again = c.clone();
    again.bump_version();
    ensure_err!(
        store.update(&again).await,
        StoreError::Conflict { .. },
        "second write of an ended conversation"
    );
    let stored = stored(&store, c.id()).await?;
    ensure_eq!(stored, c, "the ended state stands");
    ensure_eq!(stored.ended_at(), Some(at(5_000)), "end time kept");
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?.len(),
        2,
        "no turn after the end"
    );
    Ok(())
}

/// A failure reason survives storage.
pub async fn failure_reason_round_trips<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 1).await?;
    c.fail("validator rejected field 'age': not an integer", at(9_000))?;
    c.bump_version();
    store.update(&c).await?;
    let stored = stored(&store, c.id()).await?;
    ensure_eq!(
        stored.status(),
        &Status::Failed {
            reason: "validator rejected field 'age': not an integer".into()
        },
        "status with reason"
    );
    Ok(())
}

/// After a transfer, listing by participant finds the new module and not the old one.
pub async fn transfer_updates_participant_filter<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    c.transfer(&name("b")?, name("c")?, at(5_000))?;
    c.bump_version();
    store.update(&c).await?;
    let by = |m: &str| Ok::<_, Failure>(ListFilter::new().participant(name(m)?));
    ensure_eq!(
        store.list(&by("c")?).await?.conversations,
        vec![c.clone()],
        "listed under the new participant"
    );
    ensure_eq!(
        store.list(&by("b")?).await?.conversations,
        vec![],
        "not listed under the old participant"
    );
    let more = talk(&mut c, 1, at(6_000))?;
    store.append(&c, &shared(&more)).await?;
    ensure_eq!(
        more[0].target,
        name("c")?,
        "turn 3 goes to the new participant"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c),
        "state after transfer and append"
    );
    Ok(())
}

/// Each write's change to the shared state is stored with it: the whole state at creation,
/// then one entry per write that changed the context, participants, phase or status; none
/// for a write that changed only turns, none twice for a retried write, none for a
/// refused one.
pub async fn state_changes_are_stored_with_their_writes<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = conversation(&["a", "b"], at(0))?;
    let mut c = c.with_context(object(json!({"goal": "x"})));
    store.create(&c).await?;
    let created = store.state_changes(c.id()).await?;
    ensure_eq!(created.len(), 1, "the creation is recorded");
    ensure_eq!(created[0].version, 0, "at version 0");
    ensure_eq!(
        created[0].context,
        Some(object(json!({"goal": "x"}))),
        "with its context"
    );
    ensure_eq!(
        created[0].participants,
        Some(vec![name("a")?, name("b")?]),
        "and participants"
    );
    ensure_eq!(created[0].status, Some(Status::Active), "and status");

    let plain = talk(&mut c, 2, at(1_000))?;
    store.append(&c, &shared(&plain)).await?;
    ensure_eq!(
        store.state_changes(c.id()).await?.len(),
        1,
        "turns alone change nothing shared"
    );

    let stale = c.clone();
    c.apply_context_patch(&object(json!({"goal": null, "found": 7})), at(3_000))?;
    let patched = talk(&mut c, 1, at(3_000))?;
    store.append(&c, &shared(&patched)).await?;
    store.append(&c, &shared(&patched)).await?;
    let changes = store.state_changes(c.id()).await?;
    ensure_eq!(changes.len(), 2, "the patch is recorded once, retry or not");
    ensure_eq!(changes[1].version, c.version(), "at the version written");
    ensure_eq!(changes[1].turn, 3, "with the turn it came with");
    ensure_eq!(
        changes[1].context,
        Some(object(json!({"found": 7}))),
        "the context after it"
    );

    let mut refused = stale;
    refused.apply_context_patch(&object(json!({"lost": true})), at(4_000))?;
    refused.bump_version();
    ensure_err!(
        store.update(&refused).await,
        StoreError::Conflict { .. },
        "a stale write"
    );
    ensure_eq!(
        store.state_changes(c.id()).await?.len(),
        2,
        "a refused write records nothing"
    );

    c.transfer(&name("b")?, name("c")?, at(5_000))?;
    c.fail("gave up", at(5_000))?;
    c.bump_version();
    store.update(&c).await?;
    let changes = store.state_changes(c.id()).await?;
    ensure_eq!(changes.len(), 3, "the end is recorded");
    let last = &changes[2];
    ensure_eq!(
        last.participants,
        Some(vec![name("a")?, name("c")?]),
        "the transfer"
    );
    ensure_eq!(
        last.status,
        Some(Status::Failed {
            reason: "gave up".into()
        }),
        "the failure"
    );
    ensure_eq!(last.phase, Some(Phase::Termination), "the phase");
    ensure_eq!(last.context, None, "the context did not change");

    let unknown = conversation(&["a", "b"], at(0))?.id();
    ensure_err!(
        store.state_changes(unknown).await,
        StoreError::NotFound { conversation } if conversation == unknown,
        "changes of an unknown conversation"
    );
    Ok(())
}
