//! The web inspector in a real headless Chromium (Debian's `chromium` and `chromedriver`,
//! driven over WebDriver): the list after `colloquy demo`, filtered to failed conversations,
//! the deliberate failure opened with its reason, a turn sent through the A2A API appearing
//! live, a hostile message rendered as text, and the modules and health pages. Each page's
//! screenshot is written to `target/screenshots/` (and to `docs/` with
//! `COLLOQUY_UPDATE_SCREENSHOTS=1`).
//!
//! Needs Chromium and ChromeDriver (`COLLOQUY_TEST_CHROMIUM`, `COLLOQUY_TEST_CHROMEDRIVER`,
//! or on the PATH); without them the test says so and passes, except under `.ci/run`
//! (`COLLOQUY_REQUIRE_SERVICES=1`), which installs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A program from the environment variable `var`, else from the PATH.
fn program(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// ChromeDriver on a port it chose, and a WebDriver session of a headless Chromium.
struct Browser {
    client: Client,
    _driver: common::Running,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (
            program("COLLOQUY_TEST_CHROMIUM", "chromium"),
            program("COLLOQUY_TEST_CHROMEDRIVER", "chromedriver"),
        ) else {
            assert!(
                std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_none(),
                "Chromium and ChromeDriver are required (COLLOQUY_REQUIRE_SERVICES is set)"
            );
            eprintln!(
                "skipped: no chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let mut driver = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = driver.stdout.take().unwrap();
        let driver = common::Running(driver);
        // "ChromeDriver was started successfully on port N."
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = Some(rest.trim_end_matches('.').trim().to_owned());
                break;
            }
        }
        let port = port.expect("chromedriver printed its port");
        let profile = tempfile::tempdir().unwrap();
        // The flags this machine needs: no sandbox as root, no background connections
        // (the network is closed), a profile of its own.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Some(Self {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// Waits (on the page's progress, with a generous limit against a hang) for `css`.
    async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        if std::env::var_os("COLLOQUY_UPDATE_SCREENSHOTS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), &png).unwrap();
        }
    }
}

async fn send(base: &str, text: &str, context: Option<&str>) -> Value {
    let answer = common::send_text(
        &reqwest::Client::new(),
        &format!("{base}/agents/echo"),
        &uuid_like(text),
        text,
        context,
    )
    .await;
    assert_eq!(
        answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{answer}"
    );
    answer
}

/// A message id made of the text's length and a counter: unique within the test.
fn uuid_like(text: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "browser-{}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        text.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_in_a_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inspect.db");
    let demo = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["demo", "--conversations", "12", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let (server, _, base) = common::serve(&db, &[]);
    let page = &browser.client;

    // The list after the demo, newest first.
    page.goto(&format!("{base}/inspect")).await.unwrap();
    browser.wait_for("table.conversations").await;
    let rows = page
        .find_all(Locator::Css("a.conversation-link"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 12, "the demo's conversations are listed");
    browser.screenshot("inspector-list.png").await;
    // A conversation opened meanwhile is announced without a reload.
    assert!(!browser
        .wait_for("#new-conversations")
        .await
        .is_displayed()
        .await
        .unwrap());
    send(&base, "opened while the list is shown", None).await;
    browser.wait_for("#new-conversations:not([hidden])").await;

    // A search across conversations finds the turns holding the demo's bad address, and
    // leads to one of them.
    let search = page.find(Locator::Css("#search-all")).await.unwrap();
    search.send_keys("MALLORY-at-example").await.unwrap();
    page.find(Locator::Css("#search-all-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let hits = browser.wait_for("#hits").await;
    let links = hits.find_all(Locator::Css("a.hit-link")).await.unwrap();
    assert!(!links.is_empty(), "the bad address is found");
    let href = links[0].attr("href").await.unwrap().unwrap();
    let turn = href.rsplit("#turn-").next().unwrap().to_owned();
    links[0].click().await.unwrap();
    let found = browser.wait_for(&format!("#turn-{turn}")).await;
    assert!(found
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("mallory-at-example"));
    page.goto(&format!("{base}/inspect")).await.unwrap();
    browser.wait_for("table.conversations").await;

    // Filtered to failed conversations: the demo's deliberate failure.
    page.find(Locator::Css("#filter-status"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    page.find(Locator::Css("#filter-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("#filter-status option[value=failed][selected]")
        .await;
    assert!(page
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("status=failed"));
    let failed = page
        .find_all(Locator::Css("a.conversation-link"))
        .await
        .unwrap();
    assert!(!failed.is_empty(), "the deliberate failure is listed");
    for status in page.find_all(Locator::Css("span.status")).await.unwrap() {
        assert_eq!(status.text().await.unwrap(), "failed");
    }
    browser.screenshot("inspector-failed.png").await;

    // Opened: its reason, and its transcript.
    failed[0].click().await.unwrap();
    let reason = browser.wait_for("#reason").await;
    assert!(
        reason
            .text()
            .await
            .unwrap()
            .contains("validator rejected the record"),
        "the failure's reason is shown"
    );
    assert_eq!(
        browser.wait_for("#status").await.text().await.unwrap(),
        "failed"
    );
    assert!(!page
        .find_all(Locator::Css("#transcript tbody tr"))
        .await
        .unwrap()
        .is_empty());
    // The shared state's history: the end is one of its changes.
    let mut changes = String::new();
    for row in page.find_all(Locator::Css("tr.change")).await.unwrap() {
        changes.push_str(&row.text().await.unwrap());
    }
    assert!(
        changes.contains("status failed: validator rejected the record"),
        "{changes}"
    );
    assert!(changes.contains("phase termination"), "{changes}");
    browser.screenshot("inspector-conversation.png").await;
    // At a glance: the diagram marks the validator's exchange failed (no reply), and draws
    // the answered ones with their times.
    browser
        .wait_for("svg#timeline g.exchange.failed[data-module=validator]")
        .await;
    assert!(!page
        .find_all(Locator::Css("svg#timeline g.exchange.answered"))
        .await
        .unwrap()
        .is_empty());
    browser.screenshot("inspector-timeline.png").await;
    // A search within the conversation finds turns by a word of their content.
    let search = page.find(Locator::Css("#search")).await.unwrap();
    search.send_keys("proposal").await.unwrap();
    search.send_keys("\n").await.unwrap();
    let matches = browser.wait_for("#matches").await.text().await.unwrap();
    assert!(matches.contains("match “proposal”"), "{matches}");
    let found = page
        .find_all(Locator::Css("#transcript tbody tr[id^=turn-]"))
        .await
        .unwrap();
    assert!(!found.is_empty(), "{matches}");
    for row in &found {
        assert!(row.text().await.unwrap().contains("proposal"));
    }

    // Live: a conversation with echo, opened in the browser, continued through the API.
    let first = send(&base, "hello", None).await;
    let context = first["result"]["task"]["contextId"]
        .as_str()
        .unwrap()
        .to_owned();
    page.goto(&format!("{base}/inspect/conversations/{context}"))
        .await
        .unwrap();
    browser.wait_for("#turn-2").await;
    browser.wait_for("#live-note").await;
    let hostile =
        "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\"><b>bold</b>";
    send(&base, hostile, Some(&context)).await;
    let live_row = browser.wait_for("#turn-4").await;
    let shown = live_row
        .find(Locator::Css("pre.content"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        shown,
        serde_json::to_string(hostile).unwrap(),
        "shown as text"
    );
    assert_eq!(
        browser.wait_for("#turns").await.text().await.unwrap(),
        "4",
        "the turn count follows"
    );
    let injected =
        |script: &'static str| async move { page.execute(script, Vec::new()).await.unwrap() };
    assert_eq!(
        injected("return window.pwned === undefined").await,
        json!(true)
    );
    assert_eq!(
        injected("return document.querySelectorAll('#transcript b, #transcript img').length").await,
        json!(0),
        "no element came from a message"
    );
    // A long JSON turn arrives folded to one line with its size, and opens on click; the
    // diagram follows the new exchanges.
    let long = "a long answer ".repeat(100);
    send(&base, &long, Some(&context)).await;
    let folded = browser.wait_for("#turn-6 details.fold").await;
    let summary = folded.find(Locator::Css("summary")).await.unwrap();
    assert!(
        summary.text().await.unwrap().contains("kB"),
        "the size is shown"
    );
    let body = folded.find(Locator::Css("pre.content")).await.unwrap();
    assert!(!body.is_displayed().await.unwrap(), "folded at first");
    summary.click().await.unwrap();
    assert!(body.is_displayed().await.unwrap(), "opened on click");
    browser
        .wait_for("svg#timeline g.exchange.answered[data-turn='5']")
        .await;
    browser.screenshot("inspector-live.png").await;
    // The same page rendered by the server: text too.
    page.refresh().await.unwrap();
    browser.wait_for("#turn-4").await;
    assert_eq!(
        injected("return window.pwned === undefined").await,
        json!(true)
    );
    assert_eq!(
        injected("return document.querySelectorAll('#transcript b, #transcript img').length").await,
        json!(0)
    );

    // Modules and health.
    page.goto(&format!("{base}/inspect/modules")).await.unwrap();
    browser.wait_for("#module-echo").await;
    assert!(page
        .find(Locator::Css("#module-validator"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("this hub"));
    browser.screenshot("inspector-modules.png").await;
    // A module leads to its conversations.
    page.find(Locator::Css("#module-validator a.conversations-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for("table.conversations").await;
    assert!(page
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("module=validator"));
    assert!(!page
        .find_all(Locator::Css("a.conversation-link"))
        .await
        .unwrap()
        .is_empty());
    page.goto(&format!("{base}/inspect/health")).await.unwrap();
    // Where the time went: the validator's exchanges, one of them without a reply (the
    // demo's deliberate failure), each module leading to its conversations.
    let validator = browser.wait_for("#exchanges-validator").await;
    let cells = validator.find_all(Locator::Css("td")).await.unwrap();
    let unanswered: u64 = cells[2].text().await.unwrap().parse().unwrap();
    assert!(
        unanswered >= 1,
        "the failed validation is an exchange without a reply"
    );
    assert!(
        cells[3].text().await.unwrap().starts_with('<'),
        "a p50 is shown"
    );
    assert_eq!(
        validator
            .find(Locator::Css("a"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .as_deref(),
        Some("/inspect?module=validator")
    );
    assert_eq!(
        browser.wait_for("#healthy").await.text().await.unwrap(),
        "Healthy"
    );
    assert!(
        page.find_all(Locator::Css("#by-status .bar-row"))
            .await
            .unwrap()
            .len()
            >= 3
    );
    browser.screenshot("inspector-health.png").await;
    // A bar of the turns distribution leads to the conversations behind it: as many as it
    // counts.
    let mut behind = None;
    for row in page
        .find_all(Locator::Css("#turns .bar-row"))
        .await
        .unwrap()
    {
        let value = row.find(Locator::Css(".bar-value")).await.unwrap();
        let count: usize = value.text().await.unwrap().parse().unwrap();
        if count > 0 {
            behind = Some((row.find(Locator::Css("a")).await.unwrap(), count));
            break;
        }
    }
    let (link, count) = behind.expect("the demo's conversations fill a bar");
    link.click().await.unwrap();
    browser.wait_for("#bar").await;
    assert!(page
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("turns="));
    assert_eq!(
        page.find_all(Locator::Css("a.conversation-link"))
            .await
            .unwrap()
            .len(),
        count,
        "the list holds the bar's conversations"
    );

    browser.client.close().await.unwrap();
    assert!(server.terminate());
}
