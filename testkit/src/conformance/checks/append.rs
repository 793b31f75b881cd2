//! Appending turns: contiguity, idempotence, conflicts, ranges, exact content.

use super::prelude::*;

/// `append` stores the messages and the new state together.
pub async fn append_stores_messages_and_state<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let mut c = conversation(&["a", "b"], at(0))?;
    store.create(&c).await?;
    let messages = talk(&mut c, 3, at(1_000))?;
    ensure_eq!(
        store.append(&c, &shared(&messages)).await?,
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
    let stored = stored(&store, c.id()).await?;
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
        store.append(&c, &shared(&batch)).await?;
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
    store.append(&c, &shared(&first)).await?;
    let second = talk(&mut c, 2, at(5_000))?;
    store.append(&c, &shared(&second)).await?;
    ensure_eq!(
        store.append(&early_state, &shared(&first)).await?,
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
        store.append(&c, &shared(&second)).await?,
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
    store.append(&c, &shared(&winner)).await?;
    let loser = talk(&mut rival, 1, at(1_500))?;
    ensure_err!(
        store.append(&rival, &shared(&loser)).await,
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
        store.append(&c, &shared(&messages[2..])).await,
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
    store.append(&c, &shared(&first)).await?;
    let mut second = talk(&mut c, 1, at(2_000))?;
    second[0].id = first[0].id;
    ensure_err!(
        store.append(&c, &shared(&second)).await,
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
    store.append(&c, &shared(&first)).await?;
    let before = c.clone();
    let mut batch = talk(&mut c, 3, at(2_000))?;
    batch[2].id = first[0].id;
    ensure_err!(
        store.append(&c, &shared(&batch)).await,
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
        store.append(&c, &shared(&[])).await,
        StoreError::InvalidInput { .. },
        "empty batch"
    );
    let foreign = talk(&mut other, 1, at(1_000))?;
    let _ = talk(&mut c, 1, at(1_000))?;
    ensure_err!(
        store.append(&c, &shared(&foreign)).await,
        StoreError::InvalidInput { .. },
        "message of another conversation"
    );
    let two = talk(&mut c, 2, at(2_000))?;
    ensure_err!(
        store.append(&c, &shared(&two[..1])).await,
        StoreError::InvalidInput { .. },
        "state ahead of the last message"
    );
    let reversed = vec![two[1].clone(), two[0].clone()];
    ensure_err!(
        store.append(&c, &shared(&reversed)).await,
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
        store.append(&c, &shared(&messages)).await,
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
    store.append(&c, &shared(&messages)).await?;
    ensure_eq!(
        store.messages(c.id(), MessageRange::All).await?,
        messages,
        "messages read back"
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
    store.append(&c, &shared(&first)).await?;
    let second = talk(&mut c, 2, at(3_000))?;
    let mixed: Vec<_> = first.iter().chain(&second).cloned().collect();
    ensure_eq!(
        store.append(&c, &shared(&mixed)).await?,
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

/// The shared context survives the appends that leave it as it is and follows those that
/// change it, as read back through another handle (a store may keep a context it already
/// holds instead of writing it again at every turn, never a stale one).
pub async fn the_context_follows_the_appends_that_change_it<F: StoreFactory>(f: &F) -> CheckResult {
    let (store, reader) = (f.open().await?, f.open().await?);
    let notes = "n".repeat(4_000);
    let mut c = conversation(&["a", "b"], at(0))?.with_context(object(json!({ "notes": notes })));
    store.create(&c).await?;
    let context_of = |c: Option<Conversation>| c.map(|c| c.context().clone());
    for i in 0..2 {
        let batch = talk(&mut c, 1, at(1_000 * (i + 1)))?;
        store.append(&c, &shared(&batch)).await?;
    }
    ensure_eq!(
        context_of(reader.conversation(c.id()).await?),
        Some(object(json!({ "notes": notes }))),
        "the context kept through appends that did not change it"
    );
    c.apply_context_patch(&object(json!({ "step": 1 })), at(3_000))?;
    let batch = talk(&mut c, 1, at(3_000))?;
    store.append(&c, &shared(&batch)).await?;
    let patched = object(json!({ "notes": notes, "step": 1 }));
    ensure_eq!(
        context_of(reader.conversation(c.id()).await?),
        Some(patched.clone()),
        "the context changed with a turn"
    );
    let batch = talk(&mut c, 1, at(4_000))?;
    store.append(&c, &shared(&batch)).await?;
    ensure_eq!(
        context_of(reader.conversation(c.id()).await?),
        Some(patched),
        "the changed context kept by the next turn"
    );
    // Another handle continues from what it read: its own first append of the context.
    let mut read = reader
        .conversation(c.id())
        .await?
        .ok_or_else(|| Failure("the conversation is gone".into()))?;
    read.apply_context_patch(&object(json!({ "step": 2 })), at(5_000))?;
    let batch = talk(&mut read, 1, at(5_000))?;
    reader.append(&read, &shared(&batch)).await?;
    ensure_eq!(
        context_of(store.conversation(c.id()).await?),
        Some(object(json!({ "notes": notes, "step": 2 }))),
        "the other handle's change, read by the first"
    );
    // Emptied, and kept empty.
    read.apply_context_patch(&object(json!({ "notes": null, "step": null })), at(6_000))?;
    let batch = talk(&mut read, 1, at(6_000))?;
    reader.append(&read, &shared(&batch)).await?;
    let batch = talk(&mut read, 1, at(7_000))?;
    reader.append(&read, &shared(&batch)).await?;
    ensure_eq!(
        context_of(store.conversation(c.id()).await?),
        Some(object(json!({}))),
        "the emptied context"
    );
    Ok(())
}
