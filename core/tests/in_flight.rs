//! Property tests of the exchange-state rules (`Conversation::in_flight`,
//! `Conversation::unanswered_request`): through random sequences of what writers do to one
//! conversation, every writer's view at every moment matches a model that only remembers
//! who started the exchange in flight, which version that writer's own request made, and
//! when its reply is due.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use colloquy_core::*;
use proptest::prelude::*;
use serde_json::json;

/// Two writers (hubs on one database) act on one conversation between `a` and `b`.
const WRITERS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    /// Writer `by` stores a request whose reply is due `deadline_ms` after it.
    Request {
        by: usize,
        advance_ms: u64,
        deadline_ms: u64,
    },
    /// The reply to the request in flight is stored (by whoever concludes it).
    Reply {
        advance_ms: u64,
    },
    /// The turn ends without a reply.
    EndTurn {
        advance_ms: u64,
    },
    /// Some writer patches the context (during an exchange or not).
    Patch,
    Pause,
    Resume,
    Complete,
    /// Only time passes.
    Wait {
        advance_ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..WRITERS, 0..2_000u64, 0..5_000u64)
            .prop_map(|(by, advance_ms, deadline_ms)| Op::Request { by, advance_ms, deadline_ms }),
        3 => (0..3_000u64).prop_map(|advance_ms| Op::Reply { advance_ms }),
        1 => (0..3_000u64).prop_map(|advance_ms| Op::EndTurn { advance_ms }),
        2 => Just(Op::Patch),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
        1 => Just(Op::Complete),
        2 => (0..6_000u64).prop_map(|advance_ms| Op::Wait { advance_ms }),
    ]
}

fn name(s: &str) -> ModuleName {
    s.parse().unwrap()
}

/// The model: the exchange in flight (its writer and when its reply is due), and for each
/// writer the version its own last stored request made.
#[derive(Debug, Default)]
struct Model {
    exchange: Option<(usize, Timestamp)>,
    own: [Option<u64>; WRITERS],
}

impl Model {
    fn expected(&self, c: &Conversation, writer: usize, at: Timestamp) -> InFlight {
        match self.exchange {
            None => InFlight::Idle,
            Some(_) if self.own[writer] == Some(c.version()) => InFlight::Own,
            Some((_, due)) if due > at => InFlight::Other { until: due },
            Some((_, due)) => InFlight::Lapsed { until: due },
        }
    }
}

fn check(
    c: &Conversation,
    model: &Model,
    last: Option<&Message>,
    now: u64,
) -> Result<(), TestCaseError> {
    // Now, later, and either side of the moment the reply is due.
    let mut moments = vec![now, now + 1_000, now + 10_000];
    if let Some((_, due)) = model.exchange {
        moments.extend([due.as_millis().saturating_sub(1), due.as_millis()]);
    }
    for writer in 0..WRITERS {
        for &at in &moments {
            let at = Timestamp::from_millis(at);
            let view = c.in_flight(at, model.own[writer]);
            prop_assert_eq!(view, model.expected(c, writer, at), "writer {}", writer);
            let unanswered = last.and_then(|m| c.unanswered_request(at, model.own[writer], m));
            let expect_unanswered = view.is_another_writers();
            prop_assert_eq!(
                unanswered.map(|m| m.id),
                last.filter(|_| expect_unanswered).map(|m| m.id),
                "writer {} at {:?}: the unanswered request",
                writer,
                at
            );
            if let Some(request) = unanswered {
                prop_assert_eq!(request.kind, MessageKind::Request);
                prop_assert_eq!(request.turn, c.turn_count());
            }
        }
    }
    // A writer that stored no request here never sees its own exchange.
    prop_assert_ne!(
        c.in_flight(Timestamp::from_millis(now), None),
        InFlight::Own
    );
    Ok(())
}

proptest! {
    /// Whose exchange, and until when, as every writer sees it after anything that can
    /// happen: the one who stored the request sees its own exchange for as long as nobody
    /// else wrote; everyone else sees another writer's exchange until its reply is due and
    /// a lapsed one after; a reply, a turn ended without one, a pause or an end leave no
    /// exchange in flight. Only another writer's exchange has an unanswered request, and
    /// it is the conversation's latest turn.
    #[test]
    fn every_writer_sees_whose_exchange_and_until_when(ops in proptest::collection::vec(op(), 0..80)) {
        let start = Timestamp::from_millis(1_000_000);
        let mut c = Conversation::new(
            ConversationId::from_parts(start, [3; 10]),
            vec![name("a"), name("b")],
            Intent::Collaborate,
            Duration::from_secs(3_600),
            start,
        )
        .unwrap();
        let mut model = Model::default();
        let mut last: Option<Message> = None;
        let mut now = start.as_millis();
        for (i, op) in ops.into_iter().enumerate() {
            let id = MessageId::from_parts(Timestamp::from_millis(now), [i as u8; 10]);
            match op {
                Op::Request { by, advance_ms, deadline_ms } => {
                    now += advance_ms;
                    let t = Timestamp::from_millis(now);
                    let due = Timestamp::from_millis(now + deadline_ms);
                    let draft = Draft::request(name("a"), name("b"), json!(i));
                    if let Ok(request) = c.begin_turn(draft, id, t, due, None) {
                        c.bump_version();
                        model.own[by] = Some(c.version());
                        model.exchange = Some((by, due));
                        last = Some(request);
                    }
                }
                Op::Reply { advance_ms } => {
                    now += advance_ms;
                    let draft = last
                        .as_ref()
                        .filter(|m| m.kind == MessageKind::Request)
                        .map(|request| Draft::reply(request, name("b"), json!("ok")));
                    if let Some(Ok(reply)) = draft.map(|d| c.accept(d, id, Timestamp::from_millis(now))) {
                        c.bump_version();
                        model.exchange = None;
                        last = Some(reply);
                    }
                }
                Op::EndTurn { advance_ms } => {
                    now += advance_ms;
                    c.end_turn(Timestamp::from_millis(now));
                    c.bump_version();
                    model.exchange = None;
                }
                Op::Patch => {
                    let patch = json!({ "k": i });
                    if c.apply_context_patch(patch.as_object().unwrap(), Timestamp::from_millis(now)).is_ok() {
                        // Another version: whoever stored the request no longer recognises
                        // the state as the one its request made.
                        c.bump_version();
                    }
                }
                Op::Pause => {
                    if c.pause(Timestamp::from_millis(now)).is_ok() {
                        c.bump_version();
                        model.exchange = None;
                    }
                }
                Op::Resume => {
                    if c.resume(Timestamp::from_millis(now)).is_ok() {
                        c.bump_version();
                    }
                }
                Op::Complete => {
                    if c.complete(Timestamp::from_millis(now)).is_ok() {
                        c.bump_version();
                        model.exchange = None;
                    }
                }
                Op::Wait { advance_ms } => now += advance_ms,
            }
            check(&c, &model, last.as_ref(), now)?;
        }
    }
}
