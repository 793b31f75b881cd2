//! A conversation opened with its first request (`Hub::start_conversation_and_send`): the
//! handshake's outcome is stored by the request's write, one write fewer than opening and
//! then sending; every way the request can fail still leaves the outcome stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::Result;
use colloquy_core::{CoreError, HandshakeOutcome, MessageKind, ModuleName, Phase, Status};
use colloquy_registry::Response;
use colloquy_runtime::{ConversationHandle, ConversationSpec, Exchange, HubError, RouteOptions};
use colloquy_storage::MessageRange;
use colloquy_testkit::{
    modules::{Echo, Recorder, Scripted},
    TestHub,
};
use serde_json::json;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

/// A SQLite hub that refuses content over 1,000 bytes, with the module `client`.
async fn hub_with_client() -> Result<TestHub> {
    let hub = TestHub::sqlite_with(|b| b.max_content_bytes(1_000)).await?;
    hub.hub().register(Echo::new(name("client"))).await?;
    Ok(hub)
}

/// Opens a conversation from `client` to `with` and sends `content` to `to` in it.
async fn open_and_send(
    hub: &TestHub,
    with: &str,
    to: &str,
    content: serde_json::Value,
) -> Result<(ConversationHandle, Result<Exchange, HubError>), HubError> {
    let spec = ConversationSpec::new(name("client"), [name(with)]);
    hub.hub()
        .start_conversation_and_send(
            spec,
            name(to),
            MessageKind::Request,
            content,
            RouteOptions::default(),
        )
        .await
}

#[tokio::test]
async fn the_handshake_is_stored_with_the_first_request_one_write_fewer() -> Result<()> {
    let hub = hub_with_client().await?;
    let (server, recording) = Recorder::new(name("server"));
    hub.hub().register(server).await?;

    let (conversation, sent) = open_and_send(&hub, "server", "server", json!({"q": 1})).await?;
    let exchange = sent?;
    assert_eq!(exchange.request.turn, 1);
    assert_eq!(exchange.reply.as_ref().unwrap().turn, 2);
    assert_eq!(exchange.reply.as_ref().unwrap().content, json!({"q": 1}));
    // The handler saw the handshake's outcome, as it does after `start_conversation`.
    let turns = recording.turns();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].conversation.phase, Phase::Execution);

    let id = conversation.id();
    let stored = hub.hub().reader().conversation(id).await?.unwrap();
    assert_eq!(stored.phase(), Phase::Execution);
    assert_eq!(stored.turn_count(), 2);
    // Created (0), the outcome with the request (1), the reply (2).
    assert_eq!(stored.version(), 2);
    let changes = hub.hub().reader().state_changes(id).await?;
    let phases: Vec<_> = changes
        .iter()
        .map(|c| (c.version, c.turn, c.phase))
        .collect();
    assert_eq!(
        phases,
        // The reply changes no shared state: no entry.
        [
            (0, 0, Some(Phase::Handshake)),
            (1, 1, Some(Phase::Execution))
        ],
        "{changes:?}"
    );

    // The same through the two calls: one write more, the same state.
    let spec = ConversationSpec::new(name("client"), [name("server")]);
    let opened = hub.hub().start_conversation(spec).await?;
    opened.send_to(name("server"), json!({"q": 2})).await?;
    let two_calls = opened.state().await?;
    assert_eq!(two_calls.phase(), Phase::Execution);
    assert_eq!(two_calls.turn_count(), 2);
    assert_eq!(two_calls.version(), 3);

    // The conversation goes on from the handle returned.
    assert_eq!(conversation.send("again").await?.request.turn, 3);
    hub.hub().shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_request_refused_before_it_is_stored_leaves_the_handshake_stored_on_its_own() -> Result<()>
{
    let hub = hub_with_client().await?;
    hub.hub().register(Echo::new(name("server"))).await?;

    // Too large for the hub's limit: refused by the turn's acceptance.
    let (conversation, sent) =
        open_and_send(&hub, "server", "server", json!("x".repeat(2_000))).await?;
    let refused = sent.unwrap_err();
    assert!(
        matches!(
            refused,
            HubError::Refused(CoreError::ContentTooLarge { .. })
        ),
        "{refused:?}"
    );
    let stored = conversation.state().await?;
    assert_eq!(
        (stored.phase(), stored.turn_count(), stored.version()),
        (Phase::Execution, 0, 1)
    );
    // Held in memory as stored: the next request is the first turn, with no conflict.
    assert_eq!(conversation.send("small").await?.request.turn, 1);

    // To a module that is not a participant: refused before anything is stored.
    let (conversation, sent) = open_and_send(&hub, "server", "nobody", json!("hi")).await?;
    let refused = sent.unwrap_err();
    assert!(
        matches!(
            &refused,
            HubError::Refused(CoreError::NotParticipant { module, .. }) if module == &name("nobody")
        ),
        "{refused:?}"
    );
    let stored = hub
        .hub()
        .reader()
        .conversation(conversation.id())
        .await?
        .unwrap();
    assert_eq!(
        (stored.phase(), stored.turn_count(), stored.version()),
        (Phase::Execution, 0, 1)
    );
    assert!(hub
        .hub()
        .reader()
        .messages(conversation.id(), MessageRange::All)
        .await?
        .is_empty());
    assert_eq!(conversation.send("hi").await?.request.turn, 1);
    hub.hub().shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_rejected_invitation_sends_nothing_and_a_counter_proposal_is_stored_with_the_request(
) -> Result<()> {
    let hub = hub_with_client().await?;
    hub.hub()
        .register(Scripted::new(name("grumpy"), []).answering_invites_with(
            HandshakeOutcome::Reject {
                reason: "busy".into(),
            },
        ))
        .await?;
    let rejected = open_and_send(&hub, "grumpy", "grumpy", json!("hi"))
        .await
        .map(|_| ())
        .unwrap_err();
    let HubError::Rejected {
        conversation,
        module,
        reason,
    } = rejected
    else {
        panic!("{rejected:?}");
    };
    assert_eq!(module, name("grumpy"));
    assert!(reason.contains("busy"), "{reason}");
    let stored = hub
        .hub()
        .reader()
        .conversation(conversation)
        .await?
        .unwrap();
    assert!(
        matches!(stored.status(), Status::Failed { .. }),
        "{stored:?}"
    );
    assert_eq!(stored.turn_count(), 0);

    hub.hub()
        .register(
            Scripted::new(name("haggler"), [Response::reply("deal")]).answering_invites_with(
                HandshakeOutcome::Counter {
                    proposal: json!({"price": 2}),
                },
            ),
        )
        .await?;
    let (handle, sent) = open_and_send(&hub, "haggler", "haggler", json!("offer")).await?;
    assert_eq!(sent?.reply.unwrap().content, json!("deal"));
    assert!(matches!(
        handle.handshake(),
        Some(HandshakeOutcome::Counter { .. })
    ));
    let stored = handle.state().await?;
    assert_eq!(
        (stored.phase(), stored.turn_count(), stored.version()),
        (Phase::Negotiation, 2, 2)
    );
    hub.hub().shutdown().await;
    Ok(())
}
