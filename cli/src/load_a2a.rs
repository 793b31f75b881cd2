//! `colloquy load --via a2a` and `--via mcp`: the network front under load, measured in the
//! same run as the limit (a bare axum JSON echo on the same machine), with `--via mcp` the
//! MCP `tools/call` of `send` beside the A2A `SendMessage` of the same exchanges, and with
//! `--peer URL` a peer agent (the Python SDK's echo agent), all driven by the same HTTP
//! client over loopback.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{bail, Context, Result};
use colloquy_a2a::{A2aOptions, A2aServer, RemoteAgent};
use serde_json::{json, Value};

use crate::{load::Plan, Out};

/// One measured target: name, requests per second, p50 and p99 in µs.
struct Measured {
    name: &'static str,
    requests: usize,
    per_sec: f64,
    p50_us: u32,
    p99_us: u32,
}

/// What the client sends to: a JSON-RPC A2A endpoint (continuing the context each answer
/// names), an MCP endpoint (a session per client, `start_conversation` then `send` for
/// each exchange), or the bare echo (the same body, no protocol).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    A2a,
    Mcp,
    Bare,
}

pub(crate) async fn run(out: &mut Out, plan: Plan, peer: Option<String>, mcp: bool) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.parallel)
        .build()?;
    let payload = "x".repeat(plan.payload_bytes);

    // The limit: an axum JSON echo, nothing else.
    let bare = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(
                |axum::Json(body): axum::Json<Value>| async move { axum::Json(body) },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    };
    let limit = drive(
        &http,
        &plan,
        &bare,
        Target::Bare,
        &payload,
        "bare axum echo",
    )
    .await?;

    // colloquy: the hub on the chosen store, its echo module served as an A2A agent.
    let (hub, _temp, _) = crate::load::build_hub(&plan).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = A2aServer::new(hub.clone(), A2aOptions::new(&base)?).await?;
    let mcp_server =
        colloquy_mcp::McpServer::new(hub.clone(), colloquy_mcp::McpOptions::new()?).await?;
    let streams = tokio_util::sync::CancellationToken::new();
    let router = server.router().merge(mcp_server.router(streams.clone()));
    let serving = tokio::spawn(colloquy_a2a::serve_until(
        listener,
        router,
        colloquy_a2a::Limits::default().header_timeout,
        std::future::pending(),
    ));
    let endpoint = format!("{base}/agents/server");
    let store = match plan.store {
        crate::args::StoreKind::Memory => "memory",
        crate::args::StoreKind::Sqlite => "sqlite",
        crate::args::StoreKind::Postgres => "postgres",
    };
    let mut measured = vec![limit];
    let a2a_name = match (mcp, plan.store) {
        (true, _) => "A2A SendMessage",
        (false, crate::args::StoreKind::Memory) => "colloquy (memory)",
        (false, crate::args::StoreKind::Sqlite) => "colloquy (sqlite)",
        (false, crate::args::StoreKind::Postgres) => "colloquy (postgres)",
    };
    measured.push(drive(&http, &plan, &endpoint, Target::A2a, &payload, a2a_name).await?);
    if mcp {
        let endpoint = format!("{base}/mcp");
        measured.push(
            drive(
                &http,
                &plan,
                &endpoint,
                Target::Mcp,
                &payload,
                "MCP tools/call send",
            )
            .await?,
        );
    }
    streams.cancel();
    serving.abort();
    hub.shutdown().await;

    if let Some(url) = peer {
        let agent = RemoteAgent::connect(&url)
            .await
            .with_context(|| format!("cannot read the peer's card at {url}"))?;
        let endpoint = agent.endpoint().to_owned();
        measured.push(drive(&http, &plan, &endpoint, Target::A2a, &payload, "peer").await?);
    }
    report(out, &plan, store, &measured)
}

/// Runs the plan's conversations against `url` with `plan.parallel` clients at once.
async fn drive(
    http: &reqwest::Client,
    plan: &Plan,
    url: &str,
    target: Target,
    payload: &str,
    name: &'static str,
) -> Result<Measured> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..plan.parallel {
        let (http, next, url, payload) = (
            http.clone(),
            Arc::clone(&next),
            url.to_owned(),
            payload.to_owned(),
        );
        let (conversations, turns) = (plan.conversations, plan.turns);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mcp = match target {
                Target::Mcp => Some(McpClient::open(&http, &url).await?),
                _ => None,
            };
            loop {
                let conversation = next.fetch_add(1, Ordering::Relaxed);
                if conversation >= conversations {
                    break;
                }
                if let Some(mcp) = &mcp {
                    // Opening is counted in the elapsed time but not as an exchange: the
                    // figure is conservative for MCP.
                    let started = mcp
                        .call("start_conversation", json!({"with": ["server"]}))
                        .await?;
                    let id = started["conversation_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    for _ in 0..turns {
                        let sent = Instant::now();
                        let answer = mcp
                            .call("send", json!({"conversation_id": id, "content": payload}))
                            .await?;
                        latencies
                            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                        if answer["reply_turn"].is_null() {
                            bail!("{url} answered send without a reply: {answer}");
                        }
                    }
                    continue;
                }
                let mut context: Option<String> = None;
                for turn in 0..turns {
                    let mut message = json!({
                        "messageId": format!("load-{worker}-{conversation}-{turn}"),
                        "role": "ROLE_USER",
                        "parts": [{"text": payload}],
                    });
                    if let Some(context) = &context {
                        message["contextId"] = json!(context);
                    }
                    let body = json!({"jsonrpc": "2.0", "id": turn, "method": "SendMessage",
                        "params": {"message": message}});
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .header("A2A-Version", "1.0")
                        .json(&body)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await?;
                    // Only what the client needs (as a load generator reads no more than
                    // it must), the same for every target.
                    let read: Answer = serde_json::from_slice(&answer)?;
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    if target == Target::A2a {
                        let Some(outcome) = read.result.and_then(|r| r.task.or(r.message)) else {
                            bail!(
                                "{url} answered without a result: {}",
                                String::from_utf8_lossy(&answer)
                            );
                        };
                        if outcome
                            .status
                            .is_some_and(|s| s.state != "TASK_STATE_COMPLETED")
                        {
                            bail!(
                                "{url} did not complete the exchange: {}",
                                String::from_utf8_lossy(&answer)
                            );
                        }
                        context = outcome.context_id;
                    }
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(plan.conversations * plan.turns);
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined??);
    }
    let secs = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let latency = crate::load::Latency::of(&mut latencies);
    Ok(Measured {
        name,
        requests: latencies.len(),
        per_sec: latencies.len() as f64 / secs,
        p50_us: latency.p50_us,
        p99_us: latency.p99_us,
    })
}

/// A raw MCP client over Streamable HTTP: one session (initialize, initialized), then
/// `tools/call`s, each answer read from its JSON body or its one-event stream.
struct McpClient {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    next_id: AtomicUsize,
}

/// The protocol version the load client speaks (sessions, as most deployed clients).
const MCP_VERSION: &str = "2025-06-18";

impl McpClient {
    async fn open(http: &reqwest::Client, url: &str) -> Result<Self> {
        let mut client = Self {
            http: http.clone(),
            url: url.to_owned(),
            session: None,
            next_id: AtomicUsize::new(1),
        };
        let initialized = client
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": MCP_VERSION, "capabilities": {},
                "clientInfo": {"name": "colloquy-load", "version": env!("CARGO_PKG_VERSION")}}}),
            )
            .await?;
        client.session = initialized
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        initialized.bytes().await?;
        client
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?
            .bytes()
            .await?;
        Ok(client)
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MCP_VERSION)
            .json(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        Ok(request.send().await?.error_for_status()?)
    }

    /// Calls `tool`; its structured result, or an error with the tool's message.
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}))
            .await?
            .text()
            .await?;
        let message = body
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|data| data.starts_with('{'))
            .unwrap_or(body.as_str());
        let mut answer: Value = serde_json::from_str(message)
            .with_context(|| format!("{} answered {tool} with {body:?}", self.url))?;
        let result = answer["result"].take();
        if result["isError"] == true || result.is_null() {
            bail!("{} refused {tool}: {answer} {result}", self.url);
        }
        Ok(result["structuredContent"].clone())
    }
}

/// The members of an answer the load client reads.
#[derive(serde::Deserialize)]
struct Answer {
    result: Option<AnswerResult>,
}

#[derive(serde::Deserialize)]
struct AnswerResult {
    task: Option<Outcome>,
    message: Option<Outcome>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    context_id: Option<String>,
    status: Option<State>,
}

#[derive(serde::Deserialize)]
struct State {
    state: String,
}

fn report(out: &mut Out, plan: &Plan, store: &str, measured: &[Measured]) -> Result<()> {
    let limit = measured
        .first()
        .map_or(1.0, |m| m.per_sec.max(f64::EPSILON));
    let colloquy = measured.get(1).map_or(0.0, |m| m.per_sec);
    let rows: Vec<Value> = measured
        .iter()
        .map(|m| {
            json!({
                "target": m.name,
                "requests": m.requests,
                "requests_per_sec": m.per_sec.round(),
                "p50_us": m.p50_us,
                "p99_us": m.p99_us,
                "of_bare_echo": (m.per_sec / limit * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let mcp = measured.iter().find(|m| m.name.starts_with("MCP"));
    let peer_ratio = match mcp {
        Some(_) => None,
        None => measured
            .get(2)
            .map(|peer| (colloquy / peer.per_sec.max(f64::EPSILON) * 10.0).round() / 10.0),
    };
    let mcp_ratio = mcp.map(|m| (m.per_sec / colloquy.max(f64::EPSILON) * 1000.0).round() / 1000.0);
    if out.json {
        return out.json_value(&json!({
            "via": if mcp.is_some() { "mcp" } else { "a2a" },
            "store": store,
            "conversations": plan.conversations,
            "turns": plan.turns,
            "parallel": plan.parallel,
            "payload_bytes": plan.payload_bytes,
            "targets": rows,
            "colloquy_vs_peer": peer_ratio,
            "mcp_of_a2a": mcp_ratio,
        }));
    }
    let mut text = format!(
        "{} conversations x {} exchanges over HTTP, {} clients at once, {}-byte payloads, {store} store\n{:<20} {:>10} {:>10} {:>10} {:>12}\n",
        plan.conversations, plan.turns, plan.parallel, plan.payload_bytes,
        "target", "req/s", "p50 µs", "p99 µs", "of bare echo"
    );
    for m in measured {
        text.push_str(&format!(
            "{:<20} {:>10.0} {:>10} {:>10} {:>11.1}%\n",
            m.name,
            m.per_sec,
            m.p50_us,
            m.p99_us,
            m.per_sec / limit * 100.0
        ));
    }
    if let Some(ratio) = peer_ratio {
        text.push_str(&format!("colloquy / peer      {ratio}x\n"));
    }
    if let Some(ratio) = mcp_ratio {
        text.push_str(&format!("MCP / A2A            {ratio}x\n"));
    }
    out.text(&text)
}
