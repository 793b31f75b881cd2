//! `colloquy serve`: the demo modules as A2A agents over HTTP, on the database at `--db`.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use colloquy_a2a::{A2aOptions, A2aServer};
use colloquy_runtime::{Hub, ModuleName};

use crate::Out;

pub(crate) async fn run(
    out: &mut Out,
    db: &Path,
    listen: SocketAddr,
    base_url: Option<String>,
    tokens: Vec<(String, ModuleName)>,
) -> Result<()> {
    let hub = Hub::builder()
        .sqlite(db)
        .handler_deadline(Duration::from_secs(30))
        .build()
        .await
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    crate::demo::register_modules(&hub).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let base_url = base_url.unwrap_or_else(|| format!("http://{address}"));
    let mut options = A2aOptions::new(&base_url)?;
    let callers: Vec<ModuleName> = if tokens.is_empty() {
        vec![options.caller.clone()]
    } else {
        tokens
            .iter()
            .map(|(_, participant)| participant.clone())
            .collect()
    };
    for (token, participant) in tokens {
        options = options.token(token, participant);
    }
    let server = A2aServer::new(hub.clone(), options).await?;
    let agents: Vec<String> = hub
        .modules()
        .iter()
        .filter(|m| !callers.contains(&m.name))
        .map(|m| format!("{base_url}/agents/{}", m.name))
        .collect();
    if out.json {
        // One line, so that a supervisor (or a test) can read it as the server's "ready".
        let ready = serde_json::json!({ "listening": address.to_string(), "agents": agents });
        out.text(&format!("{ready}\n"))?;
    } else {
        out.text(&format!(
            "serving {} agents on {address} (Ctrl-C stops):\n{}\n",
            agents.len(),
            agents.join("\n")
        ))?;
    }
    out.flush()?;
    let router = server.router();
    axum_serve(listener, router).await?;
    hub.shutdown().await;
    Ok(())
}

/// Serves until Ctrl-C or SIGTERM, then returns (in-flight requests finish first).
async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .context("the server failed")
}
