//! The checks. Each is a plain `async fn` over a [`StoreFactory`], usable on its own.

use std::sync::Arc;

use colloquy_core::{
    Conversation, ConversationId, MessageKind, ModuleInfo, Phase, Status, StatusKind, Timestamp,
};
use colloquy_storage::{
    Analytics, AppendOutcome, ConversationStore, ListFilter, MessageRange, ModuleActivity,
    StatusCounts, StoreError, TimeRange,
};
use serde_json::json;

use super::{
    ensure, ensure_eq, ensure_err,
    fixtures::{at, conversation, message_id, name, object, stored_with_turns, talk},
    CheckResult, Failure, StoreFactory,
};

fn turns_of(messages: &[colloquy_core::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.turn).collect()
}

/// A stored conversation reads back equal in every field.
pub async fn create_then_read_back<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut context = serde_json::Map::new();
    context.insert("goal".into(), json!("agree on a schema"));
    let mut metadata = serde_json::Map::new();
    metadata.insert("tenant".into(), json!(42));
    let c = conversation(&["extractor", "validator", "planner"], at(0))?
        .with_max_turns(40)
        .with_context(context)
        .with_metadata(metadata);
    store.create(&c).await?;
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c.clone()),
        "read back after create"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        vec![],
        "a new conversation has no messages"
    );
    Ok(())
}

/// Creating an existing id fails with `AlreadyExists`.
pub async fn create_twice_is_already_exists<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    ensure_err!(store.create(&c).await, StoreError::AlreadyExists { conversation } if conversation == c.id(), "second create");
    Ok(())
}

/// A conversation that already has turns cannot be created (its messages would be missing).
pub async fn create_with_turns_is_invalid<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    talk(&mut c, 1, at(1))?;
    ensure_err!(
        store.create(&c).await,
        StoreError::InvalidInput { .. },
        "create with turn count 1"
    );
    ensure_eq!(store.conversation(c.id()).await?, None, "nothing stored");
    Ok(())
}

/// Unknown ids read as `None`, and their messages as `NotFound`.
pub async fn unknown_conversation_reads_nothing<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let unknown = conversation(&["a", "b"], at(0))?.id();
    ensure_eq!(
        store.conversation(unknown).await?,
        None,
        "unknown conversation"
    );
    ensure_err!(
        store.messages(unknown, MessageRange::All).await,
        StoreError::NotFound { conversation } if conversation == unknown,
        "messages of an unknown conversation"
    );
    Ok(())
}

/// `append` stores the messages and the new state together.
pub async fn append_stores_messages_and_state<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let messages = talk(&mut c, 3, at(1_000))?;
    ensure_eq!(
        store.append(&c, &messages).await?,
        AppendOutcome {
            inserted: 3,
            duplicates: 0
        },
        "append outcome"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        messages,
        "stored messages"
    );
    let stored = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
    ensure_eq!(stored.turn_count(), 3, "stored turn count");
    ensure_eq!(stored.last_activity(), at(3_000), "stored last activity");
    ensure_eq!(stored, c, "stored state");
    Ok(())
}

/// Turns appended one batch at a time stay contiguous.
pub async fn append_in_several_batches<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    for i in 0..5 {
        let batch = talk(&mut c, 1, at(1_000 * (i + 1)))?;
        store.append(&c, &batch).await?;
    }
    let stored = store.messages(c.id(), MessageRange::All).await?;
    ensure_eq!(
        turns_of(&stored),
        vec![1, 2, 3, 4, 5],
        "turns after five appends"
    );
    ensure_eq!(
        store.conversation(c.id()).await?.map(|c| c.turn_count()),
        Some(5),
        "turn count"
    );
    Ok(())
}

/// Re-appending stored messages is a no-op that neither duplicates rows nor rolls the state
/// back.
pub async fn append_is_idempotent_on_message_id<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let first = talk(&mut c, 2, at(1_000))?;
    let early_state = c.clone();
    store.append(&c, &first).await?;
    let second = talk(&mut c, 2, at(5_000))?;
    store.append(&c, &second).await?;
    ensure_eq!(
        store.append(&early_state, &first).await?,
        AppendOutcome {
            inserted: 0,
            duplicates: 2
        },
        "retried append"
    );
    ensure_eq!(
        turns_of(&store.messages(c.id(), MessageRange::All).await?),
        vec![1, 2, 3, 4],
        "no duplicate rows"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c.clone()),
        "state not rolled back"
    );
    ensure_eq!(
        store.append(&c, &second).await?,
        AppendOutcome {
            inserted: 0,
            duplicates: 2
        },
        "retried latest append"
    );
    Ok(())
}

/// A different message at a stored turn is a `Conflict`, and the stored one stays.
pub async fn turn_collision_is_conflict<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let mut rival = c.clone();
    let winner = talk(&mut c, 1, at(1_000))?;
    store.append(&c, &winner).await?;
    let loser = talk(&mut rival, 1, at(1_500))?;
    ensure_err!(
        store.append(&rival, &loser).await,
        StoreError::Conflict { turn: 1, .. },
        "second message at turn 1"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        winner,
        "the first message stays"
    );
    Ok(())
}

/// New messages must continue the stored turns exactly: a gap is a `Conflict`.
pub async fn turn_gap_is_conflict<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let messages = talk(&mut c, 3, at(1_000))?;
    ensure_err!(
        store.append(&c, &messages[2..]).await,
        StoreError::Conflict { turn: 3, .. },
        "turn 3 with turns 1 and 2 missing"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        vec![],
        "nothing written"
    );
    ensure_eq!(
        store.conversation(c.id()).await?.map(|c| c.turn_count()),
        Some(0),
        "state unchanged"
    );
    Ok(())
}

/// A stored message id reused at another turn is a `Conflict`.
pub async fn reused_message_id_is_conflict<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let first = talk(&mut c, 1, at(1_000))?;
    store.append(&c, &first).await?;
    let mut second = talk(&mut c, 1, at(2_000))?;
    second[0].id = first[0].id;
    ensure_err!(
        store.append(&c, &second).await,
        StoreError::Conflict { turn: 2, .. },
        "id of turn 1 reused at turn 2"
    );
    ensure_eq!(
        turns_of(&store.messages(c.id(), MessageRange::All).await?),
        vec![1],
        "turn 2 not written"
    );
    Ok(())
}

/// A batch that fails part-way writes none of its messages and not its state.
pub async fn failed_append_writes_nothing<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let first = talk(&mut c, 1, at(1_000))?;
    store.append(&c, &first).await?;
    let before = c.clone();
    let mut batch = talk(&mut c, 3, at(2_000))?;
    batch[2].id = first[0].id;
    ensure_err!(
        store.append(&c, &batch).await,
        StoreError::Conflict { .. },
        "batch whose third message reuses an id"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        first,
        "no message of the batch written"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(before),
        "state of the batch not written"
    );
    Ok(())
}

/// Inconsistent batches are refused with `InvalidInput` before anything is written.
pub async fn append_checks_batch_consistency<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    let mut other = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    store.create(&other).await?;
    ensure_err!(
        store.append(&c, &[]).await,
        StoreError::InvalidInput { .. },
        "empty batch"
    );
    let foreign = talk(&mut other, 1, at(1_000))?;
    let _ = talk(&mut c, 1, at(1_000))?;
    ensure_err!(
        store.append(&c, &foreign).await,
        StoreError::InvalidInput { .. },
        "message of another conversation"
    );
    let two = talk(&mut c, 2, at(2_000))?;
    ensure_err!(
        store.append(&c, &two[..1]).await,
        StoreError::InvalidInput { .. },
        "state ahead of the last message"
    );
    let reversed = vec![two[1].clone(), two[0].clone()];
    ensure_err!(
        store.append(&c, &reversed).await,
        StoreError::InvalidInput { .. },
        "turns out of order"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        vec![],
        "nothing written"
    );
    Ok(())
}

/// Appending to a conversation that was never created is `NotFound`.
pub async fn append_to_unknown_conversation_is_not_found<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    let messages = talk(&mut c, 1, at(1_000))?;
    ensure_err!(
        store.append(&c, &messages).await,
        StoreError::NotFound { conversation } if conversation == c.id(),
        "append without create"
    );
    Ok(())
}

/// Every [`MessageRange`] returns the right turns in ascending order.
pub async fn message_ranges<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (c, messages) = stored_with_turns(&store, &["a", "b"], at(0), 10).await?;
    let id = c.id();
    let cases: [(MessageRange, Vec<u64>); 9] = [
        (MessageRange::All, (1..=10).collect()),
        (MessageRange::After(7), vec![8, 9, 10]),
        (MessageRange::After(0), (1..=10).collect()),
        (MessageRange::After(10), vec![]),
        (MessageRange::Last(3), vec![8, 9, 10]),
        (MessageRange::Last(50), (1..=10).collect()),
        (MessageRange::Last(0), vec![]),
        (MessageRange::Turns { first: 3, last: 5 }, vec![3, 4, 5]),
        (MessageRange::Turns { first: 9, last: 20 }, vec![9, 10]),
    ];
    for (range, expected) in cases {
        let got = store.messages(id, range).await?;
        ensure_eq!(turns_of(&got), expected, "turns of {range:?}");
    }
    let last = store.messages(id, MessageRange::Last(2)).await?;
    ensure_eq!(last, messages[8..].to_vec(), "last two messages, whole");
    Ok(())
}

/// Content, kinds, times and `in_reply_to` come back exactly as written.
pub async fn content_round_trips_exactly<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let contents = [
        json!({"text": "héllo, 世界 🚀", "quote": "\"'\\\n\t", "nul": "a\u{0}b"}),
        json!({"nested": {"list": [1, 2.5, -3, null, true, {"deep": [[[]]]}]}, "max": i64::MAX, "min": i64::MIN, "u": u64::MAX}),
        json!("x".repeat(100_000)),
        json!(null),
        json!([]),
        json!(0.1),
    ];
    let mut messages = Vec::new();
    for (i, content) in contents.into_iter().enumerate() {
        let now = at(1_000 + i as u64);
        let turn = c.turn_count() + 1;
        let (src, dst) = if turn % 2 == 1 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let kind = MessageKind::ALL[i % MessageKind::ALL.len()];
        let mut draft = colloquy_core::Draft::new(name(src)?, name(dst)?, kind, content);
        draft.in_reply_to = messages.last().map(|m: &colloquy_core::Message| m.id);
        messages.push(c.accept(draft, message_id(now), now)?);
    }
    c.bump_version();
    store.append(&c, &messages).await?;
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        messages,
        "messages read back"
    );
    Ok(())
}

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
    let stored = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
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
    store.append(&c, &messages).await?;
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
        store.append(&third, &batch).await,
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
        store.append(&mine, &batch).await,
        StoreError::Conflict { .. },
        "append from the state before the other writer's"
    );
    let mut reloaded = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
    let batch = talk(&mut reloaded, 1, at(4_000))?;
    store.append(&reloaded, &batch).await?;
    let stored = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
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
        store.append(&late, &batch).await,
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
    let stored = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
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
    let stored = store
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("conversation vanished".into()))?;
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
    store.append(&c, &more).await?;
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

/// A module that sent a turn and was then transferred out still took part in the
/// conversation: analytics count who spoke, not only who is left.
pub async fn analytics_count_a_module_transferred_out<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    // a -> b, b -> a: both spoke; then b hands its place to c, who has not spoken yet.
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    c.transfer(&name("b")?, name("c")?, at(5_000))?;
    c.bump_version();
    store.update(&c).await?;
    // A second conversation in which b never speaks and is transferred out before any turn:
    // it did not take part there.
    let mut quiet = conversation(&["d", "b"], at(10_000))?;
    store.create(&quiet).await?;
    quiet.transfer(&name("b")?, name("e")?, at(11_000))?;
    quiet.bump_version();
    store.update(&quiet).await?;
    let got = store.analytics(TimeRange::all()).await?.modules;
    let module = |m: &str, initiated, participated| {
        Ok::<_, Failure>(ModuleActivity {
            module: name(m)?,
            initiated,
            participated,
        })
    };
    ensure_eq!(
        got,
        vec![
            module("a", 1, 1)?,
            module("b", 0, 1)?,
            module("c", 0, 1)?,
            module("d", 1, 1)?,
            module("e", 0, 1)?,
        ],
        "module activity after transfers"
    );
    Ok(())
}

/// A stored message is found by its id alone, in whichever conversation; an id never stored
/// finds nothing.
pub async fn a_message_is_found_by_its_id<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (_, first) = stored_with_turns(&store, &["a", "b"], at(0), 2).await?;
    let (_, second) = stored_with_turns(&store, &["c", "d"], at(10_000), 3).await?;
    for message in first.iter().chain(&second) {
        ensure_eq!(
            store.message(message.id).await?,
            Some(message.clone()),
            "a stored message by its id"
        );
    }
    ensure_eq!(
        store.message(message_id(at(20_000))).await?,
        None,
        "an id never stored"
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
    store.append(&c, &plain).await?;
    ensure_eq!(
        store.state_changes(c.id()).await?.len(),
        1,
        "turns alone change nothing shared"
    );

    let stale = c.clone();
    c.apply_context_patch(&object(json!({"goal": null, "found": 7})), at(3_000))?;
    let patched = talk(&mut c, 1, at(3_000))?;
    store.append(&c, &patched).await?;
    store.append(&c, &patched).await?;
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

/// Creates conversations started at the given offsets (seconds) and ends some of them.
async fn population(
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

fn ids(conversations: &[Conversation]) -> Vec<ConversationId> {
    conversations.iter().map(Conversation::id).collect()
}

/// Listing by status returns exactly that status, newest first.
pub async fn list_filters_by_status<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = population(
        &store,
        &[
            (&["a", "b"], 10, 1, None),
            (&["a", "b"], 20, 2, Some(StatusKind::Completed)),
            (&["a", "b"], 30, 1, None),
            (&["a", "b"], 40, 3, Some(StatusKind::Failed)),
            (&["a", "b"], 50, 0, Some(StatusKind::Paused)),
            (&["a", "b"], 60, 2, Some(StatusKind::Completed)),
        ],
    )
    .await?;
    let all = store.list(&ListFilter::new()).await?;
    ensure_eq!(
        ids(&all.conversations),
        ids(&[
            c[5].clone(),
            c[4].clone(),
            c[3].clone(),
            c[2].clone(),
            c[1].clone(),
            c[0].clone()
        ]),
        "all, newest first"
    );
    ensure_eq!(all.next, None, "a single page");
    let completed = store
        .list(&ListFilter::new().status(StatusKind::Completed))
        .await?;
    ensure_eq!(
        ids(&completed.conversations),
        vec![c[5].id(), c[1].id()],
        "completed"
    );
    let active = store
        .list(&ListFilter::new().status(StatusKind::Active))
        .await?;
    ensure_eq!(
        ids(&active.conversations),
        vec![c[2].id(), c[0].id()],
        "active"
    );
    let timed_out = store
        .list(&ListFilter::new().status(StatusKind::TimedOut))
        .await?;
    ensure_eq!(timed_out.conversations.len(), 0, "timed out");
    ensure_eq!(
        completed.conversations[0],
        c[5],
        "listed conversations are whole"
    );
    Ok(())
}

/// Listing by participant returns the conversations the module takes part in.
pub async fn list_filters_by_participant<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = population(
        &store,
        &[
            (&["a", "b"], 10, 1, None),
            (&["b", "c"], 20, 1, None),
            (&["c", "a", "d"], 30, 1, Some(StatusKind::Completed)),
        ],
    )
    .await?;
    let list = |m: &'static str| {
        let store = &store;
        async move {
            Ok::<_, Failure>(ids(&store
                .list(&ListFilter::new().participant(name(m)?))
                .await?
                .conversations))
        }
    };
    ensure_eq!(list("a").await?, vec![c[2].id(), c[0].id()], "module a");
    ensure_eq!(list("b").await?, vec![c[1].id(), c[0].id()], "module b");
    ensure_eq!(list("d").await?, vec![c[2].id()], "module d");
    ensure_eq!(list("zed").await?, vec![], "unknown module");
    let both = store
        .list(
            &ListFilter::new()
                .participant(name("c")?)
                .status(StatusKind::Active),
        )
        .await?;
    ensure_eq!(
        ids(&both.conversations),
        vec![c[1].id()],
        "module c and active"
    );
    Ok(())
}

/// The start-time filter is half-open: `[from, until)`.
pub async fn list_filters_by_start_range<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = population(
        &store,
        &[
            (&["a", "b"], 10, 0, None),
            (&["a", "b"], 20, 0, None),
            (&["a", "b"], 30, 0, None),
        ],
    )
    .await?;
    let range = |from: u64, until: u64| {
        ListFilter::new().started(TimeRange::between(at(from * 1_000), at(until * 1_000)))
    };
    ensure_eq!(
        ids(&store.list(&range(10, 30)).await?.conversations),
        vec![c[1].id(), c[0].id()],
        "[10s, 30s)"
    );
    ensure_eq!(
        ids(&store.list(&range(11, 31)).await?.conversations),
        vec![c[2].id(), c[1].id()],
        "[11s, 31s)"
    );
    let since = ListFilter::new().started(TimeRange::since(at(20_000)));
    ensure_eq!(
        ids(&store.list(&since).await?.conversations),
        vec![c[2].id(), c[1].id()],
        "since 20s"
    );
    Ok(())
}

/// Paging with the cursor visits every conversation exactly once, in order, even when
/// several start at the same millisecond.
pub async fn list_pages_cover_everything_once<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut expected = Vec::new();
    for i in 0..25u64 {
        // Pairs share a start time, so the id must break ties.
        let c = conversation(&["a", "b"], at((i / 2) * 1_000))?;
        store.create(&c).await?;
        expected.push(c);
    }
    expected.sort_by_key(|c| std::cmp::Reverse((c.started_at(), c.id())));
    let mut seen = Vec::new();
    let mut filter = ListFilter::new().limit(7);
    let mut pages = 0;
    loop {
        let page = store.list(&filter).await?;
        pages += 1;
        ensure!(
            page.conversations.len() <= 7,
            "page {pages} has {} conversations, limit 7",
            page.conversations.len()
        );
        seen.extend(page.conversations);
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => break,
        }
        ensure!(pages <= 10, "paging does not end");
    }
    ensure_eq!(pages, 4, "pages of 7 for 25 conversations");
    ensure_eq!(ids(&seen), ids(&expected), "conversations across pages");
    Ok(())
}

/// Analytics equal sums computed by hand, and `count_by_status` agrees with them.
pub async fn analytics_matches_hand_computed<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    // talk() spaces turns 1 s apart from the start; ending adds 10 s after the last turn.
    population(
        &store,
        &[
            (&["a", "b"], 0, 4, Some(StatusKind::Completed)), // ends at 3 s + 10 s = 13 s
            (&["b", "c"], 100, 2, Some(StatusKind::Failed)),  // 1 s + 10 s = 11 s
            (&["a", "c"], 200, 3, None),                      // last activity 2 s
            (&["c", "a", "b"], 300, 1, Some(StatusKind::TimedOut)), // timed out: its last activity, 0 s
        ],
    )
    .await?;
    let got = store.analytics(TimeRange::all()).await?;
    let module = |m: &str, initiated, participated| {
        Ok::<_, Failure>(ModuleActivity {
            module: name(m)?,
            initiated,
            participated,
        })
    };
    let expected = Analytics {
        conversations: 4,
        by_status: StatusCounts {
            active: 1,
            paused: 0,
            completed: 1,
            timed_out: 1,
            failed: 1,
        },
        total_turns: 10,
        total_duration_ms: 13_000 + 11_000 + 2_000 + 300_000,
        modules: vec![module("a", 2, 3)?, module("b", 1, 3)?, module("c", 1, 3)?],
    };
    ensure_eq!(got, expected, "analytics over all conversations");
    ensure_eq!(
        store.count_by_status().await?,
        expected.by_status,
        "count_by_status agrees with the analytics"
    );
    ensure!(
        (got.average_turns() - 2.5).abs() < 1e-9,
        "average turns {} != 2.5",
        got.average_turns()
    );
    Ok(())
}

/// Analytics count only conversations started within the range.
pub async fn analytics_respects_time_range<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    population(
        &store,
        &[
            (&["a", "b"], 0, 4, Some(StatusKind::Completed)),
            (&["b", "c"], 100, 2, None),
            (&["c", "d"], 200, 6, None),
        ],
    )
    .await?;
    let got = store
        .analytics(TimeRange::between(at(100_000), at(200_000)))
        .await?;
    ensure_eq!(got.conversations, 1, "conversations in [100s, 200s)");
    ensure_eq!(got.total_turns, 2, "turns in range");
    ensure_eq!(got.by_status.get(StatusKind::Active), 1, "active in range");
    ensure_eq!(
        got.modules
            .iter()
            .map(|m| m.module.as_str().to_owned())
            .collect::<Vec<_>>(),
        vec!["b".to_owned(), "c".to_owned()],
        "modules in range"
    );
    Ok(())
}

/// An empty store has all-zero analytics.
pub async fn analytics_of_empty_store_is_zero<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let got = store.analytics(TimeRange::all()).await?;
    ensure_eq!(got, Analytics::default(), "empty analytics");
    ensure_eq!(got.average_turns(), 0.0, "average of nothing");
    Ok(())
}

/// Prune deletes ended conversations that ended before the cutoff, with their messages,
/// and nothing else.
pub async fn prune_removes_only_ended_before<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let c = population(
        &store,
        &[
            (&["a", "b"], 0, 2, Some(StatusKind::Completed)), // ends 11 s
            (&["a", "b"], 10, 1, Some(StatusKind::Failed)),   // ends 20 s
            (&["a", "b"], 20, 1, Some(StatusKind::TimedOut)), // ends 320 s
            (&["a", "b"], 30, 3, None),                       // active, old
            (&["a", "b"], 40, 1, Some(StatusKind::Paused)),   // paused, old
            (&["a", "b"], 1_000, 1, Some(StatusKind::Completed)), // ends 1010 s
        ],
    )
    .await?;
    ensure_eq!(store.prune(at(400_000)).await?, 3, "pruned conversations");
    for gone in &c[..3] {
        ensure_eq!(
            store.conversation(gone.id()).await?,
            None,
            "pruned conversation {}",
            gone.id()
        );
        ensure_err!(
            store.messages(gone.id(), MessageRange::All).await,
            StoreError::NotFound { .. },
            "messages of a pruned conversation"
        );
    }
    for kept in &c[3..] {
        ensure_eq!(
            store.conversation(kept.id()).await?,
            Some(kept.clone()),
            "kept conversation"
        );
        ensure_eq!(
            store.messages(kept.id(), MessageRange::All).await?.len() as u64,
            kept.turn_count(),
            "kept messages"
        );
    }
    ensure_eq!(
        store.analytics(TimeRange::all()).await?.conversations,
        3,
        "analytics after prune"
    );
    ensure_eq!(store.prune(at(400_000)).await?, 0, "pruning again");
    Ok(())
}

/// `ping` answers on a healthy store.
pub async fn ping_answers<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    store.ping().await?;
    Ok(())
}

/// Module registrations are recorded, replaced by name and listed by name.
pub async fn modules_recorded_and_replaced<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let validator = ModuleInfo::new(name("validator")?)
        .with_description("checks records")
        .with_capability("schema.validate".parse()?)
        .with_input_schema(json!({"type": "object"}));
    let extractor = ModuleInfo::new(name("extractor")?).with_version("1.2.0");
    store.record_module(&validator, at(1)).await?;
    store.record_module(&extractor, at(2)).await?;
    let validator2 = validator
        .clone()
        .with_description("checks records, strictly")
        .with_version("2.0.0");
    store.record_module(&validator2, at(3)).await?;
    let got = store.modules().await?;
    ensure_eq!(got.len(), 2, "one record per name");
    ensure_eq!(got[0].info, extractor, "extractor first (sorted by name)");
    ensure_eq!(got[0].registered_at, at(2), "extractor registration time");
    ensure_eq!(got[1].info, validator2, "validator replaced");
    ensure_eq!(got[1].registered_at, at(3), "validator registration time");
    Ok(())
}

/// A new handle on the same data finds everything the first one wrote.
pub async fn reopen_finds_everything<F: StoreFactory>(f: &F) -> CheckResult {
    let first = f.open().await?;
    let (mut c, mut messages) = stored_with_turns(&first, &["a", "b"], at(0), 3).await?;
    c.apply_context_patch(&object(json!({"k": "v"})), at(10_000))?;
    let more = talk(&mut c, 1, at(11_000))?;
    first.append(&c, &more).await?;
    messages.extend(more);
    let info = ModuleInfo::new(name("a")?);
    first.record_module(&info, at(5)).await?;
    drop(first);
    let second = f.open().await?;
    ensure_eq!(
        second.conversation(c.id()).await?,
        Some(c.clone()),
        "conversation after reopen"
    );
    ensure_eq!(
        second.messages(c.id(), MessageRange::All).await?,
        messages,
        "messages after reopen"
    );
    ensure_eq!(second.modules().await?.len(), 1, "modules after reopen");
    Ok(())
}

/// Appends to 100 conversations from 100 tasks at once: every turn of every conversation
/// is stored, contiguous.
pub async fn concurrent_appends_to_100_conversations<F: StoreFactory>(f: &F) -> CheckResult {
    let store = Arc::new(f.open().await?);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut c = conversation(&["a", "b"], at(i))?;
            store.create(&c).await?;
            for t in 0..10 {
                let batch = talk(&mut c, 1, at(1_000 + t))?;
                store.append(&c, &batch).await?;
            }
            Ok::<_, Failure>(c.id())
        });
    }
    let mut created = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        created.push(joined.map_err(|e| Failure(format!("task failed: {e}")))??);
    }
    ensure_eq!(created.len(), 100, "conversations");
    for id in created {
        let turns = turns_of(&store.messages(id, MessageRange::All).await?);
        ensure_eq!(turns, (1..=10).collect::<Vec<_>>(), "turns of {id}");
    }
    ensure_eq!(
        store.analytics(TimeRange::all()).await?.total_turns,
        1_000,
        "total turns"
    );
    Ok(())
}

/// Two handles (two processes' worth of connections) append at once: no error surfaces
/// (no "database is locked"), nothing is lost.
pub async fn two_handles_append_concurrently<F: StoreFactory>(f: &F) -> CheckResult {
    let handles = [Arc::new(f.open().await?), Arc::new(f.open().await?)];
    let mut tasks = tokio::task::JoinSet::new();
    for (h, store) in handles.iter().enumerate() {
        for i in 0..40u64 {
            let store = Arc::clone(store);
            tasks.spawn(async move {
                let mut c = conversation(&["a", "b"], at(h as u64 * 1_000 + i))?;
                store.create(&c).await?;
                let mut sent = Vec::new();
                for t in 0..10 {
                    let batch = talk(&mut c, 1, at(10_000 + t))?;
                    store.append(&c, &batch).await?;
                    sent.extend(batch);
                }
                Ok::<_, Failure>((c.id(), sent))
            });
        }
    }
    let mut sent = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        sent.push(joined.map_err(|e| Failure(format!("task failed: {e}")))??);
    }
    // Every conversation holds exactly its own messages at turns 1..=10, whichever
    // handle wrote them.
    let reader = f.open().await?;
    for (id, messages) in &sent {
        ensure_eq!(
            &reader.messages(*id, MessageRange::All).await?,
            messages,
            "messages of {id}"
        );
        ensure_eq!(
            turns_of(messages),
            (1..=10).collect::<Vec<_>>(),
            "turns of {id}"
        );
    }
    let third = f.open().await?;
    let all = third.list(&ListFilter::new().limit(1_000)).await?;
    ensure_eq!(
        all.conversations.len(),
        80,
        "conversations from both handles"
    );
    for c in &all.conversations {
        ensure_eq!(c.turn_count(), 10, "turn count of {}", c.id());
    }
    ensure_eq!(
        third.analytics(TimeRange::all()).await?.total_turns,
        800,
        "total turns"
    );
    Ok(())
}

/// Ten tasks race to append turn 1 of one conversation with different messages: exactly
/// one wins, the others get `Conflict`, and the stored turn is the winner's.
pub async fn racing_appends_to_one_turn_conflict_cleanly<F: StoreFactory>(f: &F) -> CheckResult {
    let store = Arc::new(f.open().await?);
    let c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10u64 {
        let store = Arc::clone(&store);
        let mut mine = c.clone();
        tasks.spawn(async move {
            let batch = talk(&mut mine, 1, at(1_000 + i))?;
            let result = store.append(&mine, &batch).await;
            Ok::<_, Failure>((batch, result))
        });
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (batch, result) = joined.map_err(|e| Failure(format!("task failed: {e}")))??;
        match result {
            Ok(_) => winners.push(batch),
            Err(StoreError::Conflict { turn: 1, .. }) => conflicts += 1,
            Err(other) => {
                return Err(Failure(format!(
                    "racing append: expected Conflict, got {other}"
                )))
            }
        }
    }
    ensure_eq!((winners.len(), conflicts), (1, 9), "(winners, conflicts)");
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        winners[0],
        "the stored turn is the winner's"
    );
    Ok(())
}

/// One append of 500 messages is stored whole.
pub async fn large_batch_append<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (c, messages) = stored_with_turns(&store, &["a", "b"], at(0), 500).await?;
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        messages,
        "500 messages"
    );
    ensure_eq!(
        turns_of(&store.messages(c.id(), MessageRange::Last(20)).await?),
        (481..=500).collect::<Vec<_>>(),
        "last 20"
    );
    Ok(())
}

/// `append_shared` (messages behind `Arc`, as the router passes them) keeps the contract of
/// `append`: stored whole, idempotent, conflicts refused.
pub async fn append_shared_keeps_the_append_contract<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let mut rival = c.clone();
    let messages: Vec<Arc<colloquy_core::Message>> = talk(&mut c, 3, at(1_000))?
        .into_iter()
        .map(Arc::new)
        .collect();
    ensure_eq!(
        store.append_shared(&c, &messages).await?,
        AppendOutcome {
            inserted: 3,
            duplicates: 0
        },
        "shared append"
    );
    ensure_eq!(
        store.append_shared(&c, &messages).await?,
        AppendOutcome {
            inserted: 0,
            duplicates: 3
        },
        "retried shared append"
    );
    let stored = store.messages(c.id(), MessageRange::All).await?;
    let expected: Vec<colloquy_core::Message> = messages.iter().map(|m| (**m).clone()).collect();
    ensure_eq!(stored, expected, "stored messages");
    let loser: Vec<Arc<colloquy_core::Message>> = talk(&mut rival, 1, at(2_000))?
        .into_iter()
        .map(Arc::new)
        .collect();
    ensure_err!(
        store.append_shared(&rival, &loser).await,
        StoreError::Conflict { turn: 1, .. },
        "rival turn 1"
    );
    Ok(())
}

/// A batch that mixes stored messages (skipped) with new ones (inserted) stores the new
/// ones and the state, as the contract says.
pub async fn mixed_batch_inserts_only_the_new_messages<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let first = talk(&mut c, 2, at(1_000))?;
    store.append(&c, &first).await?;
    let second = talk(&mut c, 2, at(3_000))?;
    let mixed: Vec<_> = first.iter().chain(&second).cloned().collect();
    ensure_eq!(
        store.append(&c, &mixed).await?,
        AppendOutcome {
            inserted: 2,
            duplicates: 2
        },
        "mixed batch"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        mixed,
        "every message once, in order"
    );
    ensure_eq!(
        store.conversation(c.id()).await?,
        Some(c),
        "state of the mixed batch"
    );
    Ok(())
}

/// After `close`, every write fails with `Closed` and nothing is written; reads work.
pub async fn writes_after_close_are_closed<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 1).await?;
    store.close().await?;
    let batch = talk(&mut c, 1, at(2_000))?;
    ensure_err!(
        store.append(&c, &batch).await,
        StoreError::Closed,
        "append after close"
    );
    ensure_err!(
        store.create(&conversation(&["a", "b"], at(5))?).await,
        StoreError::Closed,
        "create after close"
    );
    let mut paused = c.clone();
    paused.pause(at(3_000))?;
    ensure_err!(
        store.update(&paused).await,
        StoreError::Closed,
        "update after close"
    );
    ensure_err!(
        store.prune(at(1_000_000)).await,
        StoreError::Closed,
        "prune after close"
    );
    ensure_err!(
        store
            .record_module(&ModuleInfo::new(name("a")?), at(0))
            .await,
        StoreError::Closed,
        "record_module after close"
    );
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?.len(),
        1,
        "reads still work, nothing new was written"
    );
    Ok(())
}
