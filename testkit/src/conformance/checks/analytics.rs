//! Analytics computed by the store.

use super::prelude::*;

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

/// Where the time went: per target module, its requests, those without a reply, and the
/// answered ones' times in buckets (request stored to reply stored), within a time range
/// on the request.
pub async fn exchanges_count_answers_by_time_and_requests_without_one<F: StoreFactory>(
    f: &F,
) -> CheckResult {
    use colloquy_core::Draft;
    use colloquy_storage::ModuleExchanges;
    let store = f.open().await?;
    // In one conversation a asks b four times: answered in 3 ms, in 300 ms, not at all,
    // and in 40 ms.
    let mut ab = conversation(&["a", "b"], at(0))?;
    store.create(&ab).await?;
    let mut messages = Vec::new();
    for (asked, answered_after) in [
        (1_000, Some(3)),
        (2_000, Some(300)),
        (3_000, None),
        (4_000, Some(40)),
    ] {
        let request = ab.accept(
            Draft::request(name("a")?, name("b")?, json!({"asked": asked})),
            message_id(at(asked)),
            at(asked),
        )?;
        messages.push(request.clone());
        if let Some(after) = answered_after {
            let when = at(asked + after);
            messages.push(ab.accept(
                Draft::reply(&request, name("b")?, json!({"answered": after})),
                message_id(when),
                when,
            )?);
        }
    }
    ab.bump_version();
    store.append(&ab, &shared(&messages)).await?;
    // In another, c asks a once, answered in 1 ms, before the others.
    let mut ca = conversation(&["c", "a"], at(0))?;
    store.create(&ca).await?;
    let request = ca.accept(
        Draft::request(name("c")?, name("a")?, json!("quick?")),
        message_id(at(500)),
        at(500),
    )?;
    let reply = ca.accept(
        Draft::reply(&request, name("a")?, json!("yes")),
        message_id(at(501)),
        at(501),
    )?;
    ca.bump_version();
    store.append(&ca, &shared(&[request, reply])).await?;

    let expected = |module: &str, requests, unanswered, answered: &[u64]| {
        let mut m = ModuleExchanges::new(name(module)?);
        m.requests = requests;
        m.unanswered = unanswered;
        for ms in answered {
            m.buckets[ModuleExchanges::bucket_of(*ms)] += 1;
        }
        Ok::<_, Failure>(m)
    };
    ensure_eq!(
        store.exchanges(TimeRange::all()).await?,
        vec![
            expected("a", 1, 0, &[1])?,
            expected("b", 4, 1, &[3, 300, 40])?
        ],
        "every request, by target module"
    );
    // Requests sent from 1.5 s on: a's request (at 0.5 s) and b's first are left out.
    ensure_eq!(
        store.exchanges(TimeRange::since(at(1_500))).await?,
        vec![expected("b", 3, 1, &[300, 40])?],
        "the range applies to when the request was sent"
    );
    let b = store
        .exchanges(TimeRange::all())
        .await?
        .pop()
        .ok_or(Failure("no module".into()))?;
    ensure_eq!(
        b.percentile(0.5),
        Some(50),
        "the median answer is in the 25-50 ms bucket"
    );
    Ok(())
}
