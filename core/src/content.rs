//! The JSON rule every stored value keeps: nesting at most [`MAX_JSON_DEPTH`] levels, and,
//! for message content, a size limit. One rule, used by the router before anything
//! happens and by every store before anything is written.

use serde_json::{Map, Value};

use crate::{
    context::{depth_exceeds, MAX_JSON_DEPTH},
    json_depth_exceeds, CoreError,
};

/// Checks message content: at most [`MAX_JSON_DEPTH`] levels of arrays and objects, and at
/// most `max_bytes` bytes once serialized (`None`: no size limit).
///
/// ```
/// use serde_json::json;
/// use colloquy_core::{check_content, CoreError};
/// assert!(check_content(&json!({"ok": [1, 2]}), Some(100)).is_ok());
/// assert_eq!(
///     check_content(&json!("x".repeat(200)), Some(100)),
///     Err(CoreError::ContentTooLarge { limit: 100 })
/// );
/// ```
pub fn check_content(content: &Value, max_bytes: Option<usize>) -> Result<(), CoreError> {
    if json_depth_exceeds(content, MAX_JSON_DEPTH) {
        return Err(CoreError::ContentTooDeep {
            limit: MAX_JSON_DEPTH,
        });
    }
    if let Some(limit) = max_bytes {
        if json_len_exceeds(content, limit) {
            return Err(CoreError::ContentTooLarge { limit });
        }
    }
    Ok(())
}

/// Checks a JSON object held by a conversation (its context, metadata, or a patch): the
/// object itself is the first level, so its members may nest one level less than
/// [`MAX_JSON_DEPTH`].
pub fn check_object(what: &'static str, object: &Map<String, Value>) -> Result<(), CoreError> {
    if depth_exceeds(object, MAX_JSON_DEPTH) {
        return Err(CoreError::ContextTooDeep {
            what,
            limit: MAX_JSON_DEPTH,
        });
    }
    Ok(())
}

/// True if `value` serializes to more than `limit` bytes. A cheap upper bound (every string
/// byte escaped as `\u00XX`) settles almost every message without serializing; only
/// content near the limit is measured exactly, stopping at the limit.
fn json_len_exceeds(value: &Value, limit: usize) -> bool {
    if json_len_bound(value, limit) <= limit {
        return false;
    }
    json_len_exact_exceeds(value, limit)
}

/// An upper bound of the serialized length, saturating just above `limit`.
fn json_len_bound(value: &Value, limit: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        // Each value's own bytes, computed before they are added: an object's keys count
        // as part of the object (adding them to `total` inside the expression that adds to
        // `total` would lose them).
        let own = match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 32,
            Value::String(s) => s.len().saturating_mul(6).saturating_add(2),
            Value::Array(items) => {
                stack.extend(items.iter());
                items.len().saturating_add(2)
            }
            Value::Object(map) => {
                let mut keys = 2usize;
                for (key, item) in map {
                    keys = keys.saturating_add(key.len().saturating_mul(6).saturating_add(4));
                    stack.push(item);
                }
                keys
            }
        };
        total = total.saturating_add(own);
        if total > limit {
            return total;
        }
    }
    total
}

/// True if `value` serializes to more than `limit` bytes; stops counting at the limit.
fn json_len_exact_exceeds(value: &Value, limit: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.left {
                self.left = 0;
                return Err(std::io::Error::other("limit reached"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { left: limit };
    serde_json::to_writer(&mut counter, value).is_err()
}
