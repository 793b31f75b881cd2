//! A three-stage pipeline with a handoff: ingest sends raw text to the parser, the parser
//! replies with its tokens (into the shared context) and hands its place to the
//! summarizer, which reads the context and ends the conversation with a summary.
//!
//! Run: `cargo run -p colloquy-runtime --example pipeline`
// Module names here are literals that are valid by construction, hence `expect`.
#![allow(clippy::print_stdout, clippy::expect_used)]

use anyhow::{anyhow, Result};
use colloquy_core::{ModuleInfo, ModuleName, Status};
use colloquy_registry::{Module, ModuleError, Reply, Response, Turn};
use colloquy_runtime::{ConversationSpec, Hub};
use serde_json::{json, Map, Value};

fn name(s: &str) -> ModuleName {
    s.parse().expect("valid name")
}

struct Ingest;

#[async_trait::async_trait]
impl Module for Ingest {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("ingest")).with_description("feeds documents in")
    }
    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::NoReply)
    }
}

/// Splits text into words, stores them in the shared context and hands over.
struct Parser;

#[async_trait::async_trait]
impl Module for Parser {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("parser")).with_capability("parse".parse().expect("valid capability"))
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let text = turn.message.content.as_str().ok_or("expected text")?;
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut patch = Map::new();
        patch.insert("words".into(), json!(words));
        Ok(Response::Transfer {
            to: name("summarizer"),
            reply: Some(
                Reply::new(json!({ "parsed_words": words.len() })).with_context_patch(patch),
            ),
        })
    }
}

/// Summarizes the words the parser left in the context, then ends the conversation.
struct Summarizer;

#[async_trait::async_trait]
impl Module for Summarizer {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(name("summarizer"))
            .with_capability("summarize".parse().expect("valid capability"))
    }
    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let words = turn
            .conversation
            .context
            .get("words")
            .and_then(Value::as_array)
            .ok_or("no words in the context")?;
        let mut longest: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
        longest.sort_by_key(|w| std::cmp::Reverse(w.len()));
        longest.dedup();
        Ok(Response::end_with(
            json!({ "words": words.len(), "keywords": &longest[..longest.len().min(3)] }),
        ))
    }
}

/// The outcome of a run.
pub(crate) struct Outcome {
    /// One line per message.
    pub(crate) transcript: Vec<String>,
    /// The final status.
    pub(crate) status: Status,
    /// Participants at the end (the summarizer replaced the parser).
    pub(crate) participants: Vec<ModuleName>,
    /// The summary.
    pub(crate) summary: Value,
}

/// Runs the pipeline on a fresh in-memory hub.
pub(crate) async fn run() -> Result<Outcome> {
    let hub = Hub::builder().memory().build().await?;
    hub.register(Ingest).await?;
    hub.register(Parser).await?;
    hub.register(Summarizer).await?;
    let conv = hub
        .start_conversation(ConversationSpec::between("ingest", "parser")?)
        .await?;
    conv.send("Colloquy routes conversations between independent modules, durably and in order.")
        .await?;
    let summary = conv
        .send("summarize please")
        .await?
        .reply
        .ok_or_else(|| anyhow!("the summarizer did not answer"))?
        .content
        .clone();
    let state = conv.state().await?;
    let transcript = conv
        .transcript()
        .await?
        .iter()
        .map(|m| {
            format!(
                "turn {}  {:<10} -> {:<10} {:<7} {}",
                m.turn, m.source, m.target, m.kind, m.content
            )
        })
        .collect();
    hub.shutdown().await;
    Ok(Outcome {
        transcript,
        status: state.status().clone(),
        participants: state.participants().to_vec(),
        summary,
    })
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let outcome = run().await?;
    for line in &outcome.transcript {
        println!("{line}");
    }
    println!(
        "status: {}, participants: {:?}",
        outcome.status, outcome.participants
    );
    println!("summary: {}", outcome.summary);
    Ok(())
}
