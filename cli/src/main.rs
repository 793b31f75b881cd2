//! `colloquy`: run the demo workflow, and inspect and maintain any conversation database.
//!
//! Every command takes `--db PATH` (default `colloquy.db`) and `--json`. Errors are one
//! line on stderr with a non-zero exit code; `health` exits 1 when the database is not
//! healthy. `RUST_LOG=colloquy_router=debug` (or any `target=level` list) turns on logs.

mod args;
mod db;
mod demo;
mod demo_modules;
mod health;
mod inspect;
mod load;
mod load_a2a;
mod load_limit;
mod load_sqlite_limit;
mod mcp;
mod output;
mod serve;

use std::{
    io::{BufWriter, Stdout, Write},
    process::ExitCode,
};

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

use args::{Cli, Command};

/// Where results go: stdout, as text or as JSON.
pub(crate) struct Out {
    pub(crate) json: bool,
    writer: BufWriter<Stdout>,
}

impl Out {
    pub(crate) fn text(&mut self, text: &str) -> Result<()> {
        self.writer.write_all(text.as_bytes())?;
        Ok(())
    }

    pub(crate) fn json_value(&mut self, value: &serde_json::Value) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.writer, value)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}

fn init_logging() {
    // RUST_LOG takes `target=level` directives (`colloquy_router=debug,colloquy_storage=trace`);
    // a malformed value is reported once and logging stays off rather than failing the command.
    let Ok(directives) = std::env::var("RUST_LOG") else {
        return;
    };
    match directives.parse::<Targets>() {
        Ok(filter) => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .try_init();
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "warning: ignoring RUST_LOG={directives:?}: {e}"
            );
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut out = Out {
        json: cli.json,
        writer: BufWriter::new(std::io::stdout()),
    };
    let db = db::Db::parse(
        cli.db.as_deref().unwrap_or("colloquy.db"),
        cli.schema.as_deref(),
        cli.member_timeout,
    )?;
    let db = &db;
    let mut code = ExitCode::SUCCESS;
    match cli.command {
        Command::Demo { conversations } => demo::run(&mut out, db, conversations).await?,
        Command::Serve {
            listen,
            base_url,
            agent,
            demo_modules,
            tokens,
            token,
            idle_timeout,
            link,
            mcp,
        } => {
            let settings = serve::Settings {
                listen,
                base_url,
                agents: agent,
                demo_modules,
                tokens_file: tokens,
                idle_timeout,
                tokens: token,
                link,
                mcp,
            };
            serve::run(&mut out, db, settings).await?;
        }
        Command::Mcp {
            caller,
            demo_modules,
            idle_timeout,
            mcp,
        } => mcp::stdio(db, caller, demo_modules, idle_timeout, &mcp).await?,
        Command::Conversations {
            status,
            module,
            since,
            limit,
        } => {
            let store = db.open_for_reading().await?;
            let done = inspect::conversations(&mut out, &store, status, module, since, limit).await;
            store.close_after(done).await?;
        }
        Command::Show { id } => {
            let store = db.open_for_reading().await?;
            let done = async {
                let id = inspect::resolve(&store, &id).await?;
                inspect::show(&mut out, &store, id).await
            }
            .await;
            store.close_after(done).await?;
        }
        Command::End { id, reason } => {
            let store = db.open_existing().await?;
            let done = async {
                let id = inspect::resolve(&store, &id).await?;
                inspect::end(&mut out, &store, id, reason).await
            }
            .await;
            store.close_after(done).await?;
        }
        Command::Reap => {
            let store = db.open_existing().await?;
            let done = inspect::reap(&mut out, &store).await;
            store.close_after(done).await?;
        }
        Command::Analytics { since } => {
            let store = db.open_for_reading().await?;
            let done = inspect::analytics(&mut out, &store, since).await;
            store.close_after(done).await?;
        }
        Command::Health { stale_after } => {
            let store = db.open_for_reading().await?;
            let done = health::health(&mut out, &store, stale_after).await;
            if !store.close_after(done).await? {
                code = ExitCode::FAILURE;
            }
        }
        Command::Modules => {
            let store = db.open_for_reading().await?;
            let done = health::modules(&mut out, &store).await;
            store.close_after(done).await?;
        }
        Command::Prune {
            older_than,
            dry_run,
        } => {
            let store = if dry_run {
                db.open_for_reading().await?
            } else {
                db.open_existing().await?
            };
            let done = inspect::prune(&mut out, &store, older_than, dry_run).await;
            store.close_after(done).await?;
        }
        Command::Load {
            store,
            conversations,
            turns,
            payload_bytes,
            context_bytes,
            synchronous,
            parallel,
            ack_log,
            inline,
            via,
            peer,
            hubs,
            cross_hub,
        } => {
            let given = cli
                .db
                .as_deref()
                .map(|text| db::Db::parse(text, cli.schema.as_deref(), cli.member_timeout))
                .transpose()?;
            let store = match (store, &given) {
                (None, Some(db::Db::Postgres { .. })) => args::StoreKind::Postgres,
                (None, Some(db::Db::Sqlite(_))) => args::StoreKind::Sqlite,
                (None | Some(args::StoreKind::Memory), Some(db::Db::Memory)) => {
                    args::StoreKind::Memory
                }
                (None, None) => args::StoreKind::Memory,
                (Some(args::StoreKind::Memory), Some(_)) => anyhow::bail!(
                    "--store memory keeps nothing in a database: drop --db {}, or measure that database with --store sqlite",
                    cli.db.as_deref().unwrap_or_default()
                ),
                (Some(args::StoreKind::Postgres), Some(db::Db::Postgres { .. }))
                | (Some(args::StoreKind::Sqlite | args::StoreKind::Memory), None | Some(db::Db::Sqlite(_))) => {
                    store.unwrap_or(args::StoreKind::Memory)
                }
                (Some(kind), _) => anyhow::bail!(
                    "--store {} does not go with --db {}: postgres takes a postgres:// URL, sqlite and memory a file",
                    kind.name(),
                    cli.db.as_deref().unwrap_or("(none)")
                ),
            };
            let plan = load::Plan {
                store,
                db: given,
                conversations,
                turns,
                payload_bytes,
                context_bytes,
                synchronous,
                parallel: parallel.unwrap_or(conversations.min(64)).max(1),
                ack_log,
                inline,
                hubs,
                cross_hub,
            };
            match via {
                args::Via::Direct if peer.is_some() => {
                    anyhow::bail!("--peer measures over HTTP: add --via a2a")
                }
                args::Via::Direct => {
                    if load::run(&mut out, plan).await? {
                        // Interrupted: the shell's code for a command stopped by SIGINT.
                        code = ExitCode::from(130);
                    }
                }
                args::Via::A2a => load_a2a::run(&mut out, plan, peer, false).await?,
                args::Via::Mcp => load_a2a::run(&mut out, plan, peer, true).await?,
                args::Via::Tokio if peer.is_some() || plan.store != args::StoreKind::Memory => {
                    anyhow::bail!(
                        "--via tokio measures round trips between tasks, with no store and no peer"
                    )
                }
                args::Via::Tokio => load_limit::run(&mut out, plan).await?,
                args::Via::SqliteRaw if peer.is_some() => {
                    anyhow::bail!("--via sqlite-raw measures SQLite alone, with no peer")
                }
                args::Via::SqliteRaw => load_sqlite_limit::run(&mut out, &plan)?,
            }
        }
        Command::Export { id, format, audit } => {
            let store = db.open_for_reading().await?;
            let done = async {
                let id = match id {
                    Some(id) => Some(inspect::resolve(&store, &id).await?),
                    None => None,
                };
                inspect::export(&mut out, &store, id, format, audit).await
            }
            .await;
            store.close_after(done).await?;
        }
    }
    out.flush()?;
    Ok(code)
}

/// Parses the command line; a usage error becomes one `error:` line and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
        _ => {
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad arguments");
            // clap's "did you mean" is a `tip:` line of its own: kept, on the same line.
            let tips: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("tip:"))
                .collect();
            let hint = if tips.is_empty() {
                "see --help".to_owned()
            } else {
                format!("{}; see --help", tips.join("; "))
            };
            let _ = writeln!(std::io::stderr(), "{line} ({hint})");
            ExitCode::from(2)
        }
    })
}

/// The binary's allocator (the libraries leave the choice to their user): mimalloc's
/// per-thread heaps instead of glibc's arenas, whose locks and frees across threads were an
/// eighth of a loaded hub's time; version 2, without transparent huge pages (see the
/// workspace manifest and benches/README, session 8).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, never a backtrace; plus what to type, for
            // the errors this binary can fix itself.
            let _ = writeln!(std::io::stderr(), "error: {e:#}{}", hint(&e));
            ExitCode::FAILURE
        }
    }
}

/// The command that fixes `e`, where this binary has one (the library's errors name no
/// commands of this binary).
fn hint(e: &anyhow::Error) -> String {
    use colloquy_storage::StoreError;
    match e.downcast_ref::<StoreError>() {
        Some(StoreError::DatabaseMissing { path }) if path.extension().is_some() => {
            format!(
                ", or create one with `colloquy demo --db {}`",
                path.display()
            )
        }
        Some(StoreError::DatabaseMissing { .. }) => {
            ", or create it with `colloquy demo` on the same --db and --schema".to_owned()
        }
        Some(StoreError::SchemaTooOld { path, .. }) => format!(
            " (on a writable copy, `colloquy health --db {}` migrates it)",
            path.display()
        ),
        _ => String::new(),
    }
}

/// `colloquy export | head` closes the pipe early; that is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
