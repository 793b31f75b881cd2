//! Listing conversations: filters and cursor pages.

use super::prelude::*;

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

/// Turns are found across conversations by a text of their content (any case for ASCII
/// letters), newest first, within a participant's conversations when asked, at most the
/// limit; an empty text finds nothing.
pub async fn search_finds_turns_by_text_newest_first<F: StoreFactory>(f: &F) -> CheckResult {
    use colloquy_storage::TextSearch;
    let store = f.open().await?;
    let mut first = conversation(&["a", "b"], at(0))?;
    store.create(&first).await?;
    let mut messages = Vec::new();
    for (n, text) in ["The Needle is here", "nothing", "another NEEDLE"]
        .iter()
        .enumerate()
    {
        let t = at(1_000 + n as u64 * 1_000);
        messages.push(first.accept(
            colloquy_core::Draft::request(name("a")?, name("b")?, json!({ "text": text })),
            message_id(t),
            t,
        )?);
    }
    first.bump_version();
    store.append(&first, &shared(&messages)).await?;
    let mut second = conversation(&["c", "d"], at(10_000))?;
    store.create(&second).await?;
    let t = at(20_000);
    let found_there = second.accept(
        colloquy_core::Draft::request(name("c")?, name("d")?, json!(["a needle", 3])),
        message_id(t),
        t,
    )?;
    second.bump_version();
    store.append(&second, &shared(&[found_there])).await?;

    let hits = store.search(&TextSearch::new("needle")).await?;
    let got: Vec<(ConversationId, u64)> = hits.iter().map(|h| (h.conversation, h.turn)).collect();
    ensure_eq!(
        got,
        vec![(second.id(), 1), (first.id(), 3), (first.id(), 1)],
        "every turn holding the text, newest first"
    );
    ensure_eq!(hits[0].sent_at, at(20_000), "with the time it was stored");
    let mine = store
        .search(&TextSearch::new("NEEDLE").participant(name("b")?))
        .await?;
    ensure_eq!(mine.len(), 2, "only the participant's conversations");
    ensure_eq!(
        store
            .search(&TextSearch::new("needle").limit(1))
            .await?
            .len(),
        1,
        "at most the limit"
    );
    ensure!(
        store.search(&TextSearch::new("  ")).await?.is_empty(),
        "an empty text finds nothing"
    );
    ensure!(
        store.search(&TextSearch::new("haystack")).await?.is_empty(),
        "a text held nowhere finds nothing"
    );
    Ok(())
}
