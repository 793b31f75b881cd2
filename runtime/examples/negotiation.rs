//! Two modules negotiate a schema: the extractor proposes, the validator asks for
//! refinements until it accepts, then the conversation ends.
//!
//! Run: `cargo run -p colloquy-runtime --example negotiation`
// Module names here are literals that are valid by construction, hence `expect`.
#![allow(clippy::print_stdout, clippy::expect_used)]

use anyhow::{anyhow, Result};
use colloquy_core::{merge_schemas, Intent, ModuleInfo, Status};
use colloquy_registry::{Module, ModuleError, Response, Turn};
use colloquy_runtime::{ConversationSpec, Hub};
use serde_json::{json, Map, Value};

/// What the validator requires of every record.
fn required_schema() -> Value {
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

/// Checks a proposed schema against what it requires; asks for what is missing and for
/// removal of what it does not know, accepting (and ending) once they agree.
struct Validator;

#[async_trait::async_trait]
impl Module for Validator {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("validator".parse().expect("valid name"))
            .with_description("validates record schemas")
            .with_capability("schema.validate".parse().expect("valid capability"))
            .with_input_schema(
                json!({"type": "object", "properties": {"proposal": {"type": "object"}}}),
            )
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let proposal = turn
            .message
            .content
            .get("proposal")
            .ok_or("expected {\"proposal\": schema}")?;
        let required = required_schema();
        let agreed = merge_schemas(proposal, &required);
        let props = |schema: &Value| -> Vec<String> {
            schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        let (proposed, wanted, common) = (props(proposal), props(&required), props(&agreed));
        let missing: Vec<&String> = wanted.iter().filter(|f| !common.contains(f)).collect();
        let unknown: Vec<&String> = proposed.iter().filter(|f| !wanted.contains(f)).collect();
        let round = turn
            .conversation
            .context
            .get("round")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + 1;
        let mut patch = Map::new();
        patch.insert("round".into(), json!(round));
        if missing.is_empty() && unknown.is_empty() && agreed == required {
            return Ok(Response::End {
                reply: Some(
                    colloquy_registry::Reply::new(json!({"verdict": "accept", "schema": agreed}))
                        .with_context_patch(patch),
                ),
            });
        }
        Ok(Response::reply_with_patch(
            json!({"verdict": "refine", "add": missing, "remove": unknown}),
            patch,
        ))
    }
}

/// The extractor opens the conversation and never needs to be addressed.
struct Extractor;

#[async_trait::async_trait]
impl Module for Extractor {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new("extractor".parse().expect("valid name"))
            .with_description("extracts records")
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::NoReply)
    }
}

/// The outcome of a run.
pub(crate) struct Outcome {
    /// One line per message.
    pub(crate) transcript: Vec<String>,
    /// The final status.
    pub(crate) status: Status,
    /// Rounds of proposals.
    pub(crate) rounds: u64,
    /// The agreed schema.
    pub(crate) schema: Value,
}

/// Runs the negotiation on a fresh in-memory hub.
pub(crate) async fn run() -> Result<Outcome> {
    let hub = Hub::builder().memory().build().await?;
    hub.register(Extractor).await?;
    hub.register(Validator).await?;
    let conv = hub
        .start_conversation(
            ConversationSpec::between("extractor", "validator")?
                .intent(Intent::Negotiate)
                .max_turns(20),
        )
        .await?;
    // The extractor's first guess: it knows names and ages.
    let mut schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["age", "name"]
    });
    let required = required_schema();
    let agreed = loop {
        let exchange = conv.send(json!({ "proposal": schema })).await?;
        let reply = exchange
            .reply
            .ok_or_else(|| anyhow!("the validator did not answer"))?;
        if reply.content["verdict"] == "accept" {
            break reply.content["schema"].clone();
        }
        // Refine: drop what the validator does not know, add one missing field per round
        // (taking its definition from what the validator asked for).
        let props = schema["properties"]
            .as_object_mut()
            .ok_or_else(|| anyhow!("bad schema"))?;
        for field in reply.content["remove"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            props.remove(field);
        }
        if let Some(field) = reply.content["add"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        {
            props.insert(field.to_owned(), required["properties"][field].clone());
        }
        let mut fields: Vec<String> = props.keys().cloned().collect();
        fields.sort();
        schema["required"] = json!(fields);
    };
    let state = conv.state().await?;
    let transcript = conv
        .transcript()
        .await?
        .iter()
        .map(|m| {
            format!(
                "turn {:>2}  {:<9} -> {:<9} {:<7} {}",
                m.turn, m.source, m.target, m.kind, m.content
            )
        })
        .collect();
    let rounds = state
        .context()
        .get("round")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    hub.shutdown().await;
    Ok(Outcome {
        transcript,
        status: state.status().clone(),
        rounds,
        schema: agreed,
    })
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let outcome = run().await?;
    for line in &outcome.transcript {
        println!("{line}");
    }
    println!("status: {}, rounds: {}", outcome.status, outcome.rounds);
    println!("agreed schema: {}", outcome.schema);
    Ok(())
}
