//! The demo's built-in modules. Each does real work on its input: parse a document, check
//! a schema or a record, plan steps, summarize.

use colloquy_core::{merge_schemas, ModuleInfo, ModuleName};
use colloquy_registry::{Module, ModuleError, Reply, Response, Turn};
use serde_json::{json, Map, Value};

fn info(name: &'static str, capability: &str, description: &str) -> ModuleInfo {
    let mut info = ModuleInfo::new(module_name(name))
        .with_description(description)
        .with_version(env!("CARGO_PKG_VERSION"));
    if let Ok(capability) = capability.parse() {
        info = info.with_capability(capability);
    }
    info
}

/// A module name from a literal.
// Only ever called with the literal names below, all of the allowed alphabet; the demo's
// tests run every one of them.
#[allow(clippy::expect_used)]
pub(crate) fn module_name(name: &'static str) -> ModuleName {
    name.parse().expect("demo module names are valid literals")
}

fn patch(key: &str, value: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.into(), value);
    map
}

/// What the validator requires of a record.
pub(crate) fn required_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "email": {"type": "string", "format": "email"},
            "joined": {"type": "string", "format": "date"}
        },
        "required": ["email", "joined", "name"]
    })
}

/// Opens conversations; never addressed.
pub(crate) struct Coordinator;

#[async_trait::async_trait]
impl Module for Coordinator {
    fn info(&self) -> ModuleInfo {
        info("coordinator", "coordinate", "drives the demo workflow")
    }
    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::NoReply)
    }
}

/// Parses `key: value` lines into a record and proposes a schema for it.
pub(crate) struct Extractor;

#[async_trait::async_trait]
impl Module for Extractor {
    fn info(&self) -> ModuleInfo {
        info(
            "extractor",
            "extract",
            "turns documents into records and proposes their schema",
        )
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let text = turn.message.content["text"]
            .as_str()
            .ok_or("expected {\"text\": document}")?;
        let mut record = Map::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once(':') {
                record.insert(key.trim().to_lowercase(), json!(value.trim()));
            }
        }
        if record.is_empty() {
            return Err(ModuleError::new("no `key: value` lines in the document"));
        }
        let mut fields: Vec<&String> = record.keys().collect();
        fields.sort();
        let properties: Map<String, Value> = fields
            .iter()
            .map(|f| ((*f).clone(), json!({"type": "string"})))
            .collect();
        let schema = json!({"type": "object", "properties": properties, "required": fields});
        let record = Value::Object(record);
        Ok(Response::Reply(
            Reply::new(json!({"record": record, "schema": schema}))
                .with_context_patch(patch("record", record)),
        ))
    }
}

/// Negotiates schemas (asking for refinements until a proposal matches what it requires),
/// then validates records, ending the conversation on a valid one.
pub(crate) struct Validator;

impl Validator {
    fn negotiate(proposal: &Value) -> Response {
        let required = required_schema();
        let agreed = merge_schemas(proposal, &required);
        if agreed == required {
            return Response::Reply(
                Reply::new(json!({"verdict": "accept", "schema": agreed}))
                    .with_context_patch(patch("schema", agreed)),
            );
        }
        let empty = Map::new();
        let wanted = required["properties"].as_object().unwrap_or(&empty);
        let proposed = proposal["properties"].as_object().unwrap_or(&empty);
        let add: Map<String, Value> = wanted
            .iter()
            .filter(|(field, def)| proposed.get(*field) != Some(def))
            .map(|(field, def)| (field.clone(), def.clone()))
            .collect();
        let remove: Vec<&String> = proposed
            .keys()
            .filter(|f| !wanted.contains_key(*f))
            .collect();
        Response::reply(json!({"verdict": "refine", "add": add, "remove": remove}))
    }

    fn validate(record: &Value) -> Result<Response, ModuleError> {
        let field = |name: &str| {
            record[name]
                .as_str()
                .ok_or_else(|| ModuleError::new(format!("record invalid: `{name}` is missing")))
        };
        field("name")?;
        let email = field("email")?;
        let (user, domain) = email.split_once('@').unwrap_or_default();
        if user.is_empty() || !domain.contains('.') {
            return Err(ModuleError::new(format!(
                "record invalid: email {email:?} is not an address"
            )));
        }
        let joined = field("joined")?;
        let parts: Vec<u32> = joined.split('-').filter_map(|p| p.parse().ok()).collect();
        let valid_date =
            matches!(parts.as_slice(), [_, m @ 1..=12, d @ 1..=31] if !(*m == 2 && *d > 29));
        if !valid_date {
            return Err(ModuleError::new(format!(
                "record invalid: joined {joined:?} is not a date"
            )));
        }
        Ok(Response::end_with(json!({"valid": true})))
    }
}

#[async_trait::async_trait]
impl Module for Validator {
    fn info(&self) -> ModuleInfo {
        info(
            "validator",
            "schema.validate",
            "agrees on record schemas and validates records",
        )
        .with_input_schema(json!({
            "oneOf": [{"required": ["proposal"]}, {"required": ["validate"]}]
        }))
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let content = &turn.message.content;
        if let Some(proposal) = content.get("proposal") {
            return Ok(Self::negotiate(proposal));
        }
        if let Some(record) = content.get("validate") {
            return Self::validate(record);
        }
        Err(ModuleError::new(
            "expected {\"proposal\": schema} or {\"validate\": record}",
        ))
    }
}

/// Plans onboarding steps for a document's person, then hands over to the summarizer.
pub(crate) struct Planner;

#[async_trait::async_trait]
impl Module for Planner {
    fn info(&self) -> ModuleInfo {
        info(
            "planner",
            "plan",
            "plans onboarding steps and hands over to the summarizer",
        )
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let text = turn.message.content["text"]
            .as_str()
            .ok_or("expected {\"text\": document}")?;
        let role = text
            .lines()
            .find_map(|l| l.strip_prefix("role:"))
            .map_or("member", str::trim);
        let mut steps = vec![
            format!("create an account for the new {role}"),
            "grant repository access".to_owned(),
        ];
        if role != "member" {
            steps.push(format!("pair with a senior {role}"));
        }
        steps.push("schedule a first review".to_owned());
        Ok(Response::Transfer {
            to: module_name("summarizer"),
            reply: Some(
                Reply::new(json!({"steps": steps.len()}))
                    .with_context_patch(patch("plan", json!(steps))),
            ),
        })
    }
}

/// Summarizes the plan in the shared context and ends the conversation.
pub(crate) struct Summarizer;

#[async_trait::async_trait]
impl Module for Summarizer {
    fn info(&self) -> ModuleInfo {
        info(
            "summarizer",
            "summarize",
            "summarizes the plan in the shared context",
        )
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let plan = turn
            .conversation
            .context
            .get("plan")
            .and_then(Value::as_array)
            .ok_or("no plan in the context")?;
        let steps: Vec<&str> = plan.iter().filter_map(Value::as_str).collect();
        Ok(Response::end_with(
            json!({"summary": format!("{} steps: {}", steps.len(), steps.join("; "))}),
        ))
    }
}

/// Replies with what it receives: the module to try any A2A client against.
pub(crate) struct Echo;

#[async_trait::async_trait]
impl Module for Echo {
    fn info(&self) -> ModuleInfo {
        info("echo", "echo", "replies with what it receives")
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::reply(turn.message.content.clone()))
    }
}
