//! `colloquy demo`: a real multi-module workflow on the built-in modules, stored in the
//! database.

use std::{sync::Arc, time::Duration};

use anyhow::{anyhow, Context, Result};
use colloquy_core::{ConversationId, Intent, Status};
use colloquy_runtime::{ConversationHandle, ConversationSpec, Hub, HubError, RouteError};
use colloquy_storage::{MessageRange, TimeRange};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{
    db::Db,
    demo_modules::{module_name, Coordinator, Extractor, Planner, Summarizer, Validator},
    inspect::analytics_text,
    Out,
};

/// People to onboard: each becomes one conversation's document.
const DOCUMENTS: [&str; 6] = [
    "name: Ada Lovelace\nemail: ada@analytical.engine\njoined: 1843-07-10\nrole: analyst",
    "name: Grace Hopper\nemail: grace@navy.mil\njoined: 1943-12-01\nrole: engineer\nrank: rear admiral",
    "name: Edsger Dijkstra\nemail: ewd@tue.nl\njoined: 1962-09-01",
    "name: Barbara Liskov\nemail: liskov@mit.edu\njoined: 1972-01-15\nrole: professor",
    "name: Donald Knuth\nemail: knuth@stanford.edu\njoined: 1968-03-01\nrole: author\nbooks: taocp",
    "name: Margaret Hamilton\nemail: margaret@mit.edu\njoined: 1961-05-01\nrole: engineer",
];

/// The document of the conversation that fails on purpose: its email is not an address.
const BROKEN_DOCUMENT: &str =
    "name: Mallory\nemail: mallory-at-example\njoined: 2024-02-29\nrole: intruder";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Negotiation,
    Handoff,
    DeliberateFailure,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Negotiation => "schema negotiation",
            Kind::Handoff => "handoff",
            Kind::DeliberateFailure => "deliberate failure",
        }
    }
}

struct Report {
    id: ConversationId,
    kind: Kind,
    status: Status,
}

/// The five demo modules' names.
pub(crate) fn module_names() -> Vec<colloquy_runtime::ModuleName> {
    use colloquy_runtime::Module;
    [
        Coordinator.info().name,
        Extractor.info().name,
        Validator.info().name,
        Planner.info().name,
        Summarizer.info().name,
    ]
    .into()
}

/// Registers the five demo modules.
pub(crate) async fn register_modules(hub: &Hub) -> Result<()> {
    hub.register(Coordinator).await?;
    hub.register(Extractor).await?;
    hub.register(Validator).await?;
    hub.register(Planner).await?;
    hub.register(Summarizer).await?;
    Ok(())
}

pub(crate) async fn run(out: &mut Out, db: &Db, conversations: usize) -> Result<()> {
    let started = std::time::Instant::now();
    let hub = db
        .hub()?
        .handler_deadline(Duration::from_secs(10))
        .build()
        .await
        .with_context(|| format!("cannot open the demo database {}", db.describe()))?;
    register_modules(&hub).await?;

    let bar = if out.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(conversations as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} conversations {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    };
    // Eight conversations at a time: enough to exercise concurrency and group commit.
    let permits = Arc::new(Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..conversations {
        let kind = if i + 1 == conversations {
            Kind::DeliberateFailure
        } else if i % 2 == 0 {
            Kind::Negotiation
        } else {
            Kind::Handoff
        };
        let document = match kind {
            Kind::DeliberateFailure => BROKEN_DOCUMENT,
            _ => DOCUMENTS[i % DOCUMENTS.len()],
        };
        let (hub, permits, bar) = (hub.clone(), Arc::clone(&permits), bar.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| anyhow!("{e}"))?;
            let report = match kind {
                Kind::Negotiation | Kind::DeliberateFailure => {
                    negotiate_and_validate(&hub, document, kind).await
                }
                Kind::Handoff => handoff(&hub, document).await,
            };
            bar.inc(1);
            report
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined??);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    report(out, &hub, db, &reports, elapsed).await?;
    hub.shutdown().await;
    Ok(())
}

/// Extract a record, negotiate its schema with the validator, then validate the record:
/// the validator ends the conversation on a valid record. A record it rejects fails the
/// conversation with the validator's reason.
async fn negotiate_and_validate(hub: &Hub, document: &str, kind: Kind) -> Result<Report> {
    let spec = ConversationSpec::new(
        module_name("coordinator"),
        [module_name("extractor"), module_name("validator")],
    )
    .intent(Intent::Negotiate)
    .max_turns(30);
    let conv = hub.start_conversation(spec).await?;
    let extracted = reply_of(
        conv.send_to(module_name("extractor"), json!({ "text": document }))
            .await?,
    )?;
    let record = extracted["record"].clone();
    let mut schema = extracted["schema"].clone();
    for _round in 0..10 {
        let verdict = reply_of(
            conv.send_to(module_name("validator"), json!({ "proposal": schema }))
                .await?,
        )?;
        if verdict["verdict"] == "accept" {
            break;
        }
        refine(&mut schema, &verdict);
    }
    let status = match conv
        .send_to(module_name("validator"), json!({ "validate": record }))
        .await
    {
        Ok(exchange) => exchange.status,
        Err(HubError::Route(RouteError::HandlerFailed {
            module, message, ..
        })) => {
            let reason = format!("{module} rejected the record: {message}");
            conv.fail(reason).await?.status().clone()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Report {
        id: conv.id(),
        kind,
        status,
    })
}

/// Applies the validator's requests: drop what it does not know, and adopt one of the
/// definitions it asked for per round.
fn refine(schema: &mut Value, verdict: &Value) {
    let Some(properties) = schema["properties"].as_object_mut() else {
        return;
    };
    for field in verdict["remove"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        properties.remove(field);
    }
    if let Some((field, definition)) = verdict["add"].as_object().and_then(|add| add.iter().next())
    {
        properties.insert(field.clone(), definition.clone());
    }
    let mut fields: Vec<String> = properties.keys().cloned().collect();
    fields.sort();
    schema["required"] = json!(fields);
}

/// The planner plans and hands its place to the summarizer, which summarizes and ends.
async fn handoff(hub: &Hub, document: &str) -> Result<Report> {
    let spec = ConversationSpec::new(module_name("coordinator"), [module_name("planner")])
        .intent(Intent::Transfer);
    let conv: ConversationHandle = hub.start_conversation(spec).await?;
    conv.send_to(module_name("planner"), json!({ "text": document }))
        .await?;
    let exchange = conv
        .send_to(module_name("summarizer"), json!({ "summarize": true }))
        .await?;
    Ok(Report {
        id: conv.id(),
        kind: Kind::Handoff,
        status: exchange.status,
    })
}

fn reply_of(exchange: colloquy_runtime::Exchange) -> Result<Value> {
    let reply = exchange
        .reply
        .ok_or_else(|| anyhow!("{} did not reply", exchange.request.target))?;
    Ok(reply.content.clone())
}

async fn report(
    out: &mut Out,
    hub: &Hub,
    db: &Db,
    reports: &[Report],
    elapsed: Duration,
) -> Result<()> {
    let completed = reports
        .iter()
        .filter(|r| r.status == Status::Completed)
        .count();
    let failed: Vec<&Report> = reports
        .iter()
        .filter(|r| matches!(r.status, Status::Failed { .. }))
        .collect();
    let shown = reports
        .iter()
        .find(|r| r.kind == Kind::Negotiation)
        .or_else(|| reports.first());
    let transcript = match shown {
        Some(r) => hub.reader().messages(r.id, MessageRange::All).await?,
        None => Vec::new(),
    };
    let analytics = hub.analytics(TimeRange::all()).await?;
    // A file is named by its full path, so the hint works from any directory.
    let (shown_db, argument) = match db {
        Db::Sqlite(path) => {
            let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            (full.display().to_string(), full.display().to_string())
        }
        Db::Postgres { .. } | Db::Memory => (db.describe(), db.argument()),
    };
    if out.json {
        return out.json_value(&json!({
            "database": shown_db,
            "ran": reports.len(),
            "completed": completed,
            "failed": failed.iter().map(|r| json!({ "id": r.id, "kind": r.kind.label(), "status": r.status })).collect::<Vec<_>>(),
            "elapsed_ms": elapsed.as_millis() as u64,
            "transcript": { "conversation": shown.map(|r| r.id), "messages": transcript },
            "analytics": analytics,
        }));
    }
    let mut text = format!(
        "ran {} conversations in {:.2}s: {completed} completed, {} failed\n",
        reports.len(),
        elapsed.as_secs_f64(),
        failed.len()
    );
    for r in &failed {
        text.push_str(&format!("  {} ({}): {}\n", r.id, r.kind.label(), r.status));
    }
    if let Some(r) = shown {
        text.push_str(&format!("\ntranscript of {} ({}):\n", r.id, r.kind.label()));
        text.push_str(&crate::output::transcript(&transcript, 70));
    }
    text.push_str("\nanalytics of the whole database:\n");
    text.push_str(&analytics_text(&analytics));
    text.push_str(&format!(
        "\ndatabase: {shown_db}\ninspect it: colloquy conversations --db {argument}   (from this checkout: cargo run --release -p colloquy-cli -- conversations --db {argument})\n",
    ));
    out.text(&text)
}
