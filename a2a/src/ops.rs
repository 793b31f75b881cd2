//! Operations: `GET /healthz` (the hub's health as JSON) and `GET /metrics` (Prometheus
//! text), and the limits every call is held to.

use std::{sync::Arc, time::Duration};

use colloquy_runtime::{
    ExchangeOutcome, Health, ModuleName, RouterObserver, RouterStats, StatusCounts, StatusKind,
    StoreError,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{json, Value};

/// Limits on every HTTP call to the front; each refusal is a clear HTTP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond). Default 2 MiB: a message's content is
    /// at most the hub's 1 MiB of JSON, in an envelope.
    pub max_body_bytes: usize,
    /// Longest a call may take to answer (408 beyond); a stream's events are not bounded by
    /// it, only the start of the stream. Default 120 s.
    pub call_timeout: Duration,
    /// Most calls handled at once; beyond, a call is refused at once with 503 instead of
    /// queueing. Default 1,024.
    pub max_in_flight: usize,
    /// Longest a client may take to send a request's headers; a connection that has not
    /// sent them by then is closed (it holds no call, but would hold a connection).
    /// Default 10 s.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 << 20,
            call_timeout: Duration::from_secs(120),
            max_in_flight: 1_024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// The front's metrics, recorded into its own Prometheus registry (no global recorder, so
/// two servers in one process, or two tests, never mix their counts).
#[derive(Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Latency buckets, in seconds: from a memory exchange to a slow module.
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

impl Metrics {
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Only an empty bucket list is refused, and BUCKETS is not empty.
        let builder = match builder.set_buckets(BUCKETS) {
            Ok(with_buckets) => with_buckets,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = Arc::new(builder.build_recorder());
        metrics::with_local_recorder(&*recorder, describe);
        Self { recorder }
    }

    /// One JSON-RPC call to `method` (a known method's name, or `unknown`) was answered
    /// with `code` (`None`: a result).
    pub(crate) fn request(&self, method: &'static str, code: Option<i32>) {
        let code = code.map_or_else(|| "ok".to_owned(), |c| c.to_string());
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("colloquy_a2a_requests_total", "method" => method, "code" => code)
                .increment(1);
        });
    }

    /// One exchange ended (`completed`, `failed`, `canceled`, `rejected`) after `seconds`.
    pub(crate) fn exchange(&self, module: &ModuleName, outcome: &'static str, seconds: f64) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("colloquy_a2a_exchanges_total", "module" => module.to_string(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("colloquy_a2a_exchange_seconds", "module" => module.to_string())
                .record(seconds);
        });
    }

    /// A call was refused or answered with an error of `kind`.
    pub(crate) fn error(&self, kind: &'static str) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("colloquy_a2a_errors_total", "kind" => kind).increment(1);
        });
    }

    /// The Prometheus text, with the hub's gauges as they stand now.
    pub(crate) fn render(
        &self,
        router: &RouterStats,
        tasks_in_flight: usize,
        timed_out_total: u64,
        by_status: Option<&StatusCounts>,
    ) -> String {
        metrics::with_local_recorder(&*self.recorder, || {
            if let Some(counts) = by_status {
                for status in [
                    StatusKind::Active,
                    StatusKind::Paused,
                    StatusKind::Completed,
                    StatusKind::TimedOut,
                    StatusKind::Failed,
                ] {
                    metrics::gauge!("colloquy_conversations", "status" => status.as_str())
                        .set(counts.get(status) as f64);
                }
            }
            metrics::counter!("colloquy_conversations_timed_out_total").absolute(timed_out_total);
            metrics::gauge!("colloquy_hot_conversations").set(router.hot as f64);
            metrics::gauge!("colloquy_in_flight_operations").set(router.in_flight as f64);
            metrics::gauge!("colloquy_a2a_tasks_in_flight").set(tasks_in_flight as f64);
        });
        self.recorder.handle().render()
    }
}

/// The `# HELP` line of every series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("colloquy_exchanges_total", "Exchanges of the hub (over A2A or not), by target module and outcome: answered, failed, timed_out, refused, canceled, store_failed.");
    describe_histogram!("colloquy_exchange_seconds", Unit::Seconds, "Time from routing a request to its outcome (turn lock, request stored, handler, reply stored), by target module.");
    describe_histogram!("colloquy_handler_seconds", Unit::Seconds, "Time a module's handler ran, until it answered, failed or reached its deadline, by module.");
    describe_counter!("colloquy_store_errors_total", "Store calls of the router that failed, by kind (conflict, busy, unavailable, fenced, ...).");
    describe_gauge!(
        "colloquy_conversations",
        "Conversations in the database, by status, counted at each scrape."
    );
    describe_counter!(
        "colloquy_conversations_timed_out_total",
        "Conversations this hub's reaper timed out since it started."
    );
    describe_gauge!(
        "colloquy_hot_conversations",
        "Conversations held in memory."
    );
    describe_gauge!(
        "colloquy_in_flight_operations",
        "Routing operations in progress."
    );
    describe_counter!("colloquy_a2a_requests_total", "JSON-RPC calls to the A2A front, by method (unknown for names it does not know) and answer code (ok, or the JSON-RPC error code).");
    describe_counter!(
        "colloquy_a2a_errors_total",
        "Calls to the A2A front refused or answered with an error, by kind."
    );
    describe_counter!(
        "colloquy_a2a_exchanges_total",
        "A2A messages answered, by module and task outcome."
    );
    describe_histogram!(
        "colloquy_a2a_exchange_seconds",
        Unit::Seconds,
        "Time to answer an A2A message, by module."
    );
    describe_gauge!("colloquy_a2a_tasks_in_flight", "A2A tasks in progress.");
}

/// The hub's own series, as its router reports them: every exchange of the hub (not only
/// those that came over A2A) by module and outcome, exchange and handler times by module,
/// store errors by kind.
impl RouterObserver for Metrics {
    fn exchange(&self, module: &ModuleName, outcome: ExchangeOutcome, elapsed: Duration) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("colloquy_exchanges_total", "module" => module.to_string(), "outcome" => outcome.as_str())
                .increment(1);
            metrics::histogram!("colloquy_exchange_seconds", "module" => module.to_string())
                .record(elapsed.as_secs_f64());
        });
    }

    fn handled(&self, module: &ModuleName, elapsed: Duration) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::histogram!("colloquy_handler_seconds", "module" => module.to_string())
                .record(elapsed.as_secs_f64());
        });
    }

    fn store_error(&self, error: &StoreError) {
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::counter!("colloquy_store_errors_total", "kind" => error.kind()).increment(1);
        });
    }
}

/// The label a JSON-RPC method is counted under: its name if this server knows it, else
/// `unknown` (a client's arbitrary names never become series of their own).
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "SendMessage",
        "SendStreamingMessage",
        "GetTask",
        "CancelTask",
        "SubscribeToTask",
        "message/send",
        "message/stream",
        "tasks/get",
        "tasks/cancel",
        "tasks/resubscribe",
    ];
    KNOWN
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("unknown")
}

/// The name a JSON-RPC error code is counted under.
pub(crate) fn error_kind(code: i32) -> &'static str {
    use a2a::error_code as c;
    match code {
        c::PARSE_ERROR => "parse",
        c::INVALID_REQUEST => "invalid_request",
        c::METHOD_NOT_FOUND => "method_not_found",
        c::INVALID_PARAMS => "invalid_params",
        c::TASK_NOT_FOUND => "not_found",
        c::TASK_NOT_CANCELABLE => "not_cancelable",
        c::UNSUPPORTED_OPERATION => "unsupported",
        _ => "internal",
    }
}

/// The hub's health as JSON.
pub(crate) fn health_json(health: &Health) -> Value {
    json!({
        "healthy": health.healthy,
        "problems": health.problems,
        "store_latency_ms": health.store_latency.map(|d| d.as_secs_f64() * 1e3),
        "stale_conversations": health.stale_conversations.len(),
        "hot_conversations": health.router.hot,
        "in_flight": health.router.in_flight,
        "timed_out_total": health.timed_out_total,
        "modules": health.modules.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}
