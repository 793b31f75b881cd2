//! `colloquy serve`: the hub's modules (remote A2A agents, and optionally the demo's) as
//! A2A agents over HTTP, on the database at `--db`.

use std::{net::SocketAddr, path::Path, path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use colloquy_a2a::{A2aOptions, A2aServer, RemoteAgent};
use colloquy_inspector::{Inspector, InspectorOptions};
use colloquy_runtime::ModuleName;

use crate::{db::Db, Out};

/// What `colloquy serve` was asked to do.
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) base_url: Option<String>,
    pub(crate) agents: Vec<String>,
    pub(crate) demo_modules: bool,
    pub(crate) tokens_file: Option<PathBuf>,
    pub(crate) tokens: Vec<(String, ModuleName)>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) link: crate::args::LinkArgs,
    pub(crate) mcp: crate::args::McpModuleArgs,
}

/// The cluster link `serve` was asked for (`None`: none), checked against the database.
fn cluster_link(
    db: &Db,
    args: &crate::args::LinkArgs,
) -> Result<Option<colloquy_runtime::LinkConfig>> {
    let given = args.cluster_listen.is_some()
        || args.cluster_advertise.is_some()
        || args.cluster_secret_file.is_some()
        || args.no_cluster_link;
    if !matches!(db, Db::Postgres { .. }) {
        if given {
            bail!("the --cluster-* options apply to hubs sharing a PostgreSQL database (--db postgres://...), not to the file {}", db.describe());
        }
        return Ok(None);
    }
    if args.no_cluster_link {
        return Ok(None);
    }
    let mut link = match args.cluster_listen {
        Some(listen) => colloquy_runtime::LinkConfig::new(listen),
        None => colloquy_runtime::LinkConfig::loopback(),
    };
    if let Some(advertise) = &args.cluster_advertise {
        link = link.advertise(advertise);
    }
    if let Some(file) = &args.cluster_secret_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the cluster secret file {}", file.display()))?;
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.is_empty() {
            bail!("the cluster secret file {} is empty: its first line is the secret every hub of the cluster shares", file.display());
        }
        link = link.secret(secret);
    }
    Ok(Some(link))
}

/// A token, the participant it speaks as, and where it was given (for errors: never the
/// token itself).
struct Given {
    token: String,
    participant: ModuleName,
    place: String,
}

/// Refuses a token given twice for different participants, naming both places.
fn refuse_conflicts(tokens: &[Given]) -> Result<()> {
    for (i, given) in tokens.iter().enumerate() {
        if let Some(earlier) = tokens[..i]
            .iter()
            .find(|e| e.token == given.token && e.participant != given.participant)
        {
            bail!(
                "{} gives the token of {} to {}, but {} gave it to {}: one token speaks as one participant; give each participant its own token",
                given.place,
                earlier.place,
                given.participant,
                earlier.place,
                earlier.participant
            );
        }
    }
    Ok(())
}

/// Refuses a participant named like a module the hub serves: the caller would take the
/// module's place.
fn refuse_module_names(tokens: &[Given], modules: &[ModuleName]) -> Result<()> {
    if let Some(given) = tokens.iter().find(|g| modules.contains(&g.participant)) {
        bail!(
            "{} names the participant {}, which is also a module of this hub: a caller cannot speak as a module; give the participant another name",
            given.place,
            given.participant
        );
    }
    Ok(())
}

pub(crate) async fn run(out: &mut Out, db: &Db, settings: Settings) -> Result<()> {
    let mut given: Vec<Given> = settings
        .tokens
        .into_iter()
        .map(|(token, participant)| Given {
            token,
            participant,
            place: "--token".to_owned(),
        })
        .collect();
    if let Some(file) = &settings.tokens_file {
        given.extend(read_tokens(file)?);
    }
    refuse_conflicts(&given)?;
    if settings.demo_modules {
        let mut demo = crate::demo::module_names();
        demo.push(crate::demo_modules::module_name("echo"));
        refuse_module_names(&given, &demo)?;
    }
    if given.is_empty() && !settings.listen.ip().is_loopback() {
        bail!(
            "refusing to serve on {} without tokens: anyone who can reach it could read and \
             continue every conversation; give --tokens FILE, or listen on a loopback address",
            settings.listen
        );
    }
    // The address first: a port that is taken stops the start before anything is opened or
    // created.
    let tokens: Vec<(String, ModuleName)> = given
        .iter()
        .map(|g| (g.token.clone(), g.participant.clone()))
        .collect();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another server using it? pick another with --listen",
                settings.listen
            )
        })?;
    let link = cluster_link(db, &settings.link)?;
    let mut builder = db
        .hub()?
        .handler_deadline(Duration::from_secs(30))
        .cluster_link(link);
    if let Some(idle) = settings.idle_timeout {
        builder = builder.idle_timeout(idle);
    }
    let hub = builder
        .build()
        .await
        .with_context(|| format!("cannot open the database {}", db.describe()))?;
    if settings.demo_modules {
        crate::demo::register_modules(&hub).await?;
        hub.register(crate::demo_modules::Echo).await?;
    }
    let mut remote = Vec::new();
    for url in &settings.agents {
        let agent = RemoteAgent::connect(url)
            .await
            .with_context(|| format!("cannot register the agent at {url}"))?;
        remote.push((
            agent.endpoint().to_owned(),
            url.clone(),
            colloquy_runtime::Module::info(&agent).name,
        ));
        hub.register(agent).await?;
    }
    let mcp_modules = crate::mcp::register_modules(&hub, &settings.mcp).await?;
    // Every module a turn from here can reach: this hub's own and, on a database several
    // hubs share, those the other live hubs host. No participant may take one's name.
    let served: Vec<_> = hub
        .reachable_modules()
        .into_iter()
        .filter(|m| !m.is_caller())
        .collect();
    let names: Vec<ModuleName> = served.iter().map(|m| m.name.clone()).collect();
    refuse_module_names(&given, &names)?;
    let address = listener.local_addr()?;
    let base_url = settings
        .base_url
        .unwrap_or_else(|| format!("http://{address}"));
    let mut options = A2aOptions::new(&base_url)?;
    let open = tokens.is_empty();
    // The inspector reads with the same tokens: a reader sees its participant's
    // conversations.
    let inspector = tokens.iter().fold(InspectorOptions::new(), |o, (t, p)| {
        o.token(t.clone(), p.clone())
    });
    let inspector = remote.iter().fold(inspector, |o, (endpoint, _, name)| {
        o.remote_agent(name.clone(), endpoint.clone())
    });
    let mut mcp_options = colloquy_mcp::McpOptions::new()?;
    if let Some(host) = base_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
    {
        mcp_options = mcp_options.allow_host(host);
    }
    for (token, participant) in tokens {
        mcp_options = mcp_options.token(token.clone(), participant.clone());
        options = options.token(token, participant);
    }
    let callers = options.participants();
    let server = A2aServer::new(hub.clone(), options).await?;
    let mcp = colloquy_mcp::McpServer::new(hub.clone(), mcp_options).await?;
    let local = hub.modules();
    let cards: Vec<String> = served
        .iter()
        .map(|m| format!("{base_url}/agents/{}/.well-known/agent-card.json", m.name))
        .collect();
    let elsewhere = served
        .iter()
        .filter(|m| !local.iter().any(|l| l.name == m.name))
        .count();
    if out.json {
        // One line, so that a supervisor (or a test) can read it as the server's "ready".
        let ready = serde_json::json!({
            "listening": address.to_string(),
            "inspector": format!("{base_url}/inspect"),
            "cards": cards,
            "mcp": format!("{base_url}/mcp"),
            "tokens": !open,
        });
        out.text(&format!("{ready}\n"))?;
    } else {
        if open {
            out.text(&format!(
                "no tokens: every caller on this machine speaks as {} (give --tokens FILE to tell callers apart)\n",
                callers.first().map(ToString::to_string).unwrap_or_default()
            ))?;
        }
        if cards.is_empty() {
            out.text("no modules to serve yet: add --agent URL or --demo-modules, or start a hub with modules on the same database\n")?;
        }
        out.text(&format!(
            "serving {} agent(s) on {address}{} (Ctrl-C stops); their cards:\n{}\nMCP: {base_url}/mcp   inspector: {base_url}/inspect   health: {base_url}/healthz   metrics: {base_url}/metrics\n",
            cards.len(),
            if elsewhere > 0 { format!(", {elsewhere} of them hosted by other hubs") } else { String::new() },
            cards.join("\n")
        ))?;
        for (endpoint, url, _) in remote {
            out.text(&format!("remote agent {url} -> {endpoint}\n"))?;
        }
        for (name, source) in mcp_modules {
            out.text(&format!("MCP server {source} -> module {name}\n"))?;
        }
    }
    out.flush()?;
    // MCP's event streams end at the signal, so that the server's graceful stop does not
    // wait for clients that never hang up.
    let mcp_streams = tokio_util::sync::CancellationToken::new();
    let router = server
        .router()
        .merge(mcp.router(mcp_streams.clone()))
        .merge(Inspector::new(hub.clone(), inspector).router());
    let in_flight = serve_until_interrupted(listener, router, &hub, mcp_streams).await?;
    // Stopped accepting and answered what was in progress; now drain the hub's turns and
    // close the store.
    let report = hub.shutdown().await;
    let aborted = if report.aborted > 0 {
        format!(", {} aborted at the drain deadline", report.aborted)
    } else {
        String::new()
    };
    if out.json {
        out.text(&format!(
            "{}\n",
            serde_json::json!({ "stopped": true, "in_flight_at_signal": in_flight, "aborted": report.aborted })
        ))?;
    } else {
        out.text(&format!(
            "stopped: {in_flight} turn(s) were in flight at the signal and finished{aborted}; the database is closed\n"
        ))?;
    }
    out.flush()?;
    Ok(())
}

/// Tokens from `file`: one `TOKEN PARTICIPANT` (or `TOKEN=PARTICIPANT`) per line; blank
/// lines and lines starting with `#` are skipped.
fn read_tokens(file: &Path) -> Result<Vec<Given>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the tokens file {}", file.display()))?;
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let place = format!("{}, line {}", file.display(), n + 1);
        let (token, participant) =
            crate::args::parse_token(line).map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
        tokens.push(Given {
            token,
            participant,
            place,
        });
    }
    if tokens.is_empty() {
        bail!("the tokens file {} names no token", file.display());
    }
    Ok(tokens)
}

/// Serves until Ctrl-C or SIGTERM, then returns (in-flight requests finish first) how many
/// turns were in flight when the signal came.
async fn serve_until_interrupted(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    hub: &colloquy_runtime::Hub,
    streams: tokio_util::sync::CancellationToken,
) -> Result<usize> {
    let interrupted = interruption()?;
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = {
        let (hub, in_flight) = (hub.clone(), std::sync::Arc::clone(&in_flight));
        async move {
            interrupted.await;
            streams.cancel();
            in_flight.store(hub.stats().in_flight, std::sync::atomic::Ordering::SeqCst);
        }
    };
    // `/` leads to the inspector.
    let router = router.route(
        "/",
        axum::routing::get(|| async { axum::response::Redirect::to("/inspect") }),
    );
    colloquy_a2a::serve_until(
        listener,
        router,
        colloquy_a2a::Limits::default().header_timeout,
        stop,
    )
    .await
    .context("the server failed")?;
    Ok(in_flight.load(std::sync::atomic::Ordering::SeqCst))
}

/// Resolves at Ctrl-C or SIGTERM (listening starts now, so a signal that comes before the
/// future is awaited is not missed).
pub(crate) fn interruption() -> Result<impl std::future::Future<Output = ()>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
}
