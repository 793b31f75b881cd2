//! Runs the examples under `cargo test` and checks what they produce.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../examples/negotiation.rs"]
mod negotiation;
#[path = "../examples/pipeline.rs"]
mod pipeline;

use colloquy_core::Status;
use serde_json::json;

#[tokio::test]
async fn schema_negotiation_converges_and_ends() -> anyhow::Result<()> {
    let outcome = negotiation::run().await?;
    assert_eq!(outcome.status, Status::Completed);
    // Round 1 drops "age" and adds "email"; round 2 adds "joined"; round 3 is accepted.
    assert_eq!(outcome.rounds, 3);
    assert_eq!(
        outcome.transcript.len(),
        6,
        "three proposals and three verdicts"
    );
    assert_eq!(
        outcome.schema["required"],
        json!(["email", "joined", "name"])
    );
    assert!(outcome.transcript[5].contains("accept"));
    Ok(())
}

#[tokio::test]
async fn pipeline_hands_off_and_summarizes() -> anyhow::Result<()> {
    let outcome = pipeline::run().await?;
    assert_eq!(outcome.status, Status::Completed);
    let names: Vec<&str> = outcome.participants.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["ingest", "summarizer"]);
    assert_eq!(outcome.summary["words"], json!(10));
    assert_eq!(outcome.transcript.len(), 4);
    assert!(
        outcome.transcript[2].contains("summarizer"),
        "{}",
        outcome.transcript[2]
    );
    Ok(())
}
