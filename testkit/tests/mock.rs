//! The mock module: the test answers each turn by hand, and a turn it never took fails it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use colloquy_core::ModuleName;
use colloquy_registry::Response;
use colloquy_runtime::{HubError, RouteError};
use colloquy_testkit::{mock, modules::Echo, TestHub};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_test_answers_each_turn_and_sees_what_the_module_saw() {
    let hub = TestHub::sqlite().await.unwrap();
    let (module, mut handle) = mock(name("worker"));
    let conv = hub
        .converse(Echo::new(name("client")), module)
        .await
        .unwrap();
    let first = tokio::spawn({
        let conv = conv.clone();
        async move { conv.send("one").await }
    });
    let pending = handle.next_turn().await.unwrap();
    assert_eq!(pending.turn.message.turn, 1);
    assert!(pending.turn.history.is_empty());
    pending.respond(Response::end_with("done"));
    let exchange = first.await.unwrap().unwrap();
    assert_eq!(exchange.reply.map(|r| r.turn), Some(2));
    assert!(exchange.status.is_terminal());
    assert!(handle.try_next_turn().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_turn_dropped_unanswered_is_a_handler_failure() {
    let hub = TestHub::memory().await.unwrap();
    let (module, mut handle) = mock(name("worker"));
    let conv = hub
        .converse(Echo::new(name("client")), module)
        .await
        .unwrap();
    let sending = tokio::spawn(async move { conv.send("ignored").await });
    drop(handle.next_turn().await.unwrap());
    let err = sending.await.unwrap().unwrap_err();
    assert!(
        matches!(err, HubError::Route(RouteError::HandlerFailed { ref message, .. }) if message.contains("unanswered")),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "never took")]
async fn a_handle_dropped_with_a_turn_it_never_took_fails_the_test() {
    let hub = TestHub::memory().await.unwrap();
    let (module, handle) = mock(name("worker"));
    let conv = hub
        .converse(Echo::new(name("client")), module)
        .await
        .unwrap();
    let _sending = tokio::spawn(async move { conv.send("unseen").await });
    // On paused time a sleep ends only once everything else waits: by then the turn has
    // reached the module. Then drop the handle without taking it.
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    drop(handle);
}
