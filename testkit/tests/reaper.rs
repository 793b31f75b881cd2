//! The reaper sleeps until the earliest deadline of the conversations in memory, wakes
//! early for an earlier one, and scans the store only every `reaper_interval` for
//! conversations no hub holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_core::{ModuleName, Status};
use colloquy_runtime::{ConversationSpec, Hub};
use colloquy_testkit::{modules::Echo, TestHub};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

/// Sleeps on tokio's (paused) clock: the background reaper runs meanwhile.
async fn wait(duration: Duration) {
    tokio::time::sleep(duration).await;
}

#[tokio::test(start_paused = true)]
async fn a_conversation_times_out_at_its_deadline_not_at_the_next_scan() {
    let hub = TestHub::memory_with(|b| {
        b.idle_timeout(Duration::from_secs(10))
            .reaper_interval(Duration::from_secs(3_600))
    })
    .await
    .unwrap();
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await
        .unwrap();
    conv.send("hi").await.unwrap();
    wait(Duration::from_millis(9_900)).await;
    assert_eq!(conv.state().await.unwrap().status(), &Status::Active);
    wait(Duration::from_millis(200)).await;
    assert_eq!(conv.state().await.unwrap().status(), &Status::TimedOut);
    let (_, report) = hub.health(None).await.reaper_last_run.unwrap();
    assert_eq!(report.timed_out, 1);
    assert_eq!(report.scanned, 0, "no store scan was needed for it");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wakes_the_sleeping_reaper() {
    let hub = TestHub::memory_with(|b| {
        b.idle_timeout(Duration::from_secs(3_600))
            .cold_after(Duration::from_secs(7_200))
            .reaper_interval(Duration::from_secs(86_400))
    })
    .await
    .unwrap();
    let long = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await
        .unwrap();
    long.send("slow one").await.unwrap();
    // Let the reaper plan its sleep until the hour is up.
    wait(Duration::from_secs(1)).await;
    let short = hub
        .start_conversation(
            ConversationSpec::between("b", "a")
                .unwrap()
                .idle_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    wait(Duration::from_millis(5_100)).await;
    assert_eq!(short.state().await.unwrap().status(), &Status::TimedOut);
    assert_eq!(long.state().await.unwrap().status(), &Status::Active);
    assert!(
        hub.health(None).await.healthy,
        "a sleeping reaper is not a stopped one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_conversation_left_by_a_stopped_hub_is_caught_up_by_the_scan() {
    let mut first = TestHub::sqlite_with(|b| b.idle_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    let path = first.path().unwrap();
    let _dir = first.keep_dir();
    let conv = first
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await
        .unwrap();
    conv.send("then the hub stops").await.unwrap();
    let id = conv.id();
    first.shutdown().await;
    drop(first);
    let second = Hub::builder()
        .sqlite(&path)
        .reaper_interval(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    // Not in the second hub's memory: only the catch-up scan can find it.
    wait(Duration::from_secs(31)).await;
    let state = second.reader().conversation(id).await.unwrap().unwrap();
    assert_eq!(state.status(), &Status::TimedOut);
    second.shutdown().await;
}
