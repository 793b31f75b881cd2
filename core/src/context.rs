//! Shared conversation context and JSON merge patches (RFC 7396).

use serde_json::{Map, Value};

use crate::CoreError;

/// The deepest a context patch may nest. Matches serde_json's parser limit, so any patch
/// that was parsed from text fits.
pub const MAX_CONTEXT_DEPTH: usize = 128;

/// Merges `patch` into `target` as a JSON merge patch (RFC 7396).
///
/// A `null` member removes the key, an object member merges recursively, anything else
/// replaces. The patch is checked before anything changes, so on error `target` is intact.
///
/// ```
/// use serde_json::json;
/// let mut ctx = json!({"schema": {"name": "string", "age": "int"}, "round": 1});
/// let patch = json!({"schema": {"age": null}, "round": 2});
/// colloquy_core::merge_patch(ctx.as_object_mut().unwrap(), patch.as_object().unwrap())?;
/// assert_eq!(ctx, json!({"schema": {"name": "string"}, "round": 2}));
/// # Ok::<(), colloquy_core::CoreError>(())
/// ```
pub fn merge_patch(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), CoreError> {
    if depth_exceeds(patch, MAX_CONTEXT_DEPTH) {
        return Err(CoreError::ContextTooDeep {
            limit: MAX_CONTEXT_DEPTH,
        });
    }
    apply(target, patch);
    Ok(())
}

/// Recursion is bounded by the depth checked in `merge_patch`.
fn apply(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    apply(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// True if objects nest more than `limit` levels deep (checked without recursion).
pub(crate) fn depth_exceeds(root: &Map<String, Value>, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = root.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        match value {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    false
}
