//! Pruning, ping, module records, reopening, closing.

use super::prelude::*;

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
    first.append(&c, &shared(&more)).await?;
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

/// After `close`, every write fails with `Closed` and nothing is written; reads work.
pub async fn writes_after_close_are_closed<F: StoreFactory>(f: &F) -> CheckResult {
    let store = f.open().await?;
    let (mut c, _) = stored_with_turns(&store, &["a", "b"], at(0), 1).await?;
    store.close().await?;
    let batch = talk(&mut c, 1, at(2_000))?;
    ensure_err!(
        store.append(&c, &shared(&batch)).await,
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
