//! Example-based tests of the conversation state machine: each refusal's error variant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_core::*;
use serde_json::json;

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn mid(n: u8) -> MessageId {
    MessageId::from_parts(at(1), [n; 10])
}

fn open(intent: Intent) -> Conversation {
    Conversation::new(
        ConversationId::from_parts(at(0), [1; 10]),
        vec![name("a"), name("b")],
        intent,
        Duration::from_secs(10),
        at(0),
    )
    .unwrap()
}

#[test]
fn opening_checks_participants_and_timeout() {
    let id = ConversationId::from_parts(at(0), [1; 10]);
    let ten = Duration::from_secs(10);
    assert_eq!(
        Conversation::new(id, vec![name("a")], Intent::Query, ten, at(0)).unwrap_err(),
        CoreError::TooFewParticipants { count: 1 }
    );
    assert_eq!(
        Conversation::new(id, vec![name("a"), name("a")], Intent::Query, ten, at(0)).unwrap_err(),
        CoreError::DuplicateParticipant { module: name("a") }
    );
    assert_eq!(
        Conversation::new(
            id,
            vec![name("a"), name("b")],
            Intent::Query,
            Duration::ZERO,
            at(0)
        )
        .unwrap_err(),
        CoreError::ZeroIdleTimeout
    );
}

#[test]
fn each_refused_draft_names_the_reason() {
    let mut c = open(Intent::Query).with_max_turns(2);
    let outsider = c.accept(
        Draft::request(name("a"), name("zed"), json!(1)),
        mid(1),
        at(1),
    );
    assert!(
        matches!(outsider, Err(CoreError::NotParticipant { ref module, .. }) if *module == name("zed"))
    );
    let selfish = c.accept(
        Draft::request(name("a"), name("a"), json!(1)),
        mid(1),
        at(1),
    );
    assert!(matches!(selfish, Err(CoreError::SelfAddressed { .. })));
    assert_eq!(
        c.accept(
            Draft::request(name("a"), name("b"), json!(1)),
            mid(1),
            at(1)
        )
        .unwrap()
        .turn,
        1
    );
    assert_eq!(
        c.accept(
            Draft::request(name("b"), name("a"), json!(2)),
            mid(2),
            at(2)
        )
        .unwrap()
        .turn,
        2
    );
    let third = c.accept(
        Draft::request(name("a"), name("b"), json!(3)),
        mid(3),
        at(3),
    );
    assert_eq!(
        third.unwrap_err(),
        CoreError::MaxTurnsReached {
            conversation: c.id(),
            max_turns: 2
        }
    );
    assert_eq!(c.turn_count(), 2);
}

#[test]
fn idle_expiry_and_override() {
    let mut c = open(Intent::Query);
    assert_eq!(c.deadline(), Some(at(10_000)));
    assert!(!c.expired(at(9_999)));
    assert!(c.expired(at(10_000)));
    let late = c.accept(
        Draft::request(name("a"), name("b"), json!(1)),
        mid(1),
        at(10_000),
    );
    assert!(
        matches!(late, Err(CoreError::Expired { idle_for, idle_timeout, .. })
        if idle_for == Duration::from_secs(10) && idle_timeout == Duration::from_secs(10))
    );
    assert!(
        matches!(c.time_out(at(9_000)), Err(CoreError::NotExpired { remaining, .. }) if remaining == Duration::from_secs(1))
    );
    c.set_idle_timeout(Duration::from_secs(60)).unwrap();
    assert!(!c.expired(at(10_000)));
    c.time_out(at(60_000)).unwrap();
    assert_eq!(c.status(), &Status::TimedOut);
    assert_eq!(c.ended_at(), Some(at(60_000)));
    let after = c.accept(
        Draft::request(name("a"), name("b"), json!(1)),
        mid(1),
        at(60_001),
    );
    assert!(matches!(
        after,
        Err(CoreError::NotActive {
            status: Status::TimedOut,
            ..
        })
    ));
}

#[test]
fn paused_conversations_refuse_turns_and_do_not_expire() {
    let mut c = open(Intent::Query);
    c.pause(at(5)).unwrap();
    assert!(!c.expired(at(1_000_000)));
    assert!(matches!(
        c.accept(
            Draft::request(name("a"), name("b"), json!(1)),
            mid(1),
            at(6)
        ),
        Err(CoreError::NotActive {
            status: Status::Paused,
            ..
        })
    ));
    c.resume(at(1_000_000)).unwrap();
    assert_eq!(c.deadline(), Some(at(1_010_000)));
    assert!(matches!(
        c.resume(at(1)),
        Err(CoreError::InvalidTransition {
            action: "resume",
            ..
        })
    ));
}

#[test]
fn handshake_outcomes() {
    let mut query = open(Intent::Query);
    query
        .conclude_handshake(&name("b"), &HandshakeOutcome::Accept, at(1))
        .unwrap();
    assert_eq!(query.phase(), Phase::Execution);
    assert!(matches!(
        query.conclude_handshake(&name("b"), &HandshakeOutcome::Accept, at(2)),
        Err(CoreError::HandshakeOver {
            phase: Phase::Execution,
            ..
        })
    ));

    let mut negotiate = open(Intent::Negotiate);
    negotiate
        .conclude_handshake(&name("b"), &HandshakeOutcome::Accept, at(1))
        .unwrap();
    assert_eq!(negotiate.phase(), Phase::Negotiation);

    let mut countered = open(Intent::Query);
    countered
        .conclude_handshake(
            &name("b"),
            &HandshakeOutcome::Counter {
                proposal: json!({"fields": ["a"]}),
            },
            at(1),
        )
        .unwrap();
    assert_eq!(countered.phase(), Phase::Negotiation);
    assert_eq!(countered.status(), &Status::Active);

    let mut rejected = open(Intent::Query);
    rejected
        .conclude_handshake(
            &name("b"),
            &HandshakeOutcome::Reject {
                reason: "busy".into(),
            },
            at(3),
        )
        .unwrap();
    assert_eq!(
        rejected.status(),
        &Status::Failed {
            reason: "b rejected the invitation: busy".into()
        }
    );
    assert_eq!(rejected.ended_at(), Some(at(3)));
}

#[test]
fn phases_move_forward_and_execution_repeats() {
    let mut c = open(Intent::Collaborate);
    c.advance_phase(Phase::Execution, at(1)).unwrap();
    c.advance_phase(Phase::Execution, at(2)).unwrap();
    assert!(matches!(
        c.advance_phase(Phase::Negotiation, at(3)),
        Err(CoreError::PhaseRegression {
            from: Phase::Execution,
            to: Phase::Negotiation,
            ..
        })
    ));
    c.advance_phase(Phase::Confirmation, at(4)).unwrap();
    assert!(c.advance_phase(Phase::Confirmation, at(5)).is_err());
    c.complete(at(6)).unwrap();
    assert_eq!(c.phase(), Phase::Termination);
}

#[test]
fn context_patches_merge_and_deep_patches_are_refused() {
    let mut c = open(Intent::Collaborate);
    c.apply_context_patch(
        json!({"schema": {"name": "string"}, "n": 1})
            .as_object()
            .unwrap(),
        at(1),
    )
    .unwrap();
    c.apply_context_patch(
        json!({"schema": {"age": "int"}, "n": null})
            .as_object()
            .unwrap(),
        at(2),
    )
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(c.context().clone()),
        json!({"schema": {"name": "string", "age": "int"}})
    );

    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "x": deep });
    }
    let before = c.clone();
    assert_eq!(
        c.apply_context_patch(deep.as_object().unwrap(), at(3))
            .unwrap_err(),
        CoreError::ContextTooDeep {
            what: "context patch",
            limit: MAX_JSON_DEPTH
        }
    );
    assert_eq!(c, before);
}

#[test]
fn transfer_replaces_a_participant_in_place() {
    let mut c = open(Intent::Transfer);
    c.transfer(&name("b"), name("c"), at(1)).unwrap();
    assert_eq!(c.participants(), &[name("a"), name("c")]);
    assert!(matches!(
        c.transfer(&name("b"), name("d"), at(2)),
        Err(CoreError::NotParticipant { .. })
    ));
    assert!(matches!(
        c.transfer(&name("c"), name("a"), at(2)),
        Err(CoreError::DuplicateParticipant { .. })
    ));
    assert_eq!(
        c.accept(
            Draft::request(name("a"), name("c"), json!(1)),
            mid(1),
            at(3)
        )
        .unwrap()
        .turn,
        1
    );
}

#[test]
fn serde_round_trip_checks_invariants() {
    let mut c = open(Intent::Query);
    c.fail("bad input", at(5)).unwrap();
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Conversation>(&text).unwrap(), c);
    let mut parts = c.into_parts();
    parts.ended_at = None;
    assert!(matches!(
        Conversation::from_parts(parts),
        Err(CoreError::InvalidState { .. })
    ));
    let v1 = "550e8400-e29b-11d4-a716-446655440000".parse::<ConversationId>();
    assert!(
        matches!(v1, Err(CoreError::InvalidId { ref reason, .. }) if reason.contains("version 1"))
    );
}

#[test]
fn errors_name_the_bad_input() {
    let err = "bad name!".parse::<ModuleName>().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"bad name!\"") && text.contains("' '"),
        "{text}"
    );
    let long = "x"
        .repeat(10_000)
        .parse::<ModuleName>()
        .unwrap_err()
        .to_string();
    assert!(
        long.len() < 400,
        "error text should stay short: {}",
        long.len()
    );
}

#[test]
fn clones_share_the_context_until_one_is_patched() {
    let original = open(Intent::Collaborate).with_context(
        json!({"plan": "draft", "notes": ["a"]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let mut patched = original.clone();
    assert!(
        std::sync::Arc::ptr_eq(&original.shared_context(), &patched.shared_context()),
        "a clone copies no context"
    );
    patched
        .apply_context_patch(json!({"plan": "final"}).as_object().unwrap(), at(1))
        .unwrap();
    assert_eq!(
        original.context()["plan"],
        "draft",
        "the other copy is untouched"
    );
    assert_eq!(patched.context()["plan"], "final");
    assert_eq!(patched.context()["notes"], json!(["a"]));
}
