//! A2A v0.3 on the wire, for the clients still deployed with it: their requests are turned
//! into v1.0 JSON before the mapping reads them, and the answers to the v0.3 method names
//! (`message/send`, `tasks/get`, `tasks/cancel`) are turned back into v0.3 JSON.
//!
//! The differences handled: v0.3 marks every object with `kind` (`message`, `task`, `text`,
//! `data`, `file`); roles and task states are lowercase words (`user`, `completed`) where
//! v1.0 has enum names (`ROLE_USER`, `TASK_STATE_COMPLETED`); a file part nests its
//! `uri` or `bytes` under `file`, where v1.0 has `url` or `raw` on the part; and a sent
//! message's result is the task itself, where v1.0 wraps it as `{"task": ...}`.

use serde_json::{Map, Value};

/// True for the method names of v0.3.
pub(crate) fn is_v03(method: &str) -> bool {
    method.contains('/')
}

/// v0.3 request params as v1.0 JSON (v1.0 JSON passes through unchanged).
pub(crate) fn params_from_v03(mut params: Value) -> Value {
    if let Some(message) = params.get_mut("message") {
        message_from_v03(message);
    }
    params
}

fn message_from_v03(message: &mut Value) {
    let Some(object) = message.as_object_mut() else {
        return;
    };
    object.remove("kind");
    if let Some(role) = object.get_mut("role") {
        if let Some(text) = role.as_str() {
            let named = match text {
                "user" => "ROLE_USER",
                "agent" => "ROLE_AGENT",
                other => other,
            };
            *role = Value::String(named.to_owned());
        }
    }
    if let Some(Value::Array(parts)) = object.get_mut("parts") {
        parts.iter_mut().for_each(part_from_v03);
    }
}

fn part_from_v03(part: &mut Value) {
    let Some(object) = part.as_object_mut() else {
        return;
    };
    object.remove("kind");
    if let Some(Value::Object(file)) = object.remove("file") {
        if let Some(uri) = file.get("uri") {
            object.insert("url".into(), uri.clone());
        }
        if let Some(bytes) = file.get("bytes") {
            object.insert("raw".into(), bytes.clone());
        }
        if let Some(media_type) = file.get("mimeType") {
            object.insert("mediaType".into(), media_type.clone());
        }
        if let Some(name) = file.get("name") {
            object.insert("filename".into(), name.clone());
        }
    }
}

/// A v1.0 result as the v0.3 answer to `method`.
pub(crate) fn result_to_v03(method: &str, result: Value) -> Value {
    let mut result = match (method, result) {
        // v1.0 wraps the sent message's outcome; v0.3 answers with it directly.
        ("message/send", Value::Object(mut wrapped)) => wrapped
            .remove("task")
            .or_else(|| wrapped.remove("message"))
            .unwrap_or(Value::Object(wrapped)),
        (_, other) => other,
    };
    if result.get("status").is_some() {
        task_to_v03(&mut result);
    } else {
        message_to_v03(&mut result);
    }
    result
}

/// A v1.0 stream event (`{"task": ...}`, `{"statusUpdate": ...}`, ...) as v0.3's: the
/// object itself, marked with its `kind`; a status update says whether it is `final`.
pub(crate) fn event_to_v03(event: Value) -> Value {
    let Value::Object(mut wrapped) = event else {
        return event;
    };
    if let Some(mut task) = wrapped.remove("task") {
        task_to_v03(&mut task);
        return task;
    }
    if let Some(mut message) = wrapped.remove("message") {
        message_to_v03(&mut message);
        return message;
    }
    if let Some(Value::Object(mut update)) = wrapped.remove("statusUpdate") {
        update.insert("kind".into(), Value::String("status-update".into()));
        if let Some(Value::Object(status)) = update.get_mut("status") {
            let state = status.get("state").and_then(Value::as_str).unwrap_or("");
            let last = matches!(
                state,
                "TASK_STATE_COMPLETED"
                    | "TASK_STATE_FAILED"
                    | "TASK_STATE_CANCELED"
                    | "TASK_STATE_REJECTED"
            );
            status_to_v03(status);
            update.insert("final".into(), Value::Bool(last));
        }
        return Value::Object(update);
    }
    if let Some(Value::Object(mut update)) = wrapped.remove("artifactUpdate") {
        update.insert("kind".into(), Value::String("artifact-update".into()));
        if let Some(Value::Array(parts)) = update
            .get_mut("artifact")
            .and_then(|artifact| artifact.get_mut("parts"))
        {
            parts.iter_mut().for_each(part_to_v03);
        }
        return Value::Object(update);
    }
    Value::Object(wrapped)
}

fn task_to_v03(task: &mut Value) {
    let Some(object) = task.as_object_mut() else {
        return;
    };
    object.insert("kind".into(), Value::String("task".into()));
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        status_to_v03(status);
    }
    if let Some(Value::Array(history)) = object.get_mut("history") {
        history.iter_mut().for_each(message_to_v03);
    }
    if let Some(Value::Array(artifacts)) = object.get_mut("artifacts") {
        for artifact in artifacts {
            if let Some(Value::Array(parts)) = artifact.get_mut("parts") {
                parts.iter_mut().for_each(part_to_v03);
            }
        }
    }
}

fn status_to_v03(status: &mut Map<String, Value>) {
    if let Some(state) = status.get_mut("state") {
        if let Some(text) = state.as_str() {
            let word = text
                .strip_prefix("TASK_STATE_")
                .unwrap_or(text)
                .to_lowercase()
                .replace('_', "-");
            *state = Value::String(word);
        }
    }
    if let Some(message) = status.get_mut("message") {
        message_to_v03(message);
    }
}

fn message_to_v03(message: &mut Value) {
    let Some(object) = message.as_object_mut() else {
        return;
    };
    object.insert("kind".into(), Value::String("message".into()));
    if let Some(role) = object.get_mut("role") {
        if let Some(text) = role.as_str() {
            let word = match text {
                "ROLE_USER" => "user",
                "ROLE_AGENT" => "agent",
                other => other,
            };
            *role = Value::String(word.to_owned());
        }
    }
    if let Some(Value::Array(parts)) = object.get_mut("parts") {
        parts.iter_mut().for_each(part_to_v03);
    }
}

fn part_to_v03(part: &mut Value) {
    let Some(object) = part.as_object_mut() else {
        return;
    };
    let kind = if object.contains_key("text") {
        "text"
    } else if object.contains_key("data") {
        "data"
    } else {
        let mut file = Map::new();
        if let Some(url) = object.remove("url") {
            file.insert("uri".into(), url);
        }
        if let Some(raw) = object.remove("raw") {
            file.insert("bytes".into(), raw);
        }
        if let Some(media_type) = object.remove("mediaType") {
            file.insert("mimeType".into(), media_type);
        }
        if let Some(name) = object.remove("filename") {
            file.insert("name".into(), name);
        }
        object.insert("file".into(), Value::Object(file));
        "file"
    };
    object.insert("kind".into(), Value::String(kind.into()));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_v03_message_reads_as_v10() {
        let params = json!({"message": {
            "kind": "message", "messageId": "m", "role": "user",
            "parts": [
                {"kind": "text", "text": "hi"},
                {"kind": "file", "file": {"uri": "https://example.invalid/f", "mimeType": "text/plain", "name": "f.txt"}},
            ],
        }});
        assert_eq!(
            params_from_v03(params),
            json!({"message": {
                "messageId": "m", "role": "ROLE_USER",
                "parts": [
                    {"text": "hi"},
                    {"url": "https://example.invalid/f", "mediaType": "text/plain", "filename": "f.txt"},
                ],
            }})
        );
    }

    #[test]
    fn a_v10_task_answers_a_v03_client_in_its_words() {
        let result = json!({"task": {
            "id": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_INPUT_REQUIRED",
                       "message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"data": {"x": 1}}]}},
            "history": [{"messageId": "q", "role": "ROLE_USER", "parts": [{"text": "q"}]}],
            "artifacts": [{"artifactId": "a", "parts": [{"url": "u"}]}],
        }});
        assert_eq!(
            result_to_v03("message/send", result),
            json!({
                "kind": "task", "id": "t", "contextId": "c",
                "status": {"state": "input-required",
                           "message": {"kind": "message", "messageId": "r", "role": "agent",
                                       "parts": [{"kind": "data", "data": {"x": 1}}]}},
                "history": [{"kind": "message", "messageId": "q", "role": "user",
                             "parts": [{"kind": "text", "text": "q"}]}],
                "artifacts": [{"artifactId": "a", "parts": [{"kind": "file", "file": {"uri": "u"}}]}],
            })
        );
    }
}
