//! Human output: aligned tables, times, short summaries of JSON content.

use std::time::{Duration, UNIX_EPOCH};

use colloquy_core::Timestamp;
use serde_json::Value;

/// Renders rows under a header as left-aligned columns separated by two spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut header.iter().copied());
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// RFC 3339 time with milliseconds, in UTC.
pub(crate) fn time(t: Timestamp) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(t.as_millis())).to_string()
}

/// A duration rounded for people: 1.234s, 2m 3s, 4h 5m.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        60_000..=3_599_999 => format!("{}m {}s", ms / 60_000, (ms / 1_000) % 60),
        _ => format!("{}h {}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// The content as compact JSON, cut to `max` characters.
pub(crate) fn summary(content: &Value, max: usize) -> String {
    let text = match content {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = text.replace('\n', " ");
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// The last 8 characters of an id. UUID v7 ids made close together share their leading
/// (time) digits, so the trailing ones are what tells them apart.
pub(crate) fn short(id: impl std::fmt::Display) -> String {
    let text = id.to_string();
    let skip = text.chars().count().saturating_sub(8);
    text.chars().skip(skip).collect()
}

/// The "reply to" column of a transcript: the turn of the message answered.
pub(crate) fn reply_to(
    message: &colloquy_core::Message,
    transcript: &[colloquy_core::Message],
) -> String {
    match message.in_reply_to {
        None => String::new(),
        Some(id) => transcript
            .iter()
            .find(|m| m.id == id)
            .map_or_else(|| short(id), |m| format!("turn {}", m.turn)),
    }
}

/// A transcript as an aligned table.
pub(crate) fn transcript(messages: &[colloquy_core::Message], content_width: usize) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.turn.to_string(),
                time(m.sent_at),
                format!("{} -> {}", m.source, m.target),
                m.kind.to_string(),
                summary(&m.content, content_width),
                reply_to(m, messages),
                short(m.id),
            ]
        })
        .collect();
    table(
        &[
            "turn",
            "time",
            "source -> target",
            "kind",
            "content",
            "reply to",
            "id",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["a", "long header"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), "y".into()],
            ],
        );
        assert_eq!(out, "a          long header\nwide cell  x\nb          y\n");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(12)), "12ms");
        assert_eq!(duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(125)), "2m 5s");
        assert_eq!(duration(Duration::from_secs(7_500)), "2h 5m");
    }

    #[test]
    fn summaries_are_cut() {
        assert_eq!(summary(&Value::String("abcdef".into()), 3), "abc…");
        assert_eq!(summary(&serde_json::json!({"a": 1}), 20), "{\"a\":1}");
    }
}
