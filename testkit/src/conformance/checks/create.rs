//! Creating conversations and reading them back.

use super::prelude::*;

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
