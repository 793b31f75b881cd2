//! Shared conversation context and JSON merge patches (RFC 7396).

use serde_json::{Map, Value};

use crate::CoreError;

/// The deepest nesting of arrays and objects colloquy accepts in any JSON it stores
/// (message content, context, patches, metadata).
///
/// It stays below serde_json's parser limit (128), so everything stored can be read back,
/// and it bounds every recursive walk over stored values.
pub const MAX_JSON_DEPTH: usize = 100;

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
    crate::check_object("context patch", patch)?;
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

/// True if arrays and objects in `value` nest more than `limit` levels deep (an array or
/// object is one level more than the deepest of its children; a scalar is no level).
/// Checked without recursion, so any value, however deep, is safe to check.
///
/// ```
/// use serde_json::json;
/// assert!(!colloquy_core::json_depth_exceeds(&json!({"a": [1]}), 2));
/// assert!(colloquy_core::json_depth_exceeds(&json!({"a": [[1]]}), 2));
/// ```
pub fn json_depth_exceeds(value: &Value, limit: usize) -> bool {
    exceeds(std::iter::once((value, 0)), limit)
}

/// True if the values of `map`, taken as the members of a first-level object, nest more
/// than `limit` levels deep.
pub(crate) fn depth_exceeds(map: &Map<String, Value>, limit: usize) -> bool {
    limit == 0 || exceeds(map.values().map(|v| (v, 1)), limit)
}

/// `roots` pairs each value with the number of containers around it.
fn exceeds<'a>(roots: impl Iterator<Item = (&'a Value, usize)>, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = roots.collect();
    while let Some((value, around)) = stack.pop() {
        match value {
            Value::Object(map) if around < limit => {
                stack.extend(map.values().map(|v| (v, around + 1)))
            }
            Value::Array(items) if around < limit => {
                stack.extend(items.iter().map(|v| (v, around + 1)))
            }
            Value::Object(_) | Value::Array(_) => return true,
            _ => {}
        }
    }
    false
}
