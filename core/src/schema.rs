//! Merging two modules' JSON schemas into the part both agree on.

use serde_json::{Map, Value};

/// Beyond this depth two differing schemas are combined with `allOf` instead of merged
/// property by property, so no input can exhaust the stack.
const MAX_MERGE_DEPTH: usize = 64;

/// The common ground of two JSON schemas.
///
/// Two object schemas (with `properties`) merge into an object schema holding only the
/// properties both define (each merged the same way), `required` = the intersection of both
/// `required` lists (sorted), and every other keyword that both give the same value. Any
/// other pair of differing schemas becomes `{"allOf": [a, b]}` in a canonical order.
///
/// The merge is commutative (`merge(a, b) == merge(b, a)`) and idempotent
/// (`merge(a, a) == a`).
///
/// ```
/// use serde_json::json;
/// let extractor = json!({"type": "object",
///     "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
///     "required": ["name", "age"]});
/// let validator = json!({"type": "object",
///     "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
///     "required": ["name"]});
/// assert_eq!(colloquy_core::merge_schemas(&extractor, &validator), json!({"type": "object",
///     "properties": {"name": {"type": "string"}}, "required": ["name"]}));
/// ```
pub fn merge_schemas(a: &Value, b: &Value) -> Value {
    merge_at(a, b, 0)
}

fn merge_at(a: &Value, b: &Value, depth: usize) -> Value {
    if a == b {
        return a.clone();
    }
    match (object_schema(a), object_schema(b)) {
        (Some((a_map, a_props)), Some((b_map, b_props))) if depth < MAX_MERGE_DEPTH => {
            let mut out = Map::new();
            for (key, a_value) in a_map {
                if key == "properties" || key == "required" {
                    continue;
                }
                if b_map.get(key) == Some(a_value) {
                    out.insert(key.clone(), a_value.clone());
                }
            }
            let mut properties = Map::new();
            for (key, a_prop) in a_props {
                if let Some(b_prop) = b_props.get(key) {
                    properties.insert(key.clone(), merge_at(a_prop, b_prop, depth + 1));
                }
            }
            let mut required: Vec<&str> = required_names(a_map)
                .filter(|name| properties.contains_key(*name))
                .filter(|name| required_names(b_map).any(|other| other == *name))
                .collect();
            required.sort_unstable();
            required.dedup();
            out.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                out.insert(
                    "required".into(),
                    Value::Array(required.into_iter().map(Value::from).collect()),
                );
            }
            Value::Object(out)
        }
        _ => {
            let (first, second) = if canonical(a) <= canonical(b) {
                (a, b)
            } else {
                (b, a)
            };
            serde_json::json!({ "allOf": [first, second] })
        }
    }
}

type Object = Map<String, Value>;

/// The schema's keywords and its `properties`, if it is an object schema.
fn object_schema(v: &Value) -> Option<(&Object, &Object)> {
    let map = v.as_object()?;
    let props = map.get("properties")?.as_object()?;
    Some((map, props))
}

fn required_names(map: &Map<String, Value>) -> impl Iterator<Item = &str> {
    map.get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Keys of serde_json maps are sorted, so the text is canonical.
fn canonical(v: &Value) -> String {
    v.to_string()
}
