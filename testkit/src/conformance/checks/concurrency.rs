//! Several writers at once.

use super::prelude::*;

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
                store.append(&c, &shared(&batch)).await?;
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
                    store.append(&c, &shared(&batch)).await?;
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
            let result = store.append(&mine, &shared(&batch)).await;
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
