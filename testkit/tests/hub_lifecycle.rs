//! A hub over time: handshakes, idle timeouts on paused time, bounded memory, scoped
//! conversations, broadcast, health, analytics and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use colloquy_core::*;
use colloquy_registry::Response;
use colloquy_runtime::{ConversationSpec, HubError, RouteError};
use colloquy_storage::{ListFilter, TimeRange};
use colloquy_testkit::{
    eventually,
    modules::{Echo, Scripted, Silent, Slow},
    TestHub,
};
use serde_json::json;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_default_and_override_on_paused_time() -> Result<()> {
    let hub = TestHub::memory_with(|b| {
        b.idle_timeout(Duration::from_secs(300))
            .reaper_interval(Duration::from_secs(1))
    })
    .await?;
    let default = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    let short = hub
        .start_conversation(
            ConversationSpec::between("a", "b")?.idle_timeout(Duration::from_secs(10)),
        )
        .await?;
    default.send("ping").await?;
    short.send("ping").await?;

    tokio::time::advance(Duration::from_secs(11)).await;
    let status = |c: &colloquy_runtime::ConversationHandle| {
        let c = c.clone();
        async move { c.state().await.unwrap().status().clone() }
    };
    assert!(
        eventually(
            || async { status(&short).await == Status::TimedOut },
            Duration::from_secs(5)
        )
        .await,
        "the reaper times out the 10 s conversation"
    );
    assert_eq!(
        status(&default).await,
        Status::Active,
        "the default 300 s conversation is still active"
    );
    let err = short.send("too late").await.unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Refused(CoreError::NotActive {
                status: Status::TimedOut,
                ..
            })
        ),
        "{err:?}"
    );

    tokio::time::advance(Duration::from_secs(290)).await;
    assert!(
        eventually(
            || async { status(&default).await == Status::TimedOut },
            Duration::from_secs(5)
        )
        .await
    );
    let err = default.send("too late").await.unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Refused(CoreError::NotActive {
                status: Status::TimedOut,
                ..
            })
        ),
        "{err:?}"
    );
    // Timed-out conversations keep their history.
    assert_eq!(default.transcript().await?.len(), 2);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_message_after_expiry_is_refused_even_before_the_reaper_runs() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.reaper_interval(Duration::from_secs(3_600))).await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Echo::new(name("b"))).await?;
    let conv = hub
        .start_conversation(
            ConversationSpec::between("a", "b")?.idle_timeout(Duration::from_secs(30)),
        )
        .await?;
    tokio::time::advance(Duration::from_secs(31)).await;
    let err = conv.send("late").await.unwrap_err();
    assert!(
        matches!(err, HubError::Refused(CoreError::Expired { idle_timeout, .. }) if idle_timeout == Duration::from_secs(30)),
        "{err:?}"
    );
    assert_eq!(
        conv.state().await?.status(),
        &Status::TimedOut,
        "expiry is persisted at once"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn paused_conversations_do_not_time_out_and_resume_restarts_the_clock() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.idle_timeout(Duration::from_secs(10))).await?;
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    conv.pause().await?;
    let err = conv.send("while paused").await.unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Refused(CoreError::NotActive {
                status: Status::Paused,
                ..
            })
        ),
        "{err:?}"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    hub.reap().await;
    assert_eq!(conv.state().await?.status(), &Status::Paused);
    conv.resume().await?;
    assert_eq!(conv.send("back").await?.request.turn, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_with_20000_conversations_and_a_cap_of_1000() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.hot_capacity(1_000)).await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Echo::new(name("b"))).await?;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..50u64 {
        let hub = hub.hub().clone();
        workers.spawn(async move {
            let mut peak = 0;
            for i in 0..400u64 {
                let conv = hub
                    .start_conversation(ConversationSpec::between("a", "b")?)
                    .await?;
                let exchange = conv.send(json!({ "w": w, "i": i })).await?;
                assert_eq!(exchange.reply.unwrap().turn, 2);
                peak = peak.max(hub.stats().hot);
            }
            Ok::<_, HubError>(peak)
        });
    }
    while let Some(peak) = workers.join_next().await {
        assert!(peak?? <= 1_000, "the hot set exceeded its cap");
    }
    let stats = hub.stats();
    assert!(stats.hot <= 1_000, "hot conversations: {}", stats.hot);
    assert!(
        stats.hot_high_water <= 1_000,
        "the cache and lock map peaked at {}",
        stats.hot_high_water
    );
    assert_eq!(stats.hot_capacity, 1_000);
    assert_eq!(
        stats.hot_high_water, 1_000,
        "the cap was reached (and eviction kept it there)"
    );
    assert_eq!(hub.analytics(TimeRange::all()).await?.conversations, 20_000);
    assert_eq!(hub.analytics(TimeRange::all()).await?.total_turns, 40_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_conversations_are_rehydrated_from_the_store() -> Result<()> {
    let hub = TestHub::sqlite_with(|b| b.hot_capacity(2)).await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Echo::new(name("b"))).await?;
    let mut convs = Vec::new();
    for i in 0..5 {
        let conv = hub
            .start_conversation(ConversationSpec::between("a", "b")?)
            .await?;
        conv.send(json!(i)).await?;
        convs.push(conv);
    }
    assert!(hub.health(None).await.router.hot <= 2);
    for conv in &convs {
        let exchange = conv.send("again").await?;
        assert_eq!(
            exchange.request.turn, 3,
            "continued at the right turn after eviction"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rejection_and_counter_proposal() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    hub.register(Echo::new(name("asker"))).await?;
    hub.register(Scripted::new(name("busy"), []).answering_invites_with(
        HandshakeOutcome::Reject {
            reason: "at capacity".into(),
        },
    ))
    .await?;
    hub.register(
        Scripted::new(name("haggler"), [Response::reply("deal")]).answering_invites_with(
            HandshakeOutcome::Counter {
                proposal: json!({ "fields": ["name"] }),
            },
        ),
    )
    .await?;
    let err = hub
        .start_conversation(ConversationSpec::between("asker", "busy")?)
        .await
        .unwrap_err();
    let HubError::Rejected {
        conversation,
        module,
        reason,
    } = err
    else {
        panic!("expected Rejected, got {err:?}")
    };
    assert_eq!(module, name("busy"));
    assert!(reason.contains("at capacity"), "{reason}");
    let stored = hub.reader().conversation(conversation).await?.unwrap();
    assert!(
        matches!(stored.status(), Status::Failed { .. }),
        "a rejected conversation is stored as failed"
    );

    let conv = hub
        .start_conversation(ConversationSpec::between("asker", "haggler")?.intent(Intent::Query))
        .await?;
    assert_eq!(
        conv.handshake(),
        Some(&HandshakeOutcome::Counter {
            proposal: json!({ "fields": ["name"] })
        })
    );
    let reattached = hub.conversation(conv.id(), name("asker")).await?;
    assert_eq!(
        reattached.handshake(),
        None,
        "the answer is not stored, so not made up"
    );
    assert_eq!(conv.state().await?.phase(), Phase::Negotiation);
    assert_eq!(
        conv.send("ok, just name").await?.reply.unwrap().content,
        json!("deal")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_conversations_always_end() -> Result<()> {
    let hub = TestHub::memory().await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Echo::new(name("b"))).await?;
    let (id, answer) = hub
        .scoped(ConversationSpec::between("a", "b")?, |conv| async move {
            let exchange = conv.send("inside").await?;
            Ok((conv.id(), exchange.reply.unwrap().content.clone()))
        })
        .await?;
    assert_eq!(answer, json!("inside"));
    assert_eq!(
        hub.reader().conversation(id).await?.unwrap().status(),
        &Status::Completed
    );

    let mut seen = None;
    let err = hub
        .scoped(ConversationSpec::between("a", "b")?, |conv| {
            seen = Some(conv.id());
            async move {
                conv.send("about to fail").await?;
                Err::<(), _>(HubError::NoModuleWithCapability {
                    capability: "x".into(),
                })
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::NoModuleWithCapability { .. }));
    let failed = hub.reader().conversation(seen.unwrap()).await?.unwrap();
    assert!(
        matches!(failed.status(), Status::Failed { reason } if reason.contains("capability x")),
        "{:?}",
        failed.status()
    );

    // A body that ends the conversation itself is fine too.
    hub.scoped(ConversationSpec::between("a", "b")?, |conv| async move {
        conv.end().await?;
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_every_module_with_the_capability() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.handler_deadline(Duration::from_secs(2))).await?;
    let summarize: Capability = "summarize".parse()?;
    hub.register(Echo::new(name("caller"))).await?;
    for m in ["s1", "s2"] {
        hub.register(Echo::with_info(
            ModuleInfo::new(name(m)).with_capability(summarize.clone()),
        ))
        .await?;
    }
    hub.register(
        colloquy_testkit::modules::Failing::new(name("s3"), "cannot summarize")
            .with_capability(summarize.clone()),
    )
    .await?;
    hub.register(Echo::new(name("bystander"))).await?;
    let replies = hub
        .broadcast(&name("caller"), &summarize, json!("the text"))
        .await?;
    assert_eq!(
        replies.iter().map(|r| r.module.clone()).collect::<Vec<_>>(),
        vec![name("s1"), name("s2"), name("s3")]
    );
    for reply in &replies[..2] {
        assert_eq!(
            reply.result.as_ref().unwrap().as_ref().unwrap().content,
            json!("the text")
        );
    }
    assert!(
        matches!(&replies[2].result, Err(HubError::Route(RouteError::HandlerFailed { message, .. })) if message == "cannot summarize"),
        "{:?}",
        replies[2].result
    );
    let err = hub
        .broadcast(&name("caller"), &"translate".parse()?, json!(1))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::NoModuleWithCapability { .. }));
    let completed = hub
        .reader()
        .list(&ListFilter::new().status(StatusKind::Completed))
        .await?;
    assert_eq!(
        completed.conversations.len(),
        2,
        "each answered broadcast conversation completed"
    );
    let failed = hub
        .reader()
        .list(&ListFilter::new().status(StatusKind::Failed))
        .await?;
    assert_eq!(
        failed.conversations.len(),
        1,
        "the failed one is recorded as failed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_analytics_report_what_happened() -> Result<()> {
    let hub = TestHub::sqlite().await?;
    let one = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    one.send(1).await?;
    one.end().await?;
    let two = hub
        .start_conversation(ConversationSpec::between("b", "a")?)
        .await?;
    two.send(2).await?;
    two.send(3).await?;
    let health = hub.health(None).await;
    assert!(health.healthy, "{:?}", health.problems);
    assert!(health.store_latency.is_some());
    assert_eq!(health.modules, vec![name("a"), name("b")]);
    assert_eq!(health.router.in_flight, 0);
    assert!(health.stale_conversations.is_empty());
    let analytics = hub.analytics(TimeRange::all()).await?;
    assert_eq!(analytics.conversations, 2);
    assert_eq!(analytics.by_status.completed, 1);
    assert_eq!(analytics.by_status.active, 1);
    assert_eq!(analytics.total_turns, 6);
    assert_eq!(
        analytics
            .modules
            .iter()
            .map(|m| (m.module.as_str().to_owned(), m.initiated))
            .collect::<Vec<_>>(),
        vec![("a".into(), 1), ("b".into(), 1)]
    );
    let modules = hub.reader().modules().await?;
    assert_eq!(modules.len(), 2, "registrations are recorded in the store");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_turns_in_flight() -> Result<()> {
    let hub = TestHub::memory_with(|b| b.drain_timeout(Duration::from_secs(30))).await?;
    hub.register(Echo::new(name("a"))).await?;
    hub.register(Slow::new(name("slow"), Duration::from_secs(5)))
        .await?;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..5 {
        let conv = hub
            .start_conversation(ConversationSpec::between("a", "slow")?)
            .await?;
        sends.spawn(async move { conv.send(json!(i)).await });
    }
    // Let every send reach its handler.
    assert!(
        eventually(
            || async { hub.health(None).await.router.in_flight == 5 },
            Duration::from_secs(1)
        )
        .await
    );
    let report = hub.shutdown().await;
    assert!(report.drained);
    assert_eq!(report.aborted, 0);
    while let Some(result) = sends.join_next().await {
        assert!(
            result?.unwrap().reply.is_some(),
            "in-flight turns complete during the drain"
        );
    }
    let err = hub
        .start_conversation(ConversationSpec::between("a", "slow")?)
        .await
        .unwrap_err();
    assert_eq!(err, HubError::Route(RouteError::ShuttingDown));
    assert!(!hub.health(None).await.healthy);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_what_does_not_drain_and_leaves_nobody_hanging() -> Result<()> {
    let hub = TestHub::memory_with(|b| {
        b.drain_timeout(Duration::from_secs(2))
            .handler_deadline(Duration::from_secs(3_600))
    })
    .await?;
    let conv = hub
        .converse(Echo::new(name("a")), Silent::new(name("mute")))
        .await?;
    let pending = tokio::spawn({
        let conv = conv.clone();
        async move { conv.send("hello?").await }
    });
    assert!(
        eventually(
            || async { hub.health(None).await.router.in_flight == 1 },
            Duration::from_secs(1)
        )
        .await
    );
    let report = hub.shutdown().await;
    assert!(!report.drained);
    assert_eq!(report.aborted, 1);
    assert_eq!(
        pending.await?.unwrap_err(),
        HubError::Route(RouteError::ShuttingDown)
    );
    // The request was stored before delivery and stays in the history.
    assert_eq!(conv.transcript().await?.len(), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_reaper_evicts_cold_conversations_and_they_come_back() -> Result<()> {
    let hub = TestHub::memory_with(|b| {
        b.cold_after(Duration::from_secs(60))
            .idle_timeout(Duration::from_secs(3_600))
    })
    .await?;
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    conv.send("warm").await?;
    assert_eq!(hub.stats().hot, 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(
        eventually(|| async { hub.stats().hot == 0 }, Duration::from_secs(5)).await,
        "cold conversation evicted"
    );
    assert_eq!(conv.send("back again").await?.request.turn, 3);
    assert_eq!(hub.stats().hot, 1);
    let last = hub
        .health(None)
        .await
        .reaper_last_run
        .expect("the reaper ran");
    assert_eq!(last.1.timed_out, 0, "nothing was idle for an hour");
    Ok(())
}

/// One reaper pass, run by hand on a hub whose background reaper never wakes: it reports
/// exactly what it did (evicted, then timed out), and the store agrees.
#[tokio::test(start_paused = true)]
async fn a_reaper_pass_reports_what_it_evicted_and_timed_out() -> Result<()> {
    let hub = TestHub::sqlite_with(|b| {
        b.cold_after(Duration::from_secs(60))
            .idle_timeout(Duration::from_secs(600))
            .reaper_interval(Duration::from_secs(86_400))
    })
    .await?;
    let conv = hub
        .converse(Echo::new(name("a")), Echo::new(name("b")))
        .await?;
    conv.send("warm").await?;
    let other = hub
        .start_conversation(ConversationSpec::between("b", "a")?)
        .await?;
    other.send("also warm").await?;
    assert_eq!(hub.stats().hot, 2);
    tokio::time::advance(Duration::from_secs(61)).await;
    let first = hub.reap().await;
    assert_eq!((first.evicted, first.timed_out), (2, 0), "{first:?}");
    assert_eq!(hub.stats().hot, 0);
    conv.send("back").await?;
    tokio::time::advance(Duration::from_secs(600)).await;
    let second = hub.reap().await;
    assert_eq!(second.timed_out, 2, "{second:?}");
    assert_eq!(conv.state().await?.status(), &Status::TimedOut);
    assert_eq!(other.state().await?.status(), &Status::TimedOut);
    Ok(())
}
