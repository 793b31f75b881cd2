//! `colloquy mcp` (the hub as an MCP server on standard input and output), and the MCP
//! servers `serve` and `mcp` join to the hub as modules (`--mcp-server`, `--mcp-url`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use colloquy_mcp::{McpModule, McpOptions, McpServer, RestartPolicy};
use colloquy_runtime::{Hub, ModuleName};

use crate::{args::McpModuleArgs, db::Db};

/// Splits `[NAME=]REST`: the name when the first word is `NAME=...` with a valid module
/// name before the `=` (a URL's or a command's own `=` never is one).
fn named(text: &str) -> Result<(Option<ModuleName>, &str)> {
    let text = text.trim();
    let first = text.split_whitespace().next().unwrap_or_default();
    if let Some((name, _)) = first.split_once('=') {
        if let Ok(name) = name.parse::<ModuleName>() {
            let rest = text[name.as_str().len() + 1..].trim_start();
            if rest.is_empty() {
                bail!("{text:?} names the module {name} but gives nothing after the `=`");
            }
            return Ok((Some(name), rest));
        }
    }
    if text.is_empty() {
        bail!("an empty MCP server: give a command (or a URL for --mcp-url)");
    }
    Ok((None, text))
}

/// Starts or connects to every MCP server of `args` and registers each as a module;
/// returns the module names with what they run.
pub(crate) async fn register_modules(
    hub: &Hub,
    args: &McpModuleArgs,
) -> Result<Vec<(ModuleName, String)>> {
    let mut registered = Vec::new();
    for given in &args.mcp_server {
        let (name, command) = named(given)?;
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let module = McpModule::spawn(program, words, name, RestartPolicy::default())
            .await
            .with_context(|| format!("cannot join the MCP server `{command}` as a module"))?;
        let name = colloquy_runtime::Module::info(&module).name;
        hub.register(module).await?;
        registered.push((name, command.to_owned()));
    }
    for given in &args.mcp_url {
        let (name, url) = named(given)?;
        let module = McpModule::connect(url, None, name)
            .await
            .with_context(|| format!("cannot join the MCP server at {url} as a module"))?;
        let name = colloquy_runtime::Module::info(&module).name;
        hub.register(module).await?;
        registered.push((name, url.to_owned()));
    }
    Ok(registered)
}

/// `colloquy mcp`: speaks MCP on standard input and output as `caller` until the client
/// closes standard input, then drains the hub's turns and closes the store. Nothing but
/// the protocol is written to standard output (logs go to standard error).
pub(crate) async fn stdio(
    db: &Db,
    caller: ModuleName,
    demo_modules: bool,
    idle_timeout: Option<Duration>,
    modules: &McpModuleArgs,
) -> Result<()> {
    let mut builder = db.hub()?.handler_deadline(Duration::from_secs(30));
    if let Some(idle) = idle_timeout {
        builder = builder.idle_timeout(idle);
    }
    let hub = builder
        .build()
        .await
        .with_context(|| format!("cannot open the database {}", db.describe()))?;
    let served = async {
        if demo_modules {
            crate::demo::register_modules(&hub).await?;
            hub.register(crate::demo_modules::Echo).await?;
        }
        register_modules(&hub, modules).await?;
        let server = McpServer::new(hub.clone(), McpOptions::new()?.caller(caller)).await?;
        server.serve_stdio().await?;
        anyhow::Ok(())
    }
    .await;
    // Whatever the outcome, the hub's turns end and the store closes before the process.
    hub.shutdown().await;
    served
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::named;

    #[test]
    fn a_module_name_is_read_only_from_a_leading_name_and_equals_sign() {
        let (name, rest) = named("files=npx -y server --root=/tmp").unwrap();
        assert_eq!(name.unwrap().as_str(), "files");
        assert_eq!(rest, "npx -y server --root=/tmp");
        // A command's own `=` and a URL's query are not names.
        assert_eq!(named("env A=B server").unwrap(), (None, "env A=B server"));
        assert_eq!(
            named("http://127.0.0.1:9/mcp?x=1").unwrap(),
            (None, "http://127.0.0.1:9/mcp?x=1")
        );
        assert!(named("files=").is_err());
        assert!(named("  ").is_err());
    }
}
