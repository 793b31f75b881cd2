//! The inspector over real HTTP, on a hub in memory: what each page shows, that content is
//! escaped, that the list pages by the store's cursor and filters, that a token's reader
//! sees only its participant's conversations, and that the live stream carries new turns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use colloquy_inspector::{Inspector, InspectorOptions};
use colloquy_runtime::{ConversationSpec, Hub};
use colloquy_testkit::modules::Echo;

/// A hub with `client`, `server` and `other` echo modules, and the inspector served on a
/// free loopback port; returns the hub and the base URL.
async fn serve(options: InspectorOptions) -> (Hub, String) {
    let hub = Hub::builder().memory().build().await.unwrap();
    for name in ["client", "server", "other"] {
        hub.register(Echo::new(name.parse().unwrap()))
            .await
            .unwrap();
    }
    let app = Inspector::new(hub.clone(), options).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hub, base)
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().unwrap().clone()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_shows_every_turn_with_hostile_content_as_text() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    let conversation = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    conversation
        .send("<script>window.pwned = 1</script><b>bold</b>")
        .await
        .unwrap();
    conversation.send("second").await.unwrap();
    conversation
        .patch_context(object(serde_json::json!({"found": 7})))
        .await
        .unwrap();
    conversation
        .transfer("server".parse().unwrap(), "other".parse().unwrap())
        .await
        .unwrap();
    let id = conversation.id();
    let (status, html) = page(&client(), &format!("{base}/inspect/conversations/{id}")).await;
    assert_eq!(status, 200, "{html}");
    // The shared state's history: the creation, the handshake, the patch, the transfer,
    // each after the turn it came with.
    assert!(html.contains("<li>phase execution</li>"), "{html}");
    assert!(html.contains("<li>context +found = 7</li>"), "{html}");
    assert!(
        html.contains("<li>transfer server -&gt; other</li>")
            || html.contains("<li>transfer server -&#62; other</li>"),
        "{html}"
    );
    let after_turn_4 = html.split(r#"id="turn-4""#).nth(1).unwrap();
    assert!(
        after_turn_4.contains("context +found = 7"),
        "the patch follows turn 4"
    );
    assert!(html.contains(r#"id="turn-4""#), "four turns shown");
    assert!(
        html.contains(r##"<a href="#turn-3">turn 3</a>"##),
        "a reply names its request"
    );
    let escaped = html.replace("&#60;", "&lt;").replace("&#62;", "&gt;");
    assert!(escaped.contains("&lt;script&gt;window.pwned = 1&lt;/script&gt;&lt;b&gt;bold"));
    assert!(!html.contains("<script>window.pwned"), "content is escaped");
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains("client → server"));

    // The list names it, with its turn count.
    let (status, html) = page(&client(), &format!("{base}/inspect")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&id.to_string()));

    // An unknown conversation is a 404 page, not an error of the server.
    let (status, _) = page(
        &client(),
        &format!("{base}/inspect/conversations/0190f0a0-0000-7000-8000-000000000000"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = page(&client(), &format!("{base}/inspect/conversations/nonsense")).await;
    assert_eq!(status, 404);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_by_cursor_and_filters_by_status_and_module() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    let mut failed = Vec::new();
    for n in 0..60 {
        let target = if n % 2 == 0 { "server" } else { "other" };
        let conversation = hub
            .start_conversation(ConversationSpec::between("client", target).unwrap())
            .await
            .unwrap();
        if n % 10 == 0 {
            conversation.fail(format!("failure {n}")).await.unwrap();
            failed.push(conversation.id());
        }
    }
    let http = client();
    let (_, first) = page(&http, &format!("{base}/inspect")).await;
    assert_eq!(first.matches("class=\"conversation-link\"").count(), 50);
    let next = first
        .split("id=\"next-page\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&");
    let (_, second) = page(&http, &format!("{base}{next}")).await;
    assert_eq!(second.matches("class=\"conversation-link\"").count(), 10);
    assert!(!second.contains("id=\"next-page\""));

    let (_, only_failed) = page(&http, &format!("{base}/inspect?status=failed")).await;
    assert_eq!(
        only_failed.matches("class=\"conversation-link\"").count(),
        6
    );
    for id in &failed {
        assert!(only_failed.contains(&id.to_string()));
    }
    assert!(only_failed.contains("failure 50"), "the reason is listed");
    let (_, with_other) = page(&http, &format!("{base}/inspect?module=other")).await;
    assert_eq!(
        with_other.matches("class=\"conversation-link\"").count(),
        30
    );
    let (status, bad) = page(&http, &format!("{base}/inspect?status=sleeping")).await;
    assert_eq!(status, 400, "{bad}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reads_only_its_participants_conversations() {
    let options = InspectorOptions::new().token("t-other", "other".parse().unwrap());
    let (hub, base) = serve(options).await;
    let mine = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap()
        .id();
    let theirs = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap()
        .id();
    let http = client();
    let (status, html) = page(&http, &format!("{base}/inspect")).await;
    assert_eq!(status, 401);
    assert!(html.contains("name=\"token\""), "a form asks for the token");
    let (status, _) = page(&http, &format!("{base}/inspect?token=wrong")).await;
    assert_eq!(status, 401);

    // ?token= answers with a redirect that sets the cookie.
    let response = http
        .get(format!("{base}/inspect?status=active&token=t-other"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "/inspect?status=active"
    );
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |url: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            let response = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let (status, html) = with_cookie(format!("{base}/inspect")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&mine.to_string()));
    assert!(
        !html.contains(&theirs.to_string()),
        "another's conversation is not listed"
    );
    let (status, _) = with_cookie(format!("{base}/inspect/conversations/{mine}")).await;
    assert_eq!(status, 200);
    let (status, _) = with_cookie(format!("{base}/inspect/conversations/{theirs}")).await;
    assert_eq!(status, 404, "another's conversation is not found");
    // A bearer token works too.
    let response = http
        .get(format!("{base}/inspect/conversations/{mine}"))
        .bearer_auth("t-other")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_carries_new_turns_and_the_end() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    let conversation = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    conversation.send("before the page").await.unwrap();
    let id = conversation.id();
    // The page showed turn 1 only: turn 2 is caught up from the store, then live turns.
    let mut stream = client()
        .get(format!("{base}/inspect/conversations/{id}/live?after=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let sent = tokio::spawn(async move {
        conversation.send("<i>live</i>").await.unwrap();
        conversation
            .patch_context(object(serde_json::json!({"seen": true})))
            .await
            .unwrap();
        conversation.end().await.unwrap();
    });
    let mut text = String::new();
    while !text.contains("\"status\":\"completed\"") {
        let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    sent.await.unwrap();
    let turns: Vec<u64> = text
        .split("event: turn\ndata: ")
        .skip(1)
        .map(|event| {
            let data = event.lines().next().unwrap();
            serde_json::from_str::<serde_json::Value>(data).unwrap()["turn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(turns, [2, 3, 4], "each turn once, in order");
    assert!(text.contains(r#""content":"\"<i>live</i>\"""#), "{text}");
    assert!(text.contains(r#""reply_to":3"#));
    assert!(text.contains("event: change\n"), "{text}");
    assert!(
        text.contains(r#""items":["context +seen = true"]"#),
        "{text}"
    );
    assert!(
        text.contains(r#""items":["status completed","phase termination"]"#),
        "{text}"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_stream_carries_only_the_readers_conversations() {
    let options = InspectorOptions::new().token("t-other", "other".parse().unwrap());
    let (hub, base) = serve(options).await;
    let mut stream = client()
        .get(format!("{base}/inspect/live"))
        .bearer_auth("t-other")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let theirs = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    theirs.end().await.unwrap();
    let mine = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap();
    mine.end().await.unwrap();
    let mut text = String::new();
    while !text.contains("\"status\":\"completed\"") {
        let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<serde_json::Value> = text
        .split("event: conversation\ndata: ")
        .skip(1)
        .map(|event| serde_json::from_str(event.lines().next().unwrap()).unwrap())
        .collect();
    // Opened, its handshake concluded, ended: every one about the reader's conversation.
    assert!(events.len() >= 2, "{text}");
    assert!(
        events.iter().all(|e| e["id"] == mine.id().to_string()),
        "{text}"
    );
    assert_eq!(events[0]["opened"], true);
    assert_eq!(events[0]["status"], "active");
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert_eq!(events.last().unwrap()["opened"], false);
    assert!(
        !text.contains(&theirs.id().to_string()),
        "another's conversation is not streamed"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modules_page_names_hosts_capabilities_and_remote_agents() {
    let options =
        InspectorOptions::new().remote_agent("other".parse().unwrap(), "http://agents.example/a2a");
    let (hub, base) = serve(options).await;
    let (status, html) = page(&client(), &format!("{base}/inspect/modules")).await;
    assert_eq!(status, 200);
    for name in ["client", "server", "other"] {
        assert!(html.contains(&format!("id=\"module-{name}\"")), "{html}");
    }
    assert!(html.contains("this hub"));
    assert!(
        html.contains("remote A2A agent at http://agents.example/a2a"),
        "{html}"
    );
    let (status, html) = page(&client(), &format!("{base}/inspect/health")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Healthy"), "{html}");
    assert!(html.contains("memory, answers in"), "{html}");
    hub.shutdown().await;
}

/// A reader with a token sees figures of its own conversations on the health page, and no
/// caller's name on the health or modules pages; every page's title is plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_reader_sees_its_own_figures_and_no_callers_names() {
    let options = InspectorOptions::new().token("t-other", "other".parse().unwrap());
    let (hub, base) = serve(options).await;
    // A caller participant, as a network front registers one.
    hub.register_with(
        std::sync::Arc::new(Echo::with_info(colloquy_runtime::ModuleInfo::caller(
            "secret-caller".parse().unwrap(),
            "a caller",
        ))),
        colloquy_runtime::Registration::new(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let theirs = hub
            .start_conversation(ConversationSpec::between("secret-caller", "server").unwrap())
            .await
            .unwrap();
        theirs.send("hi").await.unwrap();
    }
    let mine = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap();
    mine.send("hello").await.unwrap();
    mine.end().await.unwrap();

    let http = client();
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth("t-other")
            .send()
    };
    let health = get("/inspect/health").await.unwrap().text().await.unwrap();
    assert!(
        health.contains("1 in all"),
        "the reader's one conversation, not the database's four: {health}"
    );
    assert!(health.contains("id=\"scope\""), "{health}");
    assert!(!health.contains("secret-caller"), "{health}");
    // Every bar is drawn in a track, so its percent is of the same width in every panel.
    let bars = health.matches("<rect class=\"bar").count();
    assert!(bars > 0, "{health}");
    assert_eq!(
        health.matches("<svg class=\"bar-track\"").count(),
        bars,
        "{health}"
    );
    let modules = get("/inspect/modules").await.unwrap().text().await.unwrap();
    assert!(!modules.contains("secret-caller"), "{modules}");
    assert!(modules.contains("id=\"module-server\""), "{modules}");
    for path in ["/inspect", "/inspect/modules", "/inspect/health"] {
        let html = get(path).await.unwrap().text().await.unwrap();
        let title = html
            .split("<title>")
            .nth(1)
            .and_then(|rest| rest.split("</title>").next())
            .unwrap();
        assert!(
            !title.contains('<'),
            "{path}: the title holds markup: {title}"
        );
    }
    // Without a token's scope (everyone), the totals are the database's.
    let (everyone_hub, everyone_base) = serve(InspectorOptions::new()).await;
    let c = everyone_hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    c.send("x").await.unwrap();
    let (_, all) = page(&client(), &format!("{everyone_base}/inspect/health")).await;
    assert!(all.contains("1 in all"), "{all}");
    assert!(all.contains("Module activity"), "{all}");
    assert!(!all.contains("id=\"scope\""), "{all}");
    everyone_hub.shutdown().await;
    hub.shutdown().await;
}

/// Every response carries the security headers; no page holds an inline script or style
/// (the policy allows only the inspector's own files); a token passed as `?%74oken=` (its
/// name percent-encoded) is taken once and dropped from the address like `?token=`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_with_a_strict_policy_and_the_token_leaves_the_address() {
    let options = InspectorOptions::new().token("t-other", "other".parse().unwrap());
    let (hub, base) = serve(options).await;
    let mine = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap();
    mine.send("hello").await.unwrap();
    let http = client();
    for path in [
        "/inspect".to_owned(),
        format!("/inspect/conversations/{}", mine.id()),
        "/inspect/modules".to_owned(),
        "/inspect/health".to_owned(),
        "/inspect/search?q=hello".to_owned(),
        format!("/inspect/conversations/{}/timeline", mine.id()),
        format!("/inspect/conversations/{}/turns/1", mine.id()),
        "/inspect/assets/inspector.css".to_owned(),
    ] {
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth("t-other")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(policy.contains("style-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        let body = response.text().await.unwrap();
        if !path.contains("assets") {
            assert!(!body.contains("<script>"), "{path}: an inline script");
            assert!(!body.contains("style="), "{path}: an inline style");
        }
    }
    // Unauthenticated, too: the 401 page carries them.
    let refused = http.get(format!("{base}/inspect")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(refused.headers().contains_key("content-security-policy"));

    for query in [
        "token=t-other&status=active",
        "%74oken=t-other&status=active",
    ] {
        let response = http
            .get(format!("{base}/inspect?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303, "{query}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, "/inspect?status=active", "{query}");
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        // Following the redirect with the cookie reads the page; no second redirect.
        let page = http
            .get(format!("{base}{location}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200, "{query}");
    }
    hub.shutdown().await;
}

/// On a store several hubs share, the live streams of one hub's inspector carry what other
/// hubs write: a turn stored through hub B, and B's new conversation, appear on hub A's
/// streams without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_streams_follow_other_hubs_of_the_cluster() {
    let cluster = colloquy_testkit::TestCluster::new();
    let mut hubs = Vec::new();
    for name in ["a", "b"] {
        hubs.push(cluster.hub(name).build().await.unwrap());
    }
    let (a, b) = (hubs[0].clone(), hubs[1].clone());
    assert!(a.in_cluster());
    for name in ["client", "server"] {
        b.register(Echo::new(name.parse().unwrap())).await.unwrap();
    }
    let app = Inspector::new(a.clone(), InspectorOptions::new()).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut list = client()
        .get(format!("{base}/inspect/live"))
        .send()
        .await
        .unwrap();
    let conversation = b
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    let id = conversation.id();
    let mut text = String::new();
    while !text.contains(&id.to_string()) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), list.chunk())
            .await
            .expect("hub B's conversation reaches hub A's list stream")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(r#""opened":true"#), "{text}");

    let mut stream = client()
        .get(format!("{base}/inspect/conversations/{id}/live?after=0"))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    // What was there when the stream started, then what hub B writes afterwards.
    while !text.contains("\"status\":\"active\"") {
        let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    conversation.send("through hub b").await.unwrap();
    conversation.end().await.unwrap();
    while !text.contains("\"status\":\"completed\"") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), stream.chunk())
            .await
            .expect("hub B's turns reach hub A's live stream")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let turns: Vec<u64> = text
        .split("event: turn\ndata: ")
        .skip(1)
        .map(|event| {
            let data = event.lines().next().unwrap();
            serde_json::from_str::<serde_json::Value>(data).unwrap()["turn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(turns, [1, 2], "each turn once, in order");
    assert!(text.contains(r#""content":"\"through hub b\"""#), "{text}");
    assert!(text.contains("status completed"), "{text}");
    assert_eq!(
        text.matches(r#""hub":"b""#).count(),
        2,
        "each turn read from the store names hub B: {text}"
    );

    // Which hub wrote each turn: hub B's conversation, and one hub A opened with B's
    // modules (the sender's hub stores both the request and the reply).
    let (_, shown) = page(&client(), &format!("{base}/inspect/conversations/{id}")).await;
    assert_eq!(shown.matches("via b</div>").count(), 2, "{shown}");
    let across = a
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    across.send("from hub a").await.unwrap();
    let (_, shown) = page(
        &client(),
        &format!("{base}/inspect/conversations/{}", across.id()),
    )
    .await;
    assert_eq!(shown.matches("via a</div>").count(), 2, "{shown}");
    assert!(!shown.contains("via b</div>"), "{shown}");
    b.shutdown().await;
    a.shutdown().await;
}

/// A 500-exchange (1,000-turn) conversation: its page, with the diagram, a search and a
/// turn's JSON. The server time of the page is written to the test's log (issue 26 asks
/// for under 200 ms; it is measured, not asserted: a test does not time the machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_turn_conversation_renders_with_its_diagram_search_and_turn_json() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    let conversation = hub
        .start_conversation(
            ConversationSpec::between("client", "server")
                .unwrap()
                .max_turns(2_000),
        )
        .await
        .unwrap();
    for n in 0..500 {
        let content = if n == 321 {
            serde_json::json!({"needle": "a rare word", "n": n})
        } else {
            serde_json::json!({"n": n, "text": "x".repeat(500)})
        };
        conversation.send(content).await.unwrap();
    }
    let id = conversation.id();
    let http = client();
    let url = format!("{base}/inspect/conversations/{id}");
    page(&http, &url).await; // warm
    let started = std::time::Instant::now();
    let (status, html) = page(&http, &url).await;
    let elapsed = started.elapsed();
    eprintln!(
        "the page of a 1,000-turn conversation: {} ms, {} bytes",
        elapsed.as_millis(),
        html.len()
    );
    assert_eq!(status, 200);
    // The first page holds 500 turns, each drawn in the diagram: 250 answered exchanges.
    assert_eq!(html.matches(r#"class="exchange answered""#).count(), 250);
    assert!(html.contains(r#"id="turn-500""#) && !html.contains(r#"id="turn-501""#));
    // The long contents are folded, with their size.
    assert!(html.contains(r#"<details class="fold">"#));
    // A search finds the one request (and its echo) holding the word.
    let (_, found) = page(&http, &format!("{url}?q=RARE+word")).await;
    assert!(
        found.contains("2 turns match"),
        "{}",
        &found[..found.len().min(2000)]
    );
    assert!(found.contains(r#"id="turn-643""#) && found.contains(r#"id="turn-644""#));
    assert!(!found.contains(r#"id="turn-1""#));
    // A turn's JSON at its own address.
    let turn: serde_json::Value = http
        .get(format!("{url}/turns/643"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(turn["content"]["needle"], "a rare word");
    assert_eq!(turn["turn"], 643);
}

/// The health page's "where the time went": each module's requests over the chosen period,
/// a day by default; a period that cannot be read is refused with what to write instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_page_says_where_the_time_went_over_a_period() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    let conversation = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    for n in 0..3 {
        conversation.send(n).await.unwrap();
    }
    let http = client();
    let (status, html) = page(&http, &format!("{base}/inspect/health")).await;
    assert_eq!(status, 200);
    assert!(html.contains("the requests of the last 24h"), "{html}");
    let row = html.split(r#"id="exchanges-server""#).nth(1).unwrap();
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(r#"<td class="number">3</td><td class="number">0</td>"#),
        "{row}"
    );
    let (status, html) = page(&http, &format!("{base}/inspect/health?since=7d")).await;
    assert_eq!(status, 200);
    assert!(html.contains("the requests of the last 7d"));
    let (status, html) = page(&http, &format!("{base}/inspect/health?since=lately")).await;
    assert_eq!(status, 400);
    assert!(html.contains("use 15m, 1h, 7d"), "{html}");
}

/// The search across conversations finds turns by their content, and a reader with a
/// token only in its participant's conversations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_across_conversations_keeps_to_the_readers_own() {
    let options = InspectorOptions::new().token("t-other", "other".parse().unwrap());
    let (hub, base) = serve(options).await;
    let mine = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap();
    mine.send("the secret word is OTTER").await.unwrap();
    let theirs = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    theirs.send("their secret word is otter too").await.unwrap();
    let http = client();
    let bearer = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(url).bearer_auth("t-other").send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, html) = bearer(format!("{base}/inspect/search?q=Otter")).await;
    assert_eq!(status, 200, "{html}");
    // Its own conversation's request and the echo of it, not the other one.
    assert_eq!(html.matches("class=\"hit-link\"").count(), 2, "{html}");
    assert!(html.contains(&mine.id().to_string()));
    assert!(!html.contains(&theirs.id().to_string()));
    let (_, html) = bearer(format!("{base}/inspect/search?q=beaver")).await;
    assert!(html.contains(r#"id="no-hits""#));
}

/// Each bar of the health page's distributions leads to the conversations behind it: the
/// list shows exactly those of the bar's bucket, and keeps to the other filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_bar_leads_to_the_conversations_behind_it() {
    let (hub, base) = serve(InspectorOptions::new()).await;
    // Two conversations of 2 turns, one of 6, one of none.
    let mut short = Vec::new();
    for _ in 0..2 {
        let c = hub
            .start_conversation(ConversationSpec::between("client", "server").unwrap())
            .await
            .unwrap();
        c.send("once").await.unwrap();
        short.push(c.id().to_string());
    }
    let long = hub
        .start_conversation(ConversationSpec::between("client", "other").unwrap())
        .await
        .unwrap();
    for n in 0..3 {
        long.send(n).await.unwrap();
    }
    let empty = hub
        .start_conversation(ConversationSpec::between("client", "server").unwrap())
        .await
        .unwrap();
    empty.end().await.unwrap();

    let http = client();
    let (_, html) = page(&http, &format!("{base}/inspect/health")).await;
    let turns = html.split(r#"id="turns""#).nth(1).unwrap();
    let turns = &turns[..turns.find("</div>\n  </div>").unwrap()];
    assert!(
        turns.contains(r#"<a class="bar-label" href="/inspect?turns=1-2">1-2</a>"#),
        "{turns}"
    );
    let durations = html.split(r#"id="durations""#).nth(1).unwrap();
    assert!(
        durations.contains(r#"href="/inspect?lasted=0s-1s""#),
        "{durations}"
    );

    let listed = |html: &str| -> Vec<String> {
        let mut ids: Vec<String> = html
            .split(r#"<tr data-id=""#)
            .skip(1)
            .map(|row| row[..row.find('"').unwrap()].to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (status, html) = page(&http, &format!("{base}/inspect?turns=1-2")).await;
    assert_eq!(status, 200);
    let mut expected = short.clone();
    expected.sort();
    assert_eq!(listed(&html), expected, "{html}");
    assert!(html.contains("those with 1-2 turns"), "{html}");
    let (_, html) = page(&http, &format!("{base}/inspect?turns=6-10")).await;
    assert_eq!(listed(&html), [long.id().to_string()]);
    let (_, html) = page(&http, &format!("{base}/inspect?turns=0&status=completed")).await;
    assert_eq!(listed(&html), [empty.id().to_string()]);
    let (_, html) = page(&http, &format!("{base}/inspect?turns=0&status=active")).await;
    assert_eq!(listed(&html), Vec::<String>::new());
    let (_, html) = page(&http, &format!("{base}/inspect?lasted=1h-")).await;
    assert_eq!(listed(&html), Vec::<String>::new());
    let (status, html) = page(&http, &format!("{base}/inspect?turns=7")).await;
    assert_eq!(status, 400);
    assert!(html.contains("use one of 0, 1-2, 3-5"), "{html}");
}
