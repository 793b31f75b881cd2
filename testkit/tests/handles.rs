//! Handles on a running conversation: its idle timeout and turn limit, a handler's patch
//! without a reply, and health's stale-after threshold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use colloquy_core::{CoreError, ModuleName, Status};
use colloquy_registry::Response;
use colloquy_runtime::{Hub, HubError};
use colloquy_storage::MessageRange;
use colloquy_testkit::{
    modules::{Echo, Scripted},
    TestHub,
};
use serde_json::json;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_max_turns_change_on_a_running_conversation_and_survive_a_restart(
) -> Result<()> {
    let mut hub = TestHub::sqlite_with(|b| b.idle_timeout(Duration::from_secs(60))).await?;
    let path = hub.path().unwrap();
    let dir = hub.keep_dir();
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    conv.send("one").await?;
    let changed = conv.set_idle_timeout(Duration::from_secs(3_600)).await?;
    assert_eq!(changed.idle_timeout(), Duration::from_secs(3_600));
    let changed = conv.set_max_turns(Some(4)).await?;
    assert_eq!(changed.max_turns(), Some(4));
    // A limit below the turns taken is refused with the reason, and changes nothing.
    let refused = conv.set_max_turns(Some(1)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            HubError::Refused(CoreError::MaxTurnsBelowTurnCount {
                max_turns: 1,
                turn_count: 2,
                ..
            })
        ),
        "{refused:?}"
    );
    let id = conv.id();
    hub.shutdown().await;
    drop(hub);

    let hub = Hub::builder()
        .sqlite(&path)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Echo::new(name("b"))).await?;
    let conv = hub.conversation(id, name("a")).await?;
    let state = conv.state().await?;
    assert_eq!(state.idle_timeout(), Duration::from_secs(3_600));
    assert_eq!(state.max_turns(), Some(4));
    // The stored idle timeout is the one enforced: 10 minutes idle is not expired.
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(conv.send("two").await?.request.turn, 3);
    // The stored limit too: turn 5 is refused.
    let over = conv.send("three").await.unwrap_err();
    assert!(
        matches!(
            over,
            HubError::Refused(CoreError::MaxTurnsReached { max_turns: 4, .. })
        ),
        "{over:?}"
    );
    conv.set_max_turns(None).await?;
    assert_eq!(conv.send("four").await?.request.turn, 5);
    hub.shutdown().await;
    drop(dir);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_handler_patches_the_context_without_replying_in_the_same_write() -> Result<()> {
    for hub in [TestHub::memory().await?, TestHub::sqlite().await?] {
        let worker = Scripted::new(
            name("worker"),
            [Response::patch(
                json!({"seen": true, "plan": null})
                    .as_object()
                    .cloned()
                    .unwrap(),
            )],
        );
        hub.register(Echo::new(name("client"))).await?;
        hub.register(worker).await?;
        let conv = hub
            .start_conversation(
                colloquy_runtime::ConversationSpec::between("client", "worker")?
                    .context(json!({"plan": "x"}).as_object().cloned().unwrap()),
            )
            .await?;
        let exchange = conv.send("note this").await?;
        assert_eq!(exchange.reply, None, "no reply, so no extra turn");
        let state = conv.state().await?;
        assert_eq!(state.turn_count(), 1);
        assert_eq!(state.context().get("seen"), Some(&json!(true)));
        assert!(!state.context().contains_key("plan"), "null removes a key");
        assert_eq!(state.busy_until(), None, "the turn ended with the patch");
        assert_eq!(
            hub.reader()
                .messages(conv.id(), MessageRange::All)
                .await?
                .len(),
            1
        );
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn health_reports_conversations_stale_by_the_threshold_asked_for() -> Result<()> {
    let hub = TestHub::memory_with(|b| {
        b.idle_timeout(Duration::from_secs(300))
            .reaper_interval(Duration::from_secs(86_400))
    })
    .await?;
    let quiet = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    quiet.send("hello").await?;
    tokio::time::advance(Duration::from_secs(10)).await;
    let busy = hub
        .start_conversation(colloquy_runtime::ConversationSpec::between("b", "a")?)
        .await?;
    busy.send("just now").await?;
    let by_timeout = hub.health(None).await;
    assert!(by_timeout.stale_conversations.is_empty(), "{by_timeout:?}");
    let by_threshold = hub.health(Some(Duration::from_secs(5))).await;
    assert_eq!(by_threshold.stale_conversations, vec![quiet.id()]);
    tokio::time::advance(Duration::from_secs(300)).await;
    let expired = hub.health(None).await;
    assert_eq!(expired.stale_conversations.len(), 2);
    assert_eq!(
        quiet.state().await?.status(),
        &Status::Active,
        "health only reports"
    );
    Ok(())
}
