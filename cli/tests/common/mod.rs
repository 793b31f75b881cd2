//! Shared by the tests that run `colloquy serve` (and the Python agent): start a process
//! that prints one JSON line when it is ready, and stop it when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::print_stderr)]

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use colloquy_core::{ConversationId, MessageId, StatusKind};
use colloquy_storage::{ConversationStore, ListFilter, MessageRange};
use serde_json::Value;

/// The Python to use, or `None` (with the reason printed) where the test may skip.
pub(crate) fn python() -> Option<PathBuf> {
    match std::env::var_os("COLLOQUY_TEST_PYTHON") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_some() => panic!(
            "COLLOQUY_TEST_PYTHON is not set but COLLOQUY_REQUIRE_SERVICES is: \
             the Python interop tests must run (see .ci/run)"
        ),
        None => {
            eprintln!(
                "skipped: set COLLOQUY_TEST_PYTHON to a Python with a2a-sdk installed \
                 (pip install -r cli/tests/python/requirements.txt) to run it"
            );
            None
        }
    }
}

pub(crate) fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the Python script `name` (in `tests/python/`) with `args` to its end and returns
/// the JSON it printed; fails the test, with its error output, if it failed.
pub(crate) fn run_script(python: &Path, name: &str, args: &[&str]) -> Value {
    let run = Command::new(python)
        .arg(script(name))
        .args(args)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the Python script {name} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&run.stdout)
        )
    })
}

/// The SDK agent; returns it and its base URL.
pub(crate) fn python_agent(python: &Path) -> (Running, String) {
    let (agent, ready) = start(Command::new(python).arg(script("agent.py")));
    let url = ready["url"].as_str().unwrap().to_owned();
    (agent, url)
}

/// A child process killed when the test ends, pass or fail.
pub(crate) struct Running(pub(crate) Child);

impl Running {
    /// Sends SIGTERM and waits: true if the process then exited cleanly.
    pub(crate) fn terminate(mut self) -> bool {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        sent && self.0.wait().unwrap().success()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process that prints one JSON line when ready; returns it and that line.
pub(crate) fn start(command: &mut Command) -> (Running, Value) {
    let mut started = start_all(std::slice::from_mut(command));
    started.pop().unwrap()
}

/// Starts every command at once, then waits for each one's ready line.
/// COLLOQUY_TEST_SERVE_LOG (a RUST_LOG filter) turns the started processes' logs on, to
/// debug a failing test.
pub(crate) fn start_all(commands: &mut [Command]) -> Vec<(Running, Value)> {
    let children: Vec<Child> = commands
        .iter_mut()
        .map(|command| {
            match std::env::var("COLLOQUY_TEST_SERVE_LOG") {
                Ok(filter) => command.env("RUST_LOG", filter),
                Err(_) => command.env_remove("RUST_LOG"),
            };
            command.stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| {
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            (Running(child), ready)
        })
        .collect()
}

/// `colloquy serve --demo-modules` on a free loopback port and `db`, with `extra`
/// arguments; returns it, its ready line and its base URL.
pub(crate) fn serve(db: &Path, extra: &[&str]) -> (Running, Value, String) {
    serve_on(db.as_os_str(), extra)
}

/// [`serve`] on any `--db` (a file or a PostgreSQL URL).
pub(crate) fn serve_on(
    db: impl AsRef<std::ffi::OsStr>,
    extra: &[&str],
) -> (Running, Value, String) {
    serve_with(db, true, extra)
}

/// `colloquy serve` on a free loopback port and `db`, with the demo's modules or none of
/// its own, and `extra` arguments; returns it, its ready line and its base URL.
pub(crate) fn serve_with(
    db: impl AsRef<std::ffi::OsStr>,
    demo_modules: bool,
    extra: &[&str],
) -> (Running, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_colloquy"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--json"]);
    if demo_modules {
        command.arg("--demo-modules");
    }
    let (server, ready) = start(command.args(extra).arg("--db").arg(db));
    let base = format!("http://{}", ready["listening"].as_str().unwrap());
    (server, ready, base)
}

/// An A2A `SendMessage` of `text` with message id `id` to `endpoint` (in the conversation
/// `context`, or a new one); returns the JSON-RPC answer.
pub(crate) async fn send_text(
    http: &reqwest::Client,
    endpoint: &str,
    id: &str,
    text: &str,
    context: Option<&str>,
) -> Value {
    let mut message =
        serde_json::json!({"messageId": id, "role": "ROLE_USER", "parts": [{"text": text}]});
    if let Some(context) = context {
        message["contextId"] = serde_json::json!(context);
    }
    http.post(endpoint)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The body of a GET of `url`, as text.
pub(crate) async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Acknowledged messages: complete lines of the ack log.
pub(crate) fn acknowledged(log: &Path) -> Vec<(ConversationId, u64, MessageId)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let conversation = parts.next().unwrap().parse().unwrap();
            let turn = parts.next().unwrap().parse().unwrap();
            let id = parts.next().unwrap().parse().unwrap();
            (conversation, turn, id)
        })
        .collect()
}

/// Waits (on progress, not on a timer) until the ack log holds `lines` lines, or the
/// child exits; a generous limit only guards against a hang.
pub(crate) fn wait_for_acks(child: &mut Child, log: &Path, lines: usize) {
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        if acknowledged(log).len() >= lines {
            return;
        }
        if child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(
            Instant::now() < limit,
            "no progress: fewer than {lines} acknowledgements after 120 s"
        );
        std::thread::yield_now();
    }
}

/// Everything acknowledged is stored; every conversation's turns are 1..=n; every reply
/// answers the turn right before it (the load's exchanges are never interleaved). Returns the active conversations with their turn counts.
pub(crate) async fn verify(
    store: &dyn ConversationStore,
    acks: &[(ConversationId, u64, MessageId)],
) -> Vec<(ConversationId, u64)> {
    verify_answering(store, acks, false).await
}

/// [`verify`], and every request in the store is followed at once by its reply, not only the
/// acknowledged ones: for a cluster, where a survivor concludes a dead hub's exchanges (on
/// one SQLite file, a request a killed process left is followed by the next one).
pub(crate) async fn verify_all_answered(
    store: &dyn ConversationStore,
    acks: &[(ConversationId, u64, MessageId)],
) -> Vec<(ConversationId, u64)> {
    verify_answering(store, acks, true).await
}

async fn verify_answering(
    store: &dyn ConversationStore,
    acks: &[(ConversationId, u64, MessageId)],
    every_request: bool,
) -> Vec<(ConversationId, u64)> {
    let acked: HashSet<MessageId> = acks.iter().map(|(_, _, id)| *id).collect();
    // Each message is acknowledged once: a line twice is a message acknowledged twice.
    let distinct: HashSet<&(ConversationId, u64, MessageId)> = acks.iter().collect();
    assert_eq!(
        distinct.len(),
        acks.len(),
        "{} ack lines are duplicates",
        acks.len() - distinct.len()
    );
    let mut by_conversation: HashMap<ConversationId, Vec<(u64, MessageId)>> = HashMap::new();
    for (conversation, turn, id) in acks {
        by_conversation
            .entry(*conversation)
            .or_default()
            .push((*turn, *id));
    }
    let mut filter = ListFilter::new().limit(colloquy_storage::MAX_PAGE);
    let mut all = Vec::new();
    loop {
        let page = store.list(&filter).await.unwrap();
        all.extend(page.conversations);
        match page.next {
            Some(cursor) => filter = filter.after(cursor),
            None => break,
        }
    }
    let stored_ids: HashSet<ConversationId> = all.iter().map(|c| c.id()).collect();
    for conversation in by_conversation.keys() {
        assert!(
            stored_ids.contains(conversation),
            "acknowledged conversation {conversation} is missing"
        );
    }
    let mut active = Vec::new();
    for conversation in &all {
        let messages = store
            .messages(conversation.id(), MessageRange::All)
            .await
            .unwrap();
        let turns: Vec<u64> = messages.iter().map(|m| m.turn).collect();
        assert_eq!(
            turns,
            (1..=conversation.turn_count()).collect::<Vec<_>>(),
            "turns of {} are not 1..=n",
            conversation.id()
        );
        let ids: HashMap<MessageId, u64> = messages.iter().map(|m| (m.id, m.turn)).collect();
        // Forwards too: a request is followed at once by its reply (an unanswered request
        // followed by another one is an interleaving), if it was acknowledged (the ack
        // comes after the exchange), or always when `every_request` is asked.
        for pair in messages.windows(2) {
            let checked = every_request || acked.contains(&pair[0].id);
            if checked && pair[0].kind == colloquy_core::MessageKind::Request {
                assert_eq!(
                    pair[1].in_reply_to,
                    Some(pair[0].id),
                    "request {} (turn {}) of {} is not followed by its reply",
                    pair[0].id,
                    pair[0].turn,
                    conversation.id()
                );
            }
        }
        for m in &messages {
            if let Some(parent) = m.in_reply_to {
                assert_eq!(
                    ids.get(&parent),
                    Some(&(m.turn - 1)),
                    "reply {} does not answer the turn before it",
                    m.id
                );
            }
        }
        for (turn, id) in by_conversation
            .get(&conversation.id())
            .into_iter()
            .flatten()
        {
            assert_eq!(
                ids.get(id),
                Some(turn),
                "acknowledged message {id} (turn {turn}) is missing"
            );
        }
        if conversation.status().kind() == StatusKind::Active {
            active.push((conversation.id(), conversation.turn_count()));
        }
    }
    active
}
