//! A conversation at a glance: a sequence diagram drawn as SVG on the server (it needs no
//! script, and the browser test can read it). A lane per participant, an arrow per turn,
//! state changes marked between turns, and each exchange's time (request stored to reply
//! stored) drawn to scale beside it, so the slow module shows without reading; an exchange
//! that ended without a reply is marked failed.

use std::collections::HashMap;

use colloquy_runtime::{Message, MessageKind, ModuleName};

/// Pixels: the turn-number margin, a lane's width, a turn's height, the header, the
/// time column's width.
const MARGIN: u32 = 48;
const LANE: u32 = 150;
const ROW: u32 = 26;
const HEADER: u32 = 34;
const TIME_WIDTH: u32 = 180;

/// What the diagram needs of the conversation besides its messages.
pub(crate) struct Shape<'a> {
    /// The participants, initiator first: one lane each (a speaker not among them, such
    /// as one transferred away, gets a lane of its own at the end).
    pub(crate) participants: &'a [ModuleName],
    /// The turns after which the shared state changed, with what it said.
    pub(crate) changes: &'a [(u64, String)],
    /// The turn a request is in flight at (its reply not due yet): not marked failed.
    pub(crate) in_flight: Option<u64>,
}

/// The diagram, as plain values: the template `timeline.svg` draws it (and escapes every
/// text, as every page of the inspector does).
#[derive(askama::Template)]
#[template(path = "timeline.svg", escape = "html")]
pub(crate) struct Diagram {
    width: u32,
    height: u32,
    lanes: Vec<Lane>,
    /// Where the time column starts, and the longest exchange (the full bar).
    time_x: u32,
    slowest: u64,
    exchanges: Vec<Exchange>,
    turns: Vec<Arrow>,
    changes: Vec<Change>,
}

struct Lane {
    name: String,
    x: u32,
}

/// One request and what became of it: the handler's span on the target's lane, and the
/// time bar (answered) or the mark (failed, in flight).
struct Exchange {
    turn: u64,
    module: String,
    /// `answered`, `failed` or `in-flight`.
    class: &'static str,
    span_x: u32,
    top: u32,
    span: u32,
    /// Answered: the time and the bar's width.
    ms: Option<u64>,
    bar: u32,
    label_x: u32,
    label_y: u32,
    label: String,
}

struct Arrow {
    turn: u64,
    kind: &'static str,
    y: u32,
    number_x: u32,
    from: u32,
    /// Where the arrow ends (beside the target's lane); `None`: a turn to oneself.
    end: Option<u32>,
    middle: u32,
}

struct Change {
    turn: u64,
    what: String,
    x: u32,
    y: u32,
}

/// The diagram of `messages` (in turn order) as SVG.
pub(crate) fn render(shape: &Shape<'_>, messages: &[Message]) -> String {
    use askama::Template;
    let diagram = layout(shape, messages);
    // Rendering plain values into a string cannot fail; an empty diagram says so if it did.
    diagram.render().unwrap_or_else(|e| {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><!-- {} --></svg>",
            e.to_string().replace("--", "- -")
        )
    })
}

fn layout(shape: &Shape<'_>, messages: &[Message]) -> Diagram {
    let mut names: Vec<&str> = shape.participants.iter().map(ModuleName::as_str).collect();
    for m in messages {
        for name in [m.source.as_str(), m.target.as_str()] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let lane_x = |name: &str| -> u32 {
        let index = names.iter().position(|l| *l == name).unwrap_or(0);
        MARGIN + LANE / 2 + LANE * u32::try_from(index).unwrap_or(0)
    };
    let row_of: HashMap<u64, u32> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.turn,
                HEADER + ROW / 2 + ROW * u32::try_from(i).unwrap_or(0),
            )
        })
        .collect();
    let replies: HashMap<_, &Message> = messages
        .iter()
        .filter_map(|m| m.in_reply_to.map(|id| (id, m)))
        .collect();
    let requests: Vec<(&Message, Option<&Message>)> = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Request)
        .map(|m| (m, replies.get(&m.id).copied()))
        .collect();
    let slowest = requests
        .iter()
        .filter_map(|(request, reply)| reply.map(|r| elapsed_ms(request, r)))
        .max()
        .unwrap_or(0)
        .max(1);
    let lanes_width = LANE * u32::try_from(names.len()).unwrap_or(0);
    let time_x = MARGIN + lanes_width + 10;
    let mut exchanges = Vec::new();
    for (request, reply) in &requests {
        let Some(&top) = row_of.get(&request.turn) else {
            continue;
        };
        let span_x = lane_x(request.target.as_str()).saturating_sub(4);
        let module = request.target.to_string();
        let answered = reply.and_then(|r| row_of.get(&r.turn).map(|&bottom| (r, bottom)));
        exchanges.push(match answered {
            Some((reply, bottom)) => {
                let ms = elapsed_ms(request, reply);
                let bar = u32::try_from((u64::from(TIME_WIDTH - 60) * ms / slowest).max(2))
                    .unwrap_or(TIME_WIDTH);
                Exchange {
                    turn: request.turn,
                    module,
                    class: "answered",
                    span_x,
                    top,
                    span: bottom.saturating_sub(top).max(2),
                    ms: Some(ms),
                    bar,
                    label_x: time_x + bar + 4,
                    label_y: top + 11,
                    label: format!("{ms} ms"),
                }
            }
            None => {
                let in_flight = shape.in_flight == Some(request.turn);
                Exchange {
                    turn: request.turn,
                    module,
                    class: if in_flight { "in-flight" } else { "failed" },
                    span_x,
                    top,
                    span: ROW / 2,
                    ms: None,
                    bar: 0,
                    label_x: time_x,
                    label_y: top + 11,
                    label: if in_flight { "in flight" } else { "no reply" }.to_owned(),
                }
            }
        });
    }
    let mut turns = Vec::new();
    let mut changes = Vec::new();
    for m in messages {
        let Some(&y) = row_of.get(&m.turn) else {
            continue;
        };
        let (from, to) = (lane_x(m.source.as_str()), lane_x(m.target.as_str()));
        turns.push(Arrow {
            turn: m.turn,
            kind: m.kind.as_str(),
            y,
            number_x: MARGIN - 8,
            from,
            end: (from != to).then(|| if to > from { to - 6 } else { to + 6 }),
            middle: (from + to) / 2,
        });
        for (turn, what) in shape.changes.iter().filter(|(turn, _)| *turn == m.turn) {
            changes.push(Change {
                turn: *turn,
                what: what.clone(),
                x: MARGIN - 30,
                y: y + ROW / 2 - 5,
            });
        }
    }
    Diagram {
        width: MARGIN + lanes_width + TIME_WIDTH + 20,
        height: HEADER + ROW * u32::try_from(messages.len()).unwrap_or(0) + 10,
        lanes: names
            .iter()
            .map(|name| Lane {
                name: (*name).to_owned(),
                x: lane_x(name),
            })
            .collect(),
        time_x,
        slowest,
        exchanges,
        turns,
        changes,
    }
}

/// Milliseconds from `request` stored to `reply` stored.
fn elapsed_ms(request: &Message, reply: &Message) -> u64 {
    reply
        .sent_at
        .as_millis()
        .saturating_sub(request.sent_at.as_millis())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use colloquy_runtime::{ConversationId, MessageId, Timestamp};
    use serde_json::json;

    fn message(
        turn: u64,
        source: &str,
        target: &str,
        kind: MessageKind,
        at: u64,
        reply_to: Option<MessageId>,
    ) -> Message {
        Message {
            id: MessageId::from_parts(
                Timestamp::from_millis(at),
                [u8::try_from(turn).unwrap(); 10],
            ),
            conversation_id: ConversationId::from_parts(Timestamp::from_millis(1), [0; 10]),
            turn,
            source: source.parse().unwrap(),
            target: target.parse().unwrap(),
            kind,
            content: json!("<b>not markup</b>"),
            in_reply_to: reply_to,
            sent_at: Timestamp::from_millis(at),
        }
    }

    #[test]
    fn exchanges_are_drawn_to_scale_and_an_unanswered_one_is_marked_failed() {
        let ask = message(1, "a", "slow", MessageKind::Request, 1_000, None);
        let answer = message(2, "slow", "a", MessageKind::Reply, 1_400, Some(ask.id));
        let fast = message(3, "a", "quick", MessageKind::Request, 1_500, None);
        let fast_answer = message(4, "quick", "a", MessageKind::Reply, 1_540, Some(fast.id));
        let lost = message(5, "a", "validator", MessageKind::Request, 1_600, None);
        let participants: Vec<ModuleName> = ["a", "slow", "quick"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let svg = render(
            &Shape {
                participants: &participants,
                changes: &[(2, "phase -> \"execution\" & more".into())],
                in_flight: None,
            },
            &[ask, answer, fast, fast_answer, lost],
        );
        assert!(
            svg.contains(
                r#"class="exchange answered" data-turn="1" data-module="slow" data-ms="400""#
            ),
            "{svg}"
        );
        assert!(svg.contains(r#"data-turn="3" data-module="quick" data-ms="40""#));
        // The slowest bar is the full width, the other a tenth of it.
        assert!(svg.contains(r#"width="120" height="10""#));
        assert!(svg.contains(r#"width="12" height="10""#));
        assert!(svg.contains(r#"class="exchange failed" data-turn="5""#));
        // Every text is escaped; the content is not in the diagram at all.
        let title = svg.split("<title>").last().unwrap();
        assert!(
            title.contains("phase -&#62; &#34;execution&#34; &#38; more"),
            "{title}"
        );
        assert!(!title.contains("-> \"execution\""), "{title}");
        assert!(!svg.contains("<b>"));
    }
}
