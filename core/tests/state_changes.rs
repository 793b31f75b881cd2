//! What each write changes in a conversation's shared state, as `state_change` reports it
//! for a store to keep: the whole state at creation, then only what changed, sealed when the
//! state becomes the next write.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use colloquy_core::{
    Conversation, ConversationId, Draft, HandshakeOutcome, Intent, MessageId, ModuleName, Phase,
    Status, Timestamp,
};
use serde_json::{json, Map, Value};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn each_write_carries_what_it_changed() {
    let t0 = Timestamp::from_millis(1_000);
    let (a, b, c) = (name("asker"), name("answerer"), name("successor"));
    let mut conv = Conversation::new(
        ConversationId::from_parts(t0, [1; 10]),
        vec![a.clone(), b.clone()],
        Intent::Collaborate,
        Duration::from_secs(60),
        t0,
    )
    .unwrap()
    .with_context(object(json!({"topic": "x"})));

    // The creation: everything.
    let created = conv.state_change().unwrap();
    assert_eq!(created.version, 0);
    assert_eq!(created.context, Some(object(json!({"topic": "x"}))));
    assert_eq!(created.participants, Some(vec![a.clone(), b.clone()]));
    assert_eq!(created.phase, Some(Phase::Handshake));
    assert_eq!(created.status, Some(Status::Active));

    // The handshake: the phase only.
    conv.conclude_handshake(&b, &HandshakeOutcome::Accept, t0)
        .unwrap();
    conv.bump_version();
    let accepted = conv.state_change().unwrap();
    assert_eq!((accepted.version, accepted.turn), (1, 0));
    assert_eq!(accepted.phase, Some(Phase::Execution));
    assert_eq!(
        (accepted.context, accepted.participants, accepted.status),
        (None, None, None)
    );

    // A request changes nothing shared.
    let t1 = Timestamp::from_millis(2_000);
    conv.begin_turn(
        Draft::request(a.clone(), b.clone(), json!("hi")),
        MessageId::from_parts(t1, [2; 10]),
        t1,
        t1.saturating_add(Duration::from_secs(5)),
        None,
    )
    .unwrap();
    conv.bump_version();
    assert_eq!(conv.state_change(), None);

    // A patch: the context as it stands after it, with the turn it came with.
    conv.end_turn(t1);
    conv.apply_context_patch(&object(json!({"topic": null, "answer": 42})), t1)
        .unwrap();
    conv.bump_version();
    let patched = conv.state_change().unwrap();
    assert_eq!((patched.version, patched.turn, patched.at), (3, 1, t1));
    assert_eq!(patched.context, Some(object(json!({"answer": 42}))));

    // Not sealed again: a later state change is that of its own write.
    assert_eq!(conv.state_change().unwrap().version, 3);
    conv.transfer(&b, c.clone(), t1).unwrap();
    conv.fail("gave up", t1).unwrap();
    conv.bump_version();
    let ended = conv.state_change().unwrap();
    assert_eq!(ended.version, 4);
    assert_eq!(ended.participants, Some(vec![a, c]));
    assert_eq!(ended.phase, Some(Phase::Termination));
    assert_eq!(
        ended.status,
        Some(Status::Failed {
            reason: "gave up".into()
        })
    );
    assert_eq!(ended.context, None);
}

#[test]
fn a_conversation_read_back_has_nothing_to_record_until_it_changes() {
    let t0 = Timestamp::from_millis(1_000);
    let conv = Conversation::new(
        ConversationId::from_parts(t0, [1; 10]),
        vec![name("a"), name("b")],
        Intent::Query,
        Duration::from_secs(60),
        t0,
    )
    .unwrap();
    let mut read = Conversation::from_parts(conv.parts().clone()).unwrap();
    assert_eq!(read, conv, "equal states, whatever each remembers");
    assert_eq!(read.state_change(), None);
    read.bump_version();
    assert_eq!(read.state_change(), None, "nothing shared changed");
}
