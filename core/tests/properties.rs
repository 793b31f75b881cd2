//! Property tests of the pure core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_core::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

fn conv(participants: &[&str], idle_ms: u64, start: u64) -> Conversation {
    let t = Timestamp::from_millis(start);
    Conversation::new(
        ConversationId::from_parts(t, [9; 10]),
        participants.iter().map(|p| name(p)).collect(),
        Intent::Collaborate,
        Duration::from_millis(idle_ms),
        t,
    )
    .unwrap()
}

/// Something that may happen to a conversation.
#[derive(Debug, Clone)]
enum Op {
    /// A draft from participant index `from` to `to` (indexes >= 3 name outsiders).
    Send {
        from: usize,
        to: usize,
        advance_ms: u64,
    },
    Pause,
    Resume,
    Complete,
    Fail,
    TimeOut {
        advance_ms: u64,
    },
    Phase(usize),
    Patch(String, i64),
    Transfer {
        from: usize,
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..5usize, 0..5usize, 0..2_000u64).prop_map(|(from, to, advance_ms)| Op::Send { from, to, advance_ms }),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        1 => Just(Op::Complete),
        1 => Just(Op::Fail),
        1 => (0..3_000u64).prop_map(|advance_ms| Op::TimeOut { advance_ms }),
        1 => (0..5usize).prop_map(Op::Phase),
        1 => ("[a-c]", any::<i64>()).prop_map(|(k, v)| Op::Patch(k, v)),
        1 => (0..5usize, 0..6usize).prop_map(|(from, to)| Op::Transfer { from, to }),
    ]
}

/// Operations for the turn-numbering property: mostly drafts between the participants
/// (`a`, `b`, `c`) sent within the idle timeout (1.5 s), so that long conversations are
/// the rule; now and then a refused draft (an outsider, a self-addressed one, a late one)
/// and the state changes that pause or end a conversation.
fn turn_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        90 => (0..3usize, 1..3usize, 0..1_000u64).prop_map(|(from, step, advance_ms)| Op::Send { from, to: (from + step) % 3, advance_ms }),
        2 => (0..5usize, 3..5usize, 0..1_000u64).prop_map(|(from, to, advance_ms)| Op::Send { from, to, advance_ms }),
        1 => (0..3usize, 0..1_000u64).prop_map(|(from, advance_ms)| Op::Send { from, to: from, advance_ms }),
        1 => (0..3usize, 0..3usize, 1_500..3_000u64).prop_map(|(from, to, advance_ms)| Op::Send { from, to, advance_ms }),
        2 => Just(Op::Pause),
        3 => Just(Op::Resume),
        1 => (0..5usize).prop_map(Op::Phase),
        2 => ("[a-c]", any::<i64>()).prop_map(|(k, v)| Op::Patch(k, v)),
        1 => Just(Op::Complete),
    ]
}

/// Runs `ops` on one conversation, checking after each that accepted drafts got turns 1,
/// 2, 3, ... and that a refused operation changed nothing. Returns the turns accepted.
fn run_turn_ops(ops: Vec<Op>) -> Result<u64, TestCaseError> {
    let mut c = conv(&["a", "b", "c"], 1_500, 10_000);
    let mut now = 10_000u64;
    let mut turns = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let before = c.clone();
        let t = Timestamp::from_millis(now);
        let result = match op {
            Op::Send {
                from,
                to,
                advance_ms,
            } => {
                now += advance_ms;
                let draft = Draft::request(name(MODULES[from]), name(MODULES[to]), json!(i));
                let id = MessageId::from_parts(Timestamp::from_millis(now), [i as u8; 10]);
                c.accept(draft, id, Timestamp::from_millis(now)).map(|m| {
                    prop_assert_eq!(m.turn, c.turn_count());
                    prop_assert_eq!(m.conversation_id, c.id());
                    turns.push(m.turn);
                    Ok(())
                })
            }
            Op::Pause => c.pause(t).map(|()| Ok(())),
            Op::Resume => c.resume(t).map(|()| Ok(())),
            Op::Complete => c.complete(t).map(|()| Ok(())),
            Op::Fail => c.fail("boom", t).map(|()| Ok(())),
            Op::TimeOut { advance_ms } => {
                now += advance_ms;
                c.time_out(Timestamp::from_millis(now)).map(|()| Ok(()))
            }
            Op::Phase(p) => c.advance_phase(Phase::ALL[p], t).map(|()| Ok(())),
            Op::Patch(k, v) => {
                let patch = json!({ k: v });
                c.apply_context_patch(patch.as_object().unwrap(), t)
                    .map(|()| Ok(()))
            }
            Op::Transfer { from, to } => c
                .transfer(&name(MODULES[from]), name(MODULES[to]), t)
                .map(|()| Ok(())),
        };
        match result {
            Ok(inner) => inner?,
            Err(_) => prop_assert_eq!(&c, &before, "a refused operation changed the conversation"),
        }
    }
    let expected: Vec<u64> = (1..=turns.len() as u64).collect();
    prop_assert_eq!(&turns, &expected);
    Ok(turns.len() as u64)
}

/// The reference algorithm of RFC 7396, section 2, written out independently of
/// `merge_patch`.
fn rfc7396(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(target) => target.clone(),
        _ => serde_json::Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            result.remove(key);
        } else {
            let current = result.get(key).cloned().unwrap_or(Value::Null);
            result.insert(key.clone(), rfc7396(&current, value));
        }
    }
    Value::Object(result)
}

const MODULES: [&str; 6] = ["a", "b", "c", "outsider", "other", "newcomer"];

proptest! {
    /// Accepted drafts get turns 1, 2, 3, ... with no gap and no repeat, whatever was
    /// rejected in between; a rejected draft changes nothing.
    #[test]
    fn turns_stay_contiguous_and_unique(ops in proptest::collection::vec(turn_op(), 0..200)) {
        run_turn_ops(ops)?;
    }

    /// Time inside a turn is not idleness: a reply arriving any time before the request's
    /// deadline is accepted, however long that is past the idle timeout; idleness then
    /// counts from the reply, and a turn ended without a reply counts from its end.
    #[test]
    fn time_inside_a_turn_is_not_idleness(
        idle_ms in 1..10_000u64,
        deadline_ms in 0..100_000u64,
        work_ms in 0..100_000u64,
        replies in any::<bool>(),
    ) {
        let work_ms = work_ms.min(deadline_ms);
        let mut c = conv(&["a", "b"], idle_ms, 1_000);
        let t0 = Timestamp::from_millis(1_000);
        c.conclude_handshake(&name("b"), &HandshakeOutcome::Accept, t0).unwrap();
        let request = c
            .begin_turn(Draft::request(name("a"), name("b"), json!("q")), MessageId::from_parts(t0, [1; 10]), t0, t0.saturating_add(Duration::from_millis(deadline_ms)), None)
            .unwrap();
        let t1 = t0.saturating_add(Duration::from_millis(work_ms));
        prop_assert_eq!(c.idle_for(t1), Some(Duration::ZERO));
        prop_assert!(!c.expired(t1));
        if replies {
            let mut reply = Draft::request(name("b"), name("a"), json!("r"));
            reply.in_reply_to = Some(request.id);
            prop_assert_eq!(c.accept(reply, MessageId::from_parts(t1, [2; 10]), t1).unwrap().turn, 2);
        } else {
            c.end_turn(t1);
        }
        prop_assert_eq!(c.busy_until(), None);
        prop_assert_eq!(c.idle_since(), Some(t1));
        prop_assert!(!c.expired(t1.saturating_add(Duration::from_millis(idle_ms - 1))));
        prop_assert!(c.expired(t1.saturating_add(Duration::from_millis(idle_ms))));
        prop_assert!(c.is_stale(t1.saturating_add(Duration::from_millis(idle_ms)), None));
    }

    /// A turn in progress never outlives its deadline as busy time: if the hub that drove
    /// it is gone, the conversation expires at the deadline plus the idle timeout.
    #[test]
    fn an_abandoned_turn_expires_after_its_deadline(idle_ms in 1..10_000u64, deadline_ms in 0..100_000u64) {
        let mut c = conv(&["a", "b"], idle_ms, 1_000);
        let t0 = Timestamp::from_millis(1_000);
        c.begin_turn(Draft::request(name("a"), name("b"), json!("q")), MessageId::from_parts(t0, [1; 10]), t0, t0.saturating_add(Duration::from_millis(deadline_ms)), None).unwrap();
        let due = t0.saturating_add(Duration::from_millis(deadline_ms + idle_ms));
        prop_assert_eq!(c.deadline(), Some(due));
        prop_assert!(!c.expired(due.saturating_sub(Duration::from_millis(1))));
        c.time_out(due).unwrap();
        prop_assert_eq!(c.busy_until(), None);
    }

    /// Once Completed, TimedOut or Failed, every operation is refused.
    #[test]
    fn no_transition_leaves_a_terminal_state(end in 0..3usize, ops in proptest::collection::vec(op(), 1..50)) {
        let mut c = conv(&["a", "b"], 1_000, 0);
        let t = Timestamp::from_millis(5_000);
        match end {
            0 => c.complete(t).unwrap(),
            1 => c.fail("x", t).unwrap(),
            _ => c.time_out(t).unwrap(),
        }
        let ended = c.clone();
        for op in ops {
            let refused = match op {
                Op::Send { from, to, .. } => c.accept(Draft::request(name(MODULES[from]), name(MODULES[to]), Value::Null), MessageId::from_parts(t, [0; 10]), t).is_err(),
                Op::Pause => c.pause(t).is_err(),
                Op::Resume => c.resume(t).is_err(),
                Op::Complete => c.complete(t).is_err(),
                Op::Fail => c.fail("again", t).is_err(),
                Op::TimeOut { .. } => c.time_out(Timestamp::MAX).is_err(),
                Op::Phase(p) => c.advance_phase(Phase::ALL[p], t).is_err(),
                Op::Patch(k, v) => c.apply_context_patch(json!({ k: v }).as_object().unwrap(), t).is_err(),
                Op::Transfer { from, to } => c.transfer(&name(MODULES[from]), name(MODULES[to]), t).is_err(),
            };
            prop_assert!(refused);
            prop_assert_eq!(&c, &ended);
        }
        prop_assert!(c.status().is_terminal());
        prop_assert!(!c.expired(Timestamp::MAX));
    }

    /// If a conversation is expired at `t1`, it is expired at every `t2 >= t1`.
    #[test]
    fn expiry_is_monotonic_in_now(idle in 1..100_000u64, start in 0..1_000_000u64, t1 in 0..2_000_000u64, dt in 0..2_000_000u64) {
        let c = conv(&["a", "b"], idle, start);
        let t1 = Timestamp::from_millis(t1);
        let t2 = Timestamp::from_millis(t1.as_millis() + dt);
        if c.expired(t1) {
            prop_assert!(c.expired(t2));
        }
        prop_assert_eq!(c.expired(t1), t1.as_millis() >= start + idle);
    }

    /// The content rule refuses exactly what serializes to more than the limit (the cheap
    /// upper bound never decides wrongly) or nests too deep.
    #[test]
    fn content_is_refused_exactly_when_too_large_or_too_deep(value in json_value(), limit in 0..200usize, depth in 0..3usize) {
        let mut value = value;
        for _ in 0..depth * 50 {
            value = json!([value]);
        }
        let len = serde_json::to_vec(&value).unwrap().len();
        let too_deep = json_depth_exceeds(&value, MAX_JSON_DEPTH);
        let verdict = check_content(&value, Some(limit));
        match verdict {
            Ok(()) => prop_assert!(!too_deep && len <= limit),
            Err(CoreError::ContentTooDeep { .. }) => prop_assert!(too_deep),
            Err(CoreError::ContentTooLarge { limit: l }) => prop_assert!(!too_deep && len > l && l == limit),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }

    /// The invitees' answers combine into the first rejection, else the first
    /// counter-proposal, else acceptance.
    #[test]
    fn handshake_answers_combine_by_precedence(kinds in proptest::collection::vec(0..3u8, 0..6)) {
        let answers: Vec<(ModuleName, HandshakeOutcome)> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let outcome = match k {
                    0 => HandshakeOutcome::Accept,
                    1 => HandshakeOutcome::Counter { proposal: json!(i) },
                    _ => HandshakeOutcome::Reject { reason: format!("no {i}") },
                };
                (name(&format!("m{i}")), outcome)
            })
            .collect();
        let expected = answers
            .iter()
            .find(|(_, o)| matches!(o, HandshakeOutcome::Reject { .. }))
            .or_else(|| answers.iter().find(|(_, o)| matches!(o, HandshakeOutcome::Counter { .. })))
            .or_else(|| answers.first())
            .cloned();
        prop_assert_eq!(HandshakeOutcome::combine(answers), expected);
    }

    /// Concluding a turn is all or nothing: on refusal the conversation is exactly as it
    /// was; on success the turn is over, a reply is the next turn pointing at the request,
    /// the patch is merged, a transfer replaces the answering participant and an end
    /// completes the conversation.
    #[test]
    fn concluding_a_turn_is_all_or_nothing(
        reply in proptest::option::of(0..3u8),
        deep_patch in any::<bool>(),
        patch in proptest::option::of(json_object()),
        transfer in proptest::option::of(0..3usize),
        end in any::<bool>(),
        late_ms in 0..120_000u64,
    ) {
        let mut c = conv(&["a", "b"], 1_000, 0);
        let t0 = Timestamp::from_millis(0);
        let request = c
            .begin_turn(Draft::request(name("a"), name("b"), json!("q")), MessageId::from_parts(t0, [1; 10]), t0, Timestamp::from_millis(60_000), None)
            .unwrap();
        let before = c.clone();
        let mut outcome = TurnOutcome::nothing();
        outcome.reply = reply.map(|size| {
            (MessageKind::Reply, json!("r".repeat(match size { 0 => 1, 1 => 50, _ => 500 })))
        });
        outcome.context_patch = if deep_patch {
            let mut deep = json!(1);
            for _ in 0..(MAX_JSON_DEPTH + 1) {
                deep = json!([deep]);
            }
            Some(json!({ "deep": deep }).as_object().cloned().unwrap())
        } else {
            patch.clone()
        };
        outcome.transfer_to = transfer.map(|i| name(["a", "b", "c"][i]));
        outcome.end = end;
        let now = Timestamp::from_millis(late_ms);
        match c.conclude_turn(&request, outcome.clone(), MessageId::from_parts(now, [2; 10]), now, Some(100)) {
            Err(_) => prop_assert_eq!(&c, &before, "a refused outcome changed the conversation"),
            Ok(stored) => {
                prop_assert!(!deep_patch && reply != Some(2));
                prop_assert!(transfer != Some(0) && transfer != Some(1), "transfer to a participant accepted");
                prop_assert_eq!(c.busy_until(), None);
                prop_assert_eq!(stored.is_some(), reply.is_some());
                if let Some(m) = &stored {
                    prop_assert_eq!(m.turn, 2);
                    prop_assert_eq!(m.in_reply_to, Some(request.id));
                    prop_assert_eq!((&m.source, &m.target), (&request.target, &request.source));
                }
                prop_assert_eq!(c.turn_count(), 1 + u64::from(stored.is_some()));
                if let Some(patch) = &outcome.context_patch {
                    for key in patch.keys() {
                        prop_assert!(patch[key].is_null() != c.context().contains_key(key));
                    }
                }
                if outcome.transfer_to.is_some() {
                    prop_assert!(c.is_participant(&name("c")) && !c.is_participant(&name("b")));
                }
                prop_assert_eq!(c.status() == &Status::Completed, end);
            }
        }
    }

    /// Schema merge is commutative and idempotent.
    #[test]
    fn schema_merge_is_commutative_and_idempotent(a in schema(), b in schema()) {
        let ab = merge_schemas(&a, &b);
        prop_assert_eq!(&ab, &merge_schemas(&b, &a));
        prop_assert_eq!(&merge_schemas(&a, &a), &a);
        prop_assert_eq!(&merge_schemas(&ab, &ab), &ab);
    }

    /// Parsing never panics and accepts exactly 1-128 characters of `[A-Za-z0-9_.-]`.
    #[test]
    fn module_name_accepts_exactly_the_alphabet(input in any::<String>()) {
        let valid = !input.is_empty()
            && input.chars().count() <= MAX_NAME_LEN
            && input.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
        let parsed = input.parse::<ModuleName>();
        prop_assert_eq!(parsed.is_ok(), valid, "input {:?}", input);
        if let Ok(name) = parsed {
            prop_assert_eq!(name.as_str(), input.as_str());
        }
    }

    /// Valid names round-trip through text and JSON.
    #[test]
    fn valid_module_names_round_trip(input in "[A-Za-z0-9_.-]{1,128}") {
        let name: ModuleName = input.parse().unwrap();
        let json = serde_json::to_string(&name).unwrap();
        prop_assert_eq!(serde_json::from_str::<ModuleName>(&json).unwrap(), name);
    }

    /// Id parsing never panics; ids round-trip.
    #[test]
    fn ids_parse_without_panic(input in any::<String>(), millis in any::<u64>(), random in any::<[u8; 10]>()) {
        let _ = input.parse::<ConversationId>();
        let _ = input.parse::<MessageId>();
        let id = MessageId::from_parts(Timestamp::from_millis(millis), random);
        prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
    }

    /// Merge patches follow RFC 7396 exactly: the result is the RFC's reference
    /// algorithm's (patched keys take the patch's value, `null` removes a key, objects
    /// merge recursively, keys the patch does not name stay), and applying a patch twice
    /// equals applying it once.
    #[test]
    fn merge_patch_follows_rfc_7396(target in json_object(), patch in json_object()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch).unwrap();
        let expected = rfc7396(&Value::Object(target.clone()), &Value::Object(patch.clone()));
        prop_assert_eq!(&Value::Object(once.clone()), &expected);
        for (key, value) in &patch {
            match value {
                Value::Null => prop_assert!(!once.contains_key(key)),
                Value::Object(_) => prop_assert!(once[key].is_object()),
                other => prop_assert_eq!(&once[key], other),
            }
        }
        for (key, value) in &target {
            if !patch.contains_key(key) {
                prop_assert_eq!(&once[key], value);
            }
        }
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch).unwrap();
        prop_assert_eq!(once, twice);
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "string"})),
        Just(json!({"type": "integer"})),
        Just(json!({"type": "number", "minimum": 0})),
        Just(json!({})),
    ]
}

fn schema() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        (
            proptest::collection::btree_map("[a-d]", inner, 0..4),
            proptest::collection::vec("[a-e]", 0..4),
            proptest::option::of(Just(json!("object"))),
        )
            .prop_map(|(props, required, ty)| {
                let mut m = serde_json::Map::new();
                m.insert("properties".into(), json!(props));
                m.insert("required".into(), json!(required));
                if let Some(ty) = ty {
                    m.insert("type".into(), ty);
                }
                Value::Object(m)
            })
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from)
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    proptest::collection::btree_map("[a-d]", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

/// The turn-numbering property is not vacuous: over the cases it runs, conversations grow
/// long (the generator keeps senders among the participants and time within the idle
/// timeout).
#[test]
fn the_turn_generator_reaches_long_conversations() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(turn_op(), 0..200);
    let mut lengths = Vec::new();
    for _ in 0..64 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        lengths.push(run_turn_ops(ops).unwrap());
    }
    lengths.sort_unstable();
    let long = lengths.iter().filter(|&&n| n >= 20).count();
    assert!(long >= 16, "too few long conversations: {lengths:?}");
    assert!(lengths[lengths.len() - 1] >= 50, "{lengths:?}");
}
