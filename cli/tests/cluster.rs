//! Hub processes on one PostgreSQL schema behave as one hub: a module that lives only on
//! hub A is served, and answers, through hubs B and C; one conversation continued through
//! all three stays contiguous; `colloquy health` lists the three; a paused hub cannot
//! corrupt; a killed hub's exchanges are taken over by the survivors with nothing
//! acknowledged lost; a dead hub's idle conversations are timed out once each by two
//! reapers. Needs `COLLOQUY_TEST_POSTGRES`.
// The takeover time and the reapers' shares are printed: figures for the record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use colloquy_storage::{ConversationStore, MessageRange, PostgresOptions, PostgresStore};
use serde_json::Value;

fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql")
        .arg(url)
        .args(["-qAt", "-c"])
        .arg(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .output();
}

/// The stored transcript of the conversation `context` in `schema`.
async fn transcript(url: &str, schema: &str, context: &str) -> Vec<colloquy_core::Message> {
    let store = PostgresStore::connect(
        url,
        PostgresOptions::new()
            .schema(schema)
            .unwrap()
            .existing_only(),
    )
    .await
    .unwrap();
    store
        .messages(context.parse().unwrap(), MessageRange::All)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_serve_a_module_that_lives_on_one_of_them() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_cluster_{}", std::process::id());
    drop_schema(&url, &schema);
    let (hub_a, _, _) = common::serve_on(&url, &["--schema", &schema]);
    // B and C host no module of their own (but the A2A callers).
    let (hub_b, ready_b, base_b) = common::serve_with(&url, false, &["--schema", &schema]);
    // B, started after A, serves what A hosts (A announced it as it registered it).
    let cards_b = ready_b["cards"].to_string();
    assert!(cards_b.contains("/agents/echo/"), "{ready_b}");
    assert!(!cards_b.contains("a2a-client"), "{ready_b}");
    let (hub_c, _, base_c) = common::serve_with(&url, false, &["--schema", &schema]);
    let http = reqwest::Client::new();

    // C learns from A's heartbeats that echo lives on A, and serves its card.
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let card = http
            .get(format!("{base_c}/agents/echo/.well-known/agent-card.json"))
            .send()
            .await
            .unwrap();
        if card.status() == 200 {
            let card: Value = card.json().await.unwrap();
            assert_eq!(
                card["supportedInterfaces"][0]["url"],
                format!("{base_c}/agents/echo")
            );
            break;
        }
        assert!(Instant::now() < limit, "hub C never learnt of echo");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limit = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base_b}/agents/echo/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < limit, "hub B never learnt of echo");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One conversation, continued through C, then B, then C: every reply comes from A.
    let first =
        common::send_text(&http, &format!("{base_c}/agents/echo"), "m-1", "one", None).await;
    let task = &first["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{first}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "one");
    let context = task["contextId"].as_str().unwrap().to_owned();
    let second = common::send_text(
        &http,
        &format!("{base_b}/agents/echo"),
        "m-2",
        "two",
        Some(&context),
    )
    .await;
    assert_eq!(
        second["result"]["task"]["id"],
        format!("{context}:3"),
        "{second}"
    );
    let third = common::send_text(
        &http,
        &format!("{base_c}/agents/echo"),
        "m-3",
        "three",
        Some(&context),
    )
    .await;
    assert_eq!(
        third["result"]["task"]["id"],
        format!("{context}:5"),
        "{third}"
    );
    assert_eq!(
        third["result"]["task"]["artifacts"][0]["parts"][0]["text"],
        "three"
    );

    // A retry through another hub (its memory has nothing of the first send) is the same
    // task, with or without the contextId: the store recognises the message id.
    let retried =
        common::send_text(&http, &format!("{base_b}/agents/echo"), "m-1", "one", None).await;
    assert_eq!(
        retried["result"]["task"]["id"],
        format!("{context}:1"),
        "{retried}"
    );
    let retried = common::send_text(
        &http,
        &format!("{base_b}/agents/echo"),
        "m-3",
        "three",
        Some(&context),
    )
    .await;
    assert_eq!(
        retried["result"]["task"]["id"],
        format!("{context}:5"),
        "{retried}"
    );

    // M4 through C, M5 through B in the same context, then M4 again through C: the stored
    // exchange, the first time, whatever happened in the context meanwhile.
    let fourth = common::send_text(
        &http,
        &format!("{base_c}/agents/echo"),
        "m-4",
        "four",
        Some(&context),
    )
    .await;
    assert_eq!(
        fourth["result"]["task"]["id"],
        format!("{context}:7"),
        "{fourth}"
    );
    let fifth = common::send_text(
        &http,
        &format!("{base_b}/agents/echo"),
        "m-5",
        "five",
        Some(&context),
    )
    .await;
    assert_eq!(
        fifth["result"]["task"]["id"],
        format!("{context}:9"),
        "{fifth}"
    );
    for retry in 0..2 {
        let again = common::send_text(
            &http,
            &format!("{base_c}/agents/echo"),
            "m-4",
            "four",
            Some(&context),
        )
        .await;
        assert_eq!(
            again["result"]["task"]["id"],
            format!("{context}:7"),
            "retry {retry}: {again}"
        );
    }

    let transcript = transcript(&url, &schema, &context).await;
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(turns, (1..=10).collect::<Vec<u64>>());
    for pair in transcript.chunks(2) {
        assert_eq!(pair[1].in_reply_to, Some(pair[0].id));
        assert_eq!(pair[1].source.as_str(), "echo");
    }

    // health lists the three hubs, alive.
    let health = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["health", "--json", "--schema", &schema, "--db", &url])
        .output()
        .unwrap();
    let health: Value = serde_json::from_slice(&health.stdout).unwrap();
    let alive = health["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["alive"] == true)
        .count();
    assert_eq!(alive, 3, "{health}");
    for hub in [hub_a, hub_b, hub_c] {
        assert!(hub.terminate());
    }
    drop_schema(&url, &schema);
}

/// A hub stopped with SIGSTOP past the member timeout is fenced by the others, which carry
/// its conversations on; when it resumes (SIGCONT), nothing it attempts as its old member
/// lands (its writes are refused), it rejoins under a new epoch, and the transcript stays
/// contiguous, every reply right after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_hub_is_fenced_and_cannot_corrupt_when_it_resumes() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_paused_{}", std::process::id());
    drop_schema(&url, &schema);
    // A long member timeout of its own: it heartbeats every 6 s, so when it resumes its
    // next heartbeat (which would tell it that it was fenced, and rejoin) is still seconds
    // away, and the request it gets at once meets the fence, not a new membership.
    let (paused, _, base) =
        common::serve_on(&url, &["--schema", &schema, "--member-timeout", "30s"]);
    let pid = paused.0.id().to_string();
    let http = reqwest::Client::new();
    let first =
        common::send_text(&http, &format!("{base}/agents/echo"), "p-1", "before", None).await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();

    // Another hub, with its own echo, and a short member timeout: it fences the silent one.
    let store = PostgresStore::connect(&url, PostgresOptions::new().schema(&schema).unwrap())
        .await
        .unwrap();
    let other = colloquy_runtime::Hub::builder()
        .store(std::sync::Arc::new(store))
        .member_name("other")
        .member_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    other
        .register(colloquy_testkit::modules::Echo::new(
            "echo".parse().unwrap(),
        ))
        .await
        .unwrap();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let fenced = colloquy_testkit::eventually(
        || async {
            other
                .members()
                .await
                .unwrap()
                .unwrap()
                .iter()
                .any(|m| m.name != "other" && m.fenced)
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(fenced, "the paused hub was fenced");
    // The conversation goes on through the other hub.
    let id = context.parse().unwrap();
    let conversation = other
        .conversation(id, "a2a-client".parse().unwrap())
        .await
        .unwrap();
    let carried = conversation.send("while it sleeps").await.unwrap();
    assert_eq!(carried.request.turn, 3);

    // It resumes, and is asked to continue the same conversation at once.
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let resumed = common::send_text(
        &http,
        &format!("{base}/agents/echo"),
        "p-2",
        "after",
        Some(&context),
    )
    .await;
    // Refused as fenced: the version's compare-and-set would also keep it from writing over
    // the other hub's turn, but the fence refuses every write of a member the others
    // declared dead, before any compare.
    let message = resumed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("fenced"), "{resumed}");
    let transcript = other
        .reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap();
    let turns: Vec<u64> = transcript.iter().map(|m| m.turn).collect();
    assert_eq!(
        turns,
        (1..=turns.len() as u64).collect::<Vec<_>>(),
        "contiguous"
    );
    for pair in transcript.chunks(2) {
        assert_eq!(pair.len(), 2, "every request has its reply");
        assert_eq!(pair[1].in_reply_to, Some(pair[0].id));
    }
    assert_eq!(
        transcript[2].content, "while it sleeps",
        "the other hub's turn stands"
    );
    // It rejoins under a new epoch.
    let rejoined = colloquy_testkit::eventually(
        || async {
            let members = other.members().await.unwrap().unwrap();
            members
                .iter()
                .filter(|m| m.name != "other")
                .any(|m| m.alive)
        },
        Duration::from_secs(20),
    )
    .await;
    assert!(rejoined, "the resumed hub joined again");
    other.shutdown().await;
    assert!(paused.terminate());
    drop_schema(&url, &schema);
}

/// Three `colloquy serve` processes, each hosting the demo's `echo`: 24 A2A clients send into
/// one conversation through all three at once. Every call succeeds and the stored
/// transcript is contiguous, every reply right after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_through_three_processes_keep_one_order() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_order_{}", std::process::id());
    drop_schema(&url, &schema);
    let hubs: Vec<_> = (0..3)
        .map(|_| common::serve_on(&url, &["--schema", &schema]))
        .collect();
    let bases: Vec<String> = hubs.iter().map(|(_, _, base)| base.clone()).collect();
    let http = reqwest::Client::new();
    let first = common::send_text(
        &http,
        &format!("{}/agents/echo", bases[0]),
        "o-0",
        "open",
        None,
    )
    .await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..24 {
        let (http, endpoint, context) = (
            http.clone(),
            format!("{}/agents/echo", bases[sender % 3]),
            context.clone(),
        );
        senders.spawn(async move {
            for n in 0..3 {
                let id = format!("o-{sender}-{n}");
                let answer = common::send_text(&http, &endpoint, &id, &id, Some(&context)).await;
                let task = &answer["result"]["task"];
                assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
                assert_eq!(task["artifacts"][0]["parts"][0]["text"], id.as_str());
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let transcript = transcript(&url, &schema, &context).await;
    assert_eq!(transcript.len(), 2 + 24 * 3 * 2);
    for (i, message) in transcript.iter().enumerate() {
        assert_eq!(message.turn, i as u64 + 1, "contiguous");
    }
    for pair in transcript.chunks(2) {
        assert_eq!(
            pair[1].in_reply_to,
            Some(pair[0].id),
            "turn {}",
            pair[1].turn
        );
        assert_eq!(pair[1].content, pair[0].content);
    }
    for (hub, _, _) in hubs {
        assert!(hub.terminate());
    }
    drop_schema(&url, &schema);
}

/// `psql` on `schema`: one query, its rows as text (`|` between columns).
fn sql(url: &str, schema: &str, query: &str) -> String {
    let output = Command::new("psql")
        .arg(url)
        .args(["-qAtX", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("SET search_path TO \"{schema}\"; {query}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Three `colloquy load` processes, each a hub on one schema, each hosting the load's
/// modules; one is killed with SIGKILL mid-load. Within a bounded time (the member timeout,
/// 2 s here, plus a heartbeat) one of the two survivors takes over every exchange the dead
/// hub left between request and reply: the request is delivered again under its own
/// message id and its reply stored right after it, with no next sender. The survivors
/// carry on undisturbed, and across the three ack logs nothing acknowledged is lost, no
/// turn is stored twice, and no conversation has a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_three_hubs_loses_nothing_and_its_exchanges_are_taken_over() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_takeover_{}", std::process::id());
    drop_schema(&url, &schema);
    let dir = tempfile::tempdir().unwrap();
    let logs: Vec<_> = (0..3)
        .map(|n| dir.path().join(format!("acks-{n}.log")))
        .collect();
    let mut hubs: Vec<_> = logs
        .iter()
        .map(|log| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
            command
                .args(["load", "--db", &url, "--schema", &schema])
                .args(["--member-timeout", "2s", "--json"])
                .args(["--conversations", "20000", "--turns", "20"])
                .args(["--parallel", "8", "--ack-log"])
                .arg(log)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .env_remove("RUST_LOG");
            common::Running(command.spawn().unwrap())
        })
        .collect();
    for (hub, log) in hubs.iter_mut().zip(&logs) {
        common::wait_for_acks(&mut hub.0, log, 300);
        assert!(hub.0.try_wait().unwrap().is_none(), "a load ended early");
    }
    let victim = hubs.pop().unwrap();
    let mut victim = victim;
    victim.0.kill().unwrap();
    let killed = Instant::now();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(victim.0.wait().unwrap().signal(), Some(9));
    }

    // The dead hub's member, and the exchanges it left: its conversations still busy.
    let (last_conversation, _, _) = *common::acknowledged(&logs[2]).last().unwrap();
    let member = sql(
        &url,
        &schema,
        &format!("SELECT written_by_id FROM conversations WHERE id = '{last_conversation}'"),
    );
    let orphans: Vec<(String, u64)> = sql(
        &url,
        &schema,
        &format!(
            "SELECT id, turn_count FROM conversations \
             WHERE written_by_id = '{member}' AND busy_until IS NOT NULL"
        ),
    )
    .lines()
    .map(|line| {
        let (id, turns) = line.split_once('|').unwrap();
        (id.to_owned(), turns.parse().unwrap())
    })
    .collect();
    assert!(!orphans.is_empty(), "the kill cut no exchange");

    // Taken over with no next sender: each is answered, by a survivor.
    let ids = orphans
        .iter()
        .map(|(id, _)| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = sql(
            &url,
            &schema,
            &format!(
                "SELECT count(*) FROM conversations c JOIN unnest(ARRAY[{ids}]::uuid[]) AS o (id) \
                 USING (id) WHERE c.busy_until IS NOT NULL OR c.written_by_id = '{member}'"
            ),
        );
        if pending == "0" {
            break;
        }
        assert!(
            Instant::now() < limit,
            "{pending} of the dead hub's {} exchanges not taken over after 60 s",
            orphans.len()
        );
        for hub in &mut hubs {
            assert!(
                hub.0.try_wait().unwrap().is_none(),
                "a survivor ended before the takeover"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();
    eprintln!(
        "takeover after SIGKILL: {} exchanges concluded {} ms after the kill (member timeout 2 s)",
        orphans.len(),
        takeover.as_millis()
    );
    // The documented bound (docs/CLUSTER.md): the member timeout, a heartbeat to fence the
    // dead hub and one to claim its exchanges (a fifth of the timeout each), and the time to
    // deliver them again, which a busy machine stretches (CI-aware).
    let bound = Duration::from_secs(2)
        + 2 * Duration::from_millis(400)
        + colloquy_testkit::scaled(Duration::from_secs(1));
    assert!(
        takeover <= bound,
        "takeover took {takeover:?}, more than the documented {bound:?}"
    );
    assert_eq!(
        sql(
            &url,
            &schema,
            &format!("SELECT bool_and(fenced) FROM hubs WHERE id = '{member}'")
        ),
        "t",
        "the dead hub is fenced"
    );
    let store = PostgresStore::connect(
        &url,
        PostgresOptions::new()
            .schema(&schema)
            .unwrap()
            .existing_only(),
    )
    .await
    .unwrap();
    for (id, turns) in &orphans {
        let answered = store
            .messages(
                id.parse().unwrap(),
                MessageRange::Turns {
                    first: *turns,
                    last: turns + 1,
                },
            )
            .await
            .unwrap();
        assert_eq!(answered.len(), 2, "{id}: the request and its reply");
        assert_eq!(
            answered[1].in_reply_to,
            Some(answered[0].id),
            "{id}: the reply answers the request delivered again under its own id"
        );
        assert_eq!(answered[1].content, answered[0].content);
    }

    // The survivors stop when asked (SIGTERM), report, and leave.
    for (mut hub, log) in hubs.into_iter().zip(&logs) {
        let child = &mut hub.0;
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let mut stdout = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        // Interrupted: the shell's exit code for SIGINT/SIGTERM-stopped commands.
        assert_eq!(status.code(), Some(130), "a survivor failed: {stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(report["interrupted"], true, "{report}");
        assert!(report["left_active"].as_u64().unwrap() > 0, "{report}");
        // What it reports is what its ack log shows: two acknowledged messages a round trip.
        assert_eq!(
            report["round_trips"].as_u64().unwrap() * 2,
            common::acknowledged(log).len() as u64,
            "{report}"
        );
    }
    let acks: Vec<_> = logs
        .iter()
        .flat_map(|log| common::acknowledged(log))
        .collect();
    common::verify_all_answered(&store, &acks).await;
    drop(store);
    drop_schema(&url, &schema);
}

/// Conversations a hub drove, left idle when it was killed, are timed out once each by the
/// two hubs that run on: both reapers scan them, every conversation ends `timed_out`, and
/// the hubs' counts (`colloquy_conversations_timed_out_total` on `/metrics`) add up to the
/// number of conversations, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_time_out_a_dead_hubs_conversations_once_each() {
    let Some(url) = colloquy_testkit::postgres_url() else {
        return;
    };
    let schema = format!("colloquy_reapers_{}", std::process::id());
    drop_schema(&url, &schema);
    // Long enough that the driver's own reaper does not time the first conversations out
    // while it still sends the last ones on a busy machine (whatever it did time out is
    // counted below, not assumed away).
    let idle = ["--schema", schema.as_str(), "--idle-timeout", "3s"];
    let (driver, _, base) = common::serve_on(&url, &idle);
    let http = reqwest::Client::new();
    let mut contexts = Vec::new();
    for n in 0..30 {
        let answer = common::send_text(
            &http,
            &format!("{base}/agents/echo"),
            &format!("r-{n}"),
            "hello",
            None,
        )
        .await;
        contexts.push(
            answer["result"]["task"]["contextId"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_owned(),
        );
    }
    let mut driver = driver;
    driver.0.kill().unwrap();
    driver.0.wait().unwrap();
    // Every active one idle past its timeout before the others start (progress, not a
    // timer: the store says so).
    let limit = Instant::now() + Duration::from_secs(30);
    while sql(
        &url,
        &schema,
        "SELECT count(*) FROM conversations WHERE status = 'active' \
         AND last_activity + idle_timeout_ms >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    ) != "0"
    {
        assert!(Instant::now() < limit, "the conversations never became idle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the driver left for the two reapers.
    let left: u64 = sql(
        &url,
        &schema,
        "SELECT count(*) FROM conversations WHERE status = 'active'",
    )
    .parse()
    .unwrap();
    assert!(
        left > 0,
        "the driver timed every conversation out itself: nothing to test"
    );
    // Both started at once, so their first scans overlap.
    let mut commands: Vec<Command> = (0..2)
        .map(|_| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
            command
                .args(["serve", "--listen", "127.0.0.1:0", "--json", "--db", &url])
                .args(idle);
            command
        })
        .collect();
    let reapers = common::start_all(&mut commands);
    let limit = Instant::now() + Duration::from_secs(60);
    while sql(
        &url,
        &schema,
        "SELECT count(*) FROM conversations WHERE status = 'timed_out'",
    ) != "30"
    {
        assert!(Instant::now() < limit, "not every conversation timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counted = |text: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix("colloquy_conversations_timed_out_total "))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let limit = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let mut counts = Vec::new();
        for (_, ready) in &reapers {
            let metrics = common::get_text(&format!(
                "http://{}/metrics",
                ready["listening"].as_str().unwrap()
            ))
            .await;
            counts.push(counted(&metrics));
        }
        if counts.iter().sum::<u64>() >= left || Instant::now() >= limit {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("timed out by each hub: {counts:?} (of {left} the driver left)");
    assert_eq!(
        counts.iter().sum::<u64>(),
        left,
        "each conversation timed out once: {counts:?}"
    );
    for context in &contexts {
        let stored = transcript(&url, &schema, context).await;
        assert_eq!(stored.len(), 2, "{context}: nothing added by the reapers");
    }
    // `colloquy health` tells the killed hub (lost: fenced by the others) from a hub that
    // left, and reports the modules only it hosted as unreachable while other hubs run.
    let health = |expect_code: i32| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args(["health", "--json", "--db", &url, "--schema", &schema])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(expect_code), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let limit = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args(["health", "--json", "--db", &url, "--schema", &schema])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let lost = report["hubs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["state"] == "lost");
        if lost || Instant::now() >= limit {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["healthy"], false, "{report}");
    let states: Vec<&str> = report["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "lost").count(),
        1,
        "{report}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "alive").count(),
        2,
        "{report}"
    );
    let unreachable: Vec<&str> = report["unreachable_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(unreachable.contains(&"echo"), "{report}");
    assert!(
        !unreachable.contains(&"a2a-client"),
        "a caller is not a module: {report}"
    );
    for hub in report["hubs"].as_array().unwrap() {
        assert!(
            hub["modules"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m != "a2a-client"),
            "{report}"
        );
    }
    for (hub, _) in reapers {
        assert!(hub.terminate());
    }
    // With every hub stopped, the two that shut down are `left`, the killed one `lost`;
    // nothing serves, which is a stopped cluster, not a broken one.
    let report = health(0);
    let mut states: Vec<&str> = report["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["left", "left", "lost"], "{report}");
    drop_schema(&url, &schema);
}
