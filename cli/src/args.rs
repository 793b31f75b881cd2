//! The command line, as clap's derive API reads it.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use colloquy_core::{ModuleName, StatusKind};

/// colloquy: multi-turn conversations between modules, durably stored.
#[derive(Debug, Parser)]
#[command(name = "colloquy", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The conversation database: an SQLite file, a PostgreSQL URL
    /// (`postgres://user@host:port/database`), or `:memory:` for `serve`, `mcp` and `load` (kept in
    /// the process only, gone when it stops) [default: colloquy.db; `load` without it runs
    /// in memory, or with `--store sqlite` in a temporary file].
    #[arg(long, global = true, value_name = "PATH|URL|:memory:")]
    pub(crate) db: Option<String>,

    /// With a PostgreSQL `--db`: the schema that holds colloquy's tables [default: colloquy].
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) schema: Option<String>,

    /// With a PostgreSQL `--db` that several hubs share: how long a hub may be silent before
    /// the others fence it and take its exchanges over (30s, 5s, 1500ms) [default: 5s].
    /// Every hub of a cluster should use the same value.
    #[arg(long, global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) member_timeout: Option<Duration>,

    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The cluster link of `serve` on a PostgreSQL database several hubs share: turns to
/// another hub's modules go to it directly over HTTP/2.
#[derive(Debug, clap::Args)]
pub(crate) struct LinkArgs {
    /// With a PostgreSQL `--db`: where this hub's cluster link listens for turns other hubs
    /// send to its modules (port 0 picks a free one) [default: 127.0.0.1:0, for hubs of one
    /// machine]. Beyond loopback it needs `--cluster-secret-file`.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_cluster_link")]
    pub(crate) cluster_listen: Option<std::net::SocketAddr>,
    /// The `host:port` other hubs connect to, when it is not the address listened on (as
    /// when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_cluster_link")]
    pub(crate) cluster_advertise: Option<String>,
    /// The cluster secret, read from FILE (its first line): every hub of the cluster uses
    /// the same; a hub without it cannot send turns to this one's link.
    #[arg(long, value_name = "FILE", conflicts_with = "no_cluster_link")]
    pub(crate) cluster_secret_file: Option<PathBuf>,
    /// No cluster link: turns between this hub and the others cross through the database
    /// (slower; what hubs of versions before the link do).
    #[arg(long)]
    pub(crate) no_cluster_link: bool,
}

/// MCP servers joined to the hub as modules (`serve` and `mcp`).
#[derive(Debug, clap::Args)]
pub(crate) struct McpModuleArgs {
    /// Start COMMAND with its ARGS (split at spaces; no shell quoting: use a script for
    /// more) as an MCP server over stdio, and register it as a module whose capabilities
    /// are its tools; a turn `{"tool": NAME, "arguments": {...}}` calls one (repeatable).
    /// `NAME=COMMAND ...` names the module [default: the server's own name]. A server that
    /// dies is started again on the next turn, at most 5 times in a row.
    #[arg(long, value_name = "[NAME=]COMMAND ARGS")]
    pub(crate) mcp_server: Vec<String>,
    /// Register the MCP server at URL (Streamable HTTP) as a module, as `--mcp-server`
    /// does (repeatable; `NAME=URL` names it).
    #[arg(long, value_name = "[NAME=]URL")]
    pub(crate) mcp_url: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the demo workflow: schema negotiations, handoffs and one deliberate failure
    /// between built-in modules, stored in the database (added to what is there).
    Demo {
        /// How many conversations to run.
        #[arg(long, default_value_t = 50, value_name = "N")]
        conversations: usize,
    },
    /// Serve the hub's modules as A2A agents over HTTP (JSON-RPC 2.0, SSE streaming): a card
    /// at `/agents/{module}/.well-known/agent-card.json`, the endpoint at `/agents/{module}`,
    /// `/healthz` and `/metrics`. Runs until interrupted (Ctrl-C or SIGTERM), then stops
    /// accepting, drains in-flight turns and closes the store.
    Serve {
        /// Address to listen on (port 0 picks a free one; the address is printed). Without
        /// tokens only a loopback address is allowed.
        #[arg(long, default_value = "127.0.0.1:8765", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The URL clients reach the server at, for the agent cards [default: http://ADDR].
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Register the A2A agent whose card is at URL (or below it, at
        /// `/.well-known/agent-card.json`) as a module (repeatable).
        #[arg(long, value_name = "URL")]
        agent: Vec<String>,
        /// Register the demo's modules and an `echo` module that replies with what it
        /// receives, to try any A2A client against the server.
        #[arg(long)]
        demo_modules: bool,
        /// Require bearer tokens, read from FILE: one `TOKEN PARTICIPANT` per line (`#`
        /// starts a comment). A call with TOKEN speaks as PARTICIPANT and sees only that
        /// participant's conversations.
        #[arg(long, value_name = "FILE")]
        tokens: Option<std::path::PathBuf>,
        /// A token given on the command line, as TOKEN=PARTICIPANT (repeatable; prefer
        /// `--tokens FILE`, which other users of the machine cannot read in `ps`).
        #[arg(long, value_parser = parse_token, value_name = "TOKEN=PARTICIPANT")]
        token: Vec<(String, ModuleName)>,
        /// How long a conversation opened through this server may stay idle before the
        /// reaper times it out (30s, 5m, 2h) [default: 5m].
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        idle_timeout: Option<Duration>,
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        mcp: McpModuleArgs,
    },
    /// Speak the Model Context Protocol on standard input and output, as desktop LLM
    /// applications launch their servers: tools to list the modules, start a conversation,
    /// send a turn and get the reply, read a transcript, end and find conversations, as one
    /// participant. Runs until the client closes standard input. The same server is at
    /// `/mcp` on `colloquy serve`.
    Mcp {
        /// The participant the client speaks as: it sees only its own conversations.
        #[arg(long = "as", value_parser = parse_module, default_value = "mcp-client", value_name = "PARTICIPANT")]
        caller: ModuleName,
        /// Register the demo's modules and an `echo` module that replies with what it
        /// receives.
        #[arg(long)]
        demo_modules: bool,
        /// How long a conversation may stay idle before the reaper times it out [default: 5m].
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        idle_timeout: Option<Duration>,
        #[command(flatten)]
        mcp: McpModuleArgs,
    },
    /// List conversations, newest first.
    Conversations {
        /// Only this status.
        #[arg(long, value_parser = parse_status, value_name = "STATUS")]
        status: Option<StatusKind>,
        /// Only conversations this module takes part in.
        #[arg(long, value_parser = parse_module, value_name = "MODULE")]
        module: Option<ModuleName>,
        /// Only conversations started within this long ago (30s, 5m, 7d).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        since: Option<Duration>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// Show one conversation: its transcript, every change of its shared state (transfers,
    /// phase, context) and why it ended.
    Show {
        /// The conversation: its id, or a unique start or end of it (the last 8 characters
        /// that lists print will do).
        #[arg(value_name = "ID", value_parser = parse_id_part)]
        id: String,
    },
    /// End an active or paused conversation (completed; failed with --reason), for
    /// conversations left open by a hub that stopped.
    End {
        /// The conversation: its id, or a unique start or end of it.
        #[arg(value_name = "ID", value_parser = parse_id_part)]
        id: String,
        /// End it as failed, with this reason.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Time out, once, every active conversation idle past its idle timeout, as a running
    /// hub's reaper would (for conversations that a hub which stopped left open).
    Reap,
    /// Aggregates: counts by status, turns, durations, module activity.
    Analytics {
        /// Only conversations started within this long ago (30s, 5m, 7d).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        since: Option<Duration>,
    },
    /// Check the database: exit code 0 when healthy, 1 when not, with the reasons.
    Health {
        /// Report active conversations idle for longer than this as stale (default: each
        /// conversation's own idle timeout).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        stale_after: Option<Duration>,
    },
    /// List the modules registered in the database.
    Modules,
    /// Delete ended conversations (and their messages) that ended longer ago than this.
    Prune {
        /// Age of the conversations to delete (30s, 5m, 7d).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        older_than: Duration,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Measure throughput and latency: C conversations in parallel between echo modules,
    /// T request/reply round trips each, through the full hub.
    Load {
        /// Where conversations are stored [default: memory; sqlite when --db is a file,
        /// postgres when it is a PostgreSQL URL].
        #[arg(long, value_enum)]
        store: Option<StoreKind>,
        /// Conversations.
        #[arg(long, default_value_t = 1_000, value_name = "C")]
        conversations: usize,
        /// Round trips per conversation.
        #[arg(long, default_value_t = 20, value_name = "T")]
        turns: usize,
        /// Size of each message's payload.
        #[arg(long, default_value_t = 200, value_name = "B")]
        payload_bytes: usize,
        /// Size of each conversation's shared context (a string under the key "notes"),
        /// which every turn carries along unchanged.
        #[arg(long, default_value_t = 0, value_name = "B")]
        context_bytes: usize,
        /// SQLite sync level.
        #[arg(long, value_enum, default_value_t = SyncLevel::Normal)]
        synchronous: SyncLevel,
        /// Conversations in flight at once (default 64; latency = in flight / throughput).
        #[arg(long, value_name = "P")]
        parallel: Option<usize>,
        /// Append `conversation_id turn message_id` for every acknowledged message to FILE,
        /// before that conversation's next turn starts (for crash tests).
        #[arg(long, value_name = "FILE")]
        ack_log: Option<PathBuf>,
        /// Poll the modules' handlers in place (`Delivery::Inline`, the fast path for
        /// handlers that never block) instead of running each as its own task.
        #[arg(long)]
        inline: bool,
        /// How the load reaches the hub: `direct` (conversation handles, in process),
        /// `a2a` (A2A SendMessage over loopback HTTP, measured in the same run against a
        /// bare axum JSON echo, and against `--peer`), `mcp` (MCP `tools/call` of `send`
        /// over Streamable HTTP, measured in the same run against the bare echo and the
        /// A2A SendMessage of the same exchanges), `tokio` (no hub at all: the same
        /// round trips between two tokio tasks, the limit `direct` on memory is measured
        /// against), or `sqlite-raw` (no hub: the rows the same load writes, straight into
        /// SQLite in 1,000-row transactions and as single-row commits, the limits `direct`
        /// on SQLite is measured against).
        #[arg(long, value_enum, default_value_t = Via::Direct)]
        via: Via,
        /// Hubs on the one PostgreSQL database, in this process, each with its own
        /// connections (as separate processes would have); conversations are spread over
        /// them.
        #[arg(long, default_value_t = 1, value_name = "N")]
        hubs: usize,
        /// With `--hubs N`: the server module lives on the first hub only and the other
        /// hubs drive every conversation, so each exchange crosses hubs.
        #[arg(long)]
        cross_hub: bool,
        /// With `--via a2a`: also measure the A2A agent whose card is at URL (a peer, such
        /// as the Python SDK's echo agent) with the same client and plan.
        #[arg(long, value_name = "URL")]
        peer: Option<String>,
    },
    /// Export messages as JSON, one object per message (readable back as colloquy messages);
    /// with --audit, one object per conversation with its state, messages, state changes
    /// and why it ended.
    Export {
        /// Only this conversation (its id, or a unique start or end of it).
        #[arg(value_name = "ID", value_parser = parse_id_part)]
        id: Option<String>,
        /// jsonl: one object per line; json: one array.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// One object per conversation: `conversation` (its state), `messages`,
        /// `state_changes` (what each write changed: context, participants, phase, status)
        /// and `ended` (when and why), for audits.
        #[arg(long)]
        audit: bool,
    },
}

/// How `colloquy load` reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Via {
    /// Conversation handles in the same process.
    Direct,
    /// A2A JSON-RPC over loopback HTTP.
    A2a,
    /// MCP `tools/call` of `send` over loopback Streamable HTTP, beside A2A.
    Mcp,
    /// No hub: the limit an in-process hub is measured against (an echo task per
    /// conversation, reached through a tokio mpsc, replying on a oneshot).
    Tokio,
    /// No hub: the limits a hub on SQLite is measured against (the rows the same load
    /// writes, inserted straight into an SQLite file in 1,000-row transactions, then as
    /// single-row commits).
    SqliteRaw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array.
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e}; use forms like 30s, 5m, 2h or 7d"))
}

/// A conversation id, or at least 4 hex digits of one (its start or its end).
fn parse_id_part(text: &str) -> Result<String, String> {
    let text = text.trim();
    let shaped = text.len() >= 4 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if shaped {
        Ok(text.to_owned())
    } else {
        Err(format!("invalid conversation id {text:?}: give an id that `colloquy conversations` lists, or at least 4 hex digits from its start or end"))
    }
}

fn parse_status(text: &str) -> Result<StatusKind, String> {
    text.parse()
        .map_err(|e: colloquy_core::CoreError| e.to_string())
}

fn parse_module(text: &str) -> Result<ModuleName, String> {
    text.parse()
        .map_err(|e: colloquy_core::CoreError| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// In memory: nothing is written to disk.
    Memory,
    /// SQLite (the file `--db`, or a temporary one).
    Sqlite,
    /// PostgreSQL (the database `--db postgres://...`).
    Postgres,
}

impl StoreKind {
    /// The name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncLevel {
    /// Durable against process crashes.
    Normal,
    /// Durable against power loss.
    Full,
}

pub(crate) fn parse_token(text: &str) -> Result<(String, ModuleName), String> {
    // The text is never quoted back: it holds a secret.
    let (token, participant) = text.split_once(['=', ' ', '\t']).ok_or_else(|| {
        "expected TOKEN=PARTICIPANT or TOKEN PARTICIPANT (the token is not shown)".to_owned()
    })?;
    let participant = participant.trim();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok((
        token.to_owned(),
        participant
            .parse()
            .map_err(|e: colloquy_core::CoreError| e.to_string())?,
    ))
}
