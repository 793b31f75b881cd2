//! The link between hub processes fails safe: a hub that hosts a module and is killed, or
//! paused past the member timeout, while it runs a turn another hub sent over the link
//! leaves the turn to another hub hosting the module (through the database), and the
//! sender stores exactly one reply. Needs `COLLOQUY_TEST_POSTGRES` and
//! `COLLOQUY_TEST_PYTHON` (the host's module is an A2A agent written with the Python SDK,
//! which keeps answering while its hub is paused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{process::Command, sync::Arc, time::Duration};

use colloquy_runtime::{
    async_trait, ConversationSpec, Hub, MessageRange, Module, ModuleError, ModuleInfo, Response,
    Turn,
};
use colloquy_storage::{PostgresOptions, PostgresStore};

/// The module the standby hub hosts under the Python agent's name.
struct Standby;

#[async_trait]
impl Module for Standby {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("python-counter".parse().unwrap())
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::reply(format!(
            "standby answered {}",
            turn.message.content
        )))
    }
}

async fn hub(url: &str, schema: &str, name: &str, timeout: Duration) -> Hub {
    let store = PostgresStore::connect(url, PostgresOptions::new().schema(schema).unwrap())
        .await
        .unwrap();
    Hub::builder()
        .store(Arc::new(store))
        .member_name(name)
        .member_timeout(timeout)
        .build()
        .await
        .unwrap()
}

fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql")
        .args([url, "-qAt", "-c", "SET client_min_messages = warning"])
        .args(["-c", &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")])
        .status();
}

/// What the Python agent has started working on.
async fn started(agent: &str) -> Vec<String> {
    serde_json::from_str(&common::get_text(&format!("{agent}/_test/started")).await).unwrap()
}

/// Runs one scenario: a `colloquy serve` process hosting the Python agent (joined first, so
/// senders use it), a standby hub hosting a module of the same name, and a sender hub;
/// `text` is sent, and once the agent has it, `disrupt` is done to the host process. The
/// sender's exchange must be answered by the standby, once.
async fn the_standby_answers(
    text: &str,
    host_timeout: &str,
    disrupt: impl FnOnce(&mut common::Running),
    after: impl AsyncFnOnce(&Hub, &mut common::Running),
) {
    let (Some(url), Some(python)) = (colloquy_testkit::postgres_url(), common::python()) else {
        return;
    };
    let schema = format!("colloquy_link_{}_{text}", std::process::id());
    drop_schema(&url, &schema);
    let (_agent, agent_url) = common::python_agent(&python);
    let (mut host, _, _) = common::serve_with(
        &url,
        false,
        &[
            "--schema",
            &schema,
            "--member-timeout",
            host_timeout,
            "--agent",
            &agent_url,
        ],
    );
    let timeout = colloquy_testkit::scaled(Duration::from_secs(1));
    let standby = hub(&url, &schema, "standby", timeout).await;
    standby.register(Standby).await.unwrap();
    let sender = hub(&url, &schema, "sender", timeout).await;
    sender
        .register(colloquy_testkit::modules::Echo::new(
            "client".parse().unwrap(),
        ))
        .await
        .unwrap();
    let members = sender.members().await.unwrap().unwrap();
    assert!(
        members[0]
            .hosted()
            .any(|m| m.name.as_str() == "python-counter")
            && members[0].address.is_some(),
        "the serve process joined first, with its link: {members:?}"
    );
    let conversation = sender
        .start_conversation(ConversationSpec::between("client", "python-counter").unwrap())
        .await
        .unwrap();
    let id = conversation.id();
    let sending = tokio::spawn({
        let text = text.to_owned();
        async move { conversation.send(text).await }
    });
    let arrived = colloquy_testkit::eventually(
        || async { !started(&agent_url).await.is_empty() },
        colloquy_testkit::scaled(Duration::from_secs(20)),
    )
    .await;
    assert!(arrived, "the turn reached the agent through its hub's link");
    disrupt(&mut host);
    let exchange = tokio::time::timeout(colloquy_testkit::scaled(Duration::from_secs(20)), sending)
        .await
        .expect("answered well within the 30 s deadline")
        .unwrap()
        .unwrap();
    let reply = exchange.reply.unwrap();
    assert_eq!(
        reply.content,
        format!("standby answered \"{text}\"").as_str()
    );
    after(&sender, &mut host).await;
    let transcript = sender
        .reader()
        .messages(id, MessageRange::All)
        .await
        .unwrap();
    assert_eq!(
        transcript.iter().map(|m| m.turn).collect::<Vec<_>>(),
        [1, 2],
        "one request, one reply: {transcript:?}"
    );
    assert_eq!(transcript[1].in_reply_to, Some(transcript[0].id));
    assert_eq!(transcript[1].content, reply.content);
    sender.shutdown().await;
    standby.shutdown().await;
    drop(host);
    drop_schema(&url, &schema);
}

/// The host is SIGKILLed while its module works on the turn (the agent never answers
/// "wait"): the sender's link breaks, the turn goes through the database, and the standby
/// answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_call_leaves_the_turn_to_another_host() {
    the_standby_answers("wait", "5s", |host| host.0.kill().unwrap(), async |_, _| {}).await;
}

/// The host is SIGSTOPped while its module works on the turn, past the member timeout; the
/// agent answers a second later, into the paused hub. The sender gives up on the silent
/// hub, the standby answers through the database; when the host resumes, its late answer is
/// withheld (it was not sure it was unfenced) and nothing more is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_paused_mid_call_is_given_up_and_its_late_answer_never_lands() {
    // The host's own timeout is longer than the others' (a busy machine must not fence it
    // before the turn arrives); the others fence it after theirs.
    the_standby_answers(
        "slow",
        "2s",
        |host| {
            let pid = host.0.id().to_string();
            assert!(Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success());
        },
        async |sender, host| {
            let pid = host.0.id().to_string();
            assert!(Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success());
            // It notices it was fenced and joins again: by then its late answer was given,
            // or withheld, and nothing of it may be stored.
            let rejoined = colloquy_testkit::eventually(
                || async {
                    let members = sender.members().await.unwrap().unwrap();
                    members
                        .iter()
                        .filter(|m| m.name != "sender" && m.name != "standby")
                        .any(|m| m.alive)
                },
                colloquy_testkit::scaled(Duration::from_secs(20)),
            )
            .await;
            assert!(rejoined, "the resumed hub joined again");
        },
    )
    .await;
}
